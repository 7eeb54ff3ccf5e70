"""The one Backend interface every predictor implements: learned models (TensorRT, ONNX Runtime,
PyTorch) and baselines (copy-last-frame, linear motion extrapolation).

The live node, the offline replay evaluation, the planner service and the benchmarks only talk to this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np

from embodied_wm.errors import EmbodiedWMError
from embodied_wm.observation import ModalitySpec, Observation, PixelRollout, Prediction, Rollout


class BackendError(EmbodiedWMError, RuntimeError):
    """A backend could not be created or run (missing library, bad model files, device trouble)."""


class BackendUnavailableError(BackendError):
    """The requested backend cannot run on this machine (e.g. no TensorRT, no CUDA)."""


class ModelFileError(BackendError):
    """A model, ONNX or engine file is missing, truncated, corrupt or belongs to another model."""


class ExportError(BackendError):
    """ONNX export failed, or the exported graphs do not reproduce PyTorch within tolerance."""


class Backend(ABC):
    """Stateful predictor. Call ``predict`` once per observation in stamp order; ``reset`` on time jumps.

    Attributes every backend sets:
      name: "tensorrt" | "onnxruntime" | "pytorch" | "copy_last" | "linear"
      model_id: content hash of the model (or the baseline's name)
      horizon: K, the number of future frames
      dt_ns: time between predicted frames
      image_size: (H, W) of predicted frames
      affordance_channels: names of the affordance channels (empty for baselines)
      action_dim: length of one action vector
      spec: ModalitySpec of the inputs (tactile grid, audio rate and window, proprio and action sizes)
    """

    name: str
    model_id: str
    horizon: int
    dt_ns: int
    image_size: tuple[int, int]
    affordance_channels: tuple[str, ...]
    action_dim: int
    #: The input shapes and rates the model consumes (its config's; the default for the baselines).
    #: ``Pipeline(backend)`` aligns to it.
    spec: ModalitySpec = ModalitySpec()
    #: Set by ``runtime.select.create_backend``: what was asked for, what was chosen, and why every
    #: backend tried before it was skipped ({"requested", "chosen", "skipped": [{"backend", "reason"}]}).
    selection: dict[str, Any] | None = None

    @abstractmethod
    def predict(self, obs: Observation, actions: np.ndarray | None = None) -> Prediction:
        """Predict K frames from ``obs``. ``actions`` is K x action_dim future actions; None holds
        ``obs.action`` for all K steps (zeros when the action is missing). Updates the backend's history
        (e.g. the previous frame) so the next call sees motion."""

    @abstractmethod
    def rollout(self, candidates: np.ndarray, state: Any = None) -> Rollout:
        """Evaluate N x K x action_dim candidate action sequences from the state of the most recent
        ``predict`` call, or from ``state`` (a ``rollout_state()`` taken earlier). Raises BackendError if
        ``predict`` was never called."""

    @abstractmethod
    def rollout_state(self) -> Any:
        """An opaque snapshot of the state ``rollout`` starts from (the latest ``predict``); BackendError
        before any ``predict``. A large request split into chunks passes it to every chunk, so all
        candidates start from the same state while ``predict`` keeps running between chunks."""

    @abstractmethod
    def reset(self) -> None:
        """Forget history (bag loop, simulator reset, stamps jumping backwards)."""

    def score_pixels(self, candidates: np.ndarray, designated: np.ndarray, goals: np.ndarray) -> PixelRollout:
        """Scores-only rollout from the state of the most recent ``predict``: where each designated pixel
        (P x 2, (u, v) at the model resolution) is expected after each step, and its expected distance to
        its goal pixel. This default is what an action-blind baseline predicts (nothing moves); the
        learned backends run the model's scores-only graph."""
        cand = validate_candidates(candidates, self.horizon, self.action_dim)
        d, g = validate_pixels(designated, goals, self.image_size)
        n, k = cand.shape[0], self.horizon
        pos = np.broadcast_to(d, (n, k, *d.shape)).astype(np.float32)
        dist = np.broadcast_to(np.linalg.norm(d - g, axis=-1), (n, k, d.shape[0])).astype(np.float32)
        return PixelRollout(0, self.dt_ns, pos, dist, None, {}, self.model_id)

    def encode_goal(self, goal_rgb: np.ndarray) -> np.ndarray:
        """The encoder's latent [D] of a goal image (latent-goal objective); learned backends only."""
        raise BackendError(f"{self.name}: no latent state (the latent-goal objective needs a learned model)")

    def describe(self) -> dict[str, Any]:
        """What is running: backend name, device, precision, providers... (for diagnostics and bench JSON).
        Subclasses extend ``super().describe()``."""
        out: dict[str, Any] = {"backend": self.name, "model_id": self.model_id}
        if self.selection is not None:
            out["selection"] = self.selection
            out["skipped"] = self.selection.get("skipped", [])
        return out


def validate_candidates(
    candidates: np.ndarray, horizon: int, action_dim: int, what: str = "candidates"
) -> np.ndarray:
    """``candidates`` as a contiguous float32 N x K x A array, or BackendError saying what is wrong."""
    arr = np.asarray(candidates)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise BackendError(f"{what}: expected a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 3:
        raise BackendError(
            f"{what}: expected shape (N, {horizon}, {action_dim}) = candidates x horizon x action_dim, "
            f"got {arr.shape}"
        )
    n, k, a = arr.shape
    if n < 1 or k != horizon or a != action_dim:
        raise BackendError(
            f"{what}: expected shape (N>=1, {horizon}, {action_dim}) = candidates x horizon x action_dim, "
            f"got {arr.shape}"
        )
    out = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(out).all():
        raise BackendError(f"{what}: contains NaN or infinite values")
    return out


def validate_pixels(
    designated: np.ndarray, goals: np.ndarray, image_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """(designated, goals) as float32 P x 2 (u, v) arrays inside an image of ``image_size`` = (H, W)
    (pixel centres at integers, so [-0.5, W - 0.5) x [-0.5, H - 0.5)), or BackendError saying which
    pixel is wrong."""
    h, w = image_size
    out = []
    for what, arr in (("designated pixels", designated), ("goal pixels", goals)):
        a = np.asarray(arr, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 1:
            raise BackendError(f"{what}: expected shape (P>=1, 2) = (u, v) per pixel, got {a.shape}")
        if not np.isfinite(a).all():
            raise BackendError(f"{what}: contain NaN or infinite values")
        bad = ~((a[:, 0] >= -0.5) & (a[:, 0] < w - 0.5) & (a[:, 1] >= -0.5) & (a[:, 1] < h - 0.5))
        if bad.any():
            i = int(np.argmax(bad))
            raise BackendError(
                f"{what}: pixel {i} (u={a[i, 0]:g}, v={a[i, 1]:g}) is outside the {w}x{h} image"
            )
        out.append(np.ascontiguousarray(a, np.float32))
    if out[0].shape != out[1].shape:
        raise BackendError(
            f"{len(out[0])} designated pixels but {len(out[1])} goal pixels (one goal per designated pixel)"
        )
    return out[0], out[1]
def concat_rollouts(parts: Sequence[Rollout]) -> Rollout:
    """One Rollout from the chunks of a request (same state, candidates in order); timings add up."""
    if len(parts) == 1:
        return parts[0]
    first = parts[0]
    timings: dict[str, float] = {}
    for p in parts:
        for key, ms in p.timings_ms.items():
            timings[key] = timings.get(key, 0.0) + ms
    return Rollout(
        stamp_ns=first.stamp_ns,
        dt_ns=first.dt_ns,
        frames=np.concatenate([p.frames for p in parts]),
        affordance=np.concatenate([p.affordance for p in parts]),
        affordance_channels=first.affordance_channels,
        timings_ms=timings,
        model_id=first.model_id,
    )
