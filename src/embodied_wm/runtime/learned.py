"""What the three learned-model backends (PyTorch, ONNX Runtime, TensorRT) share: the Observation ->
encoder inputs -> state -> K-step rollout -> Prediction flow, history, cached state for MPC queries,
candidate validation and chunking, uint8 frame conversion and per-stage timings.

A subclass only says how to run the two graphs (``_encode``, ``_run_rollout``) and, where it can do
better than numpy (on the GPU), how to turn raw outputs into uint8 frames (``_postprocess``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
from abc import abstractmethod
from pathlib import Path
from typing import Any

import numpy as np

from embodied_wm.model.config import ModelConfig
from embodied_wm.model.preprocess import encoder_inputs, modality_spec
from embodied_wm.observation import Observation, PixelRollout, Prediction, Rollout
from embodied_wm.runtime.base import (
    Backend,
    BackendError,
    BackendUnavailableError,
    ModelFileError,
    validate_candidates,
    validate_pixels,
)

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
EXPORT_MANIFEST = "export.json"


def default_cache_dir() -> Path:
    """Where exports and engines built on the fly go: $EMBODIED_WM_CACHE_DIR, else
    $XDG_CACHE_HOME/embodied_wm, else ~/.cache/embodied_wm."""
    env = os.environ.get("EMBODIED_WM_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "embodied_wm"


def is_checkpoint_dir(d: Path) -> bool:
    return (d / WEIGHTS_FILE).is_file() and (d / CONFIG_FILE).is_file()


def is_export_dir(d: Path) -> bool:
    return (d / EXPORT_MANIFEST).is_file()


def require_model_dir(model_dir: str | Path | None) -> Path:
    """``model_dir`` as a Path that holds a checkpoint or an ONNX export, else ModelFileError."""
    if model_dir is None:
        raise ModelFileError("no model directory given (pass --model DIR / model_dir=...)")
    d = Path(model_dir)
    if not d.exists():
        raise ModelFileError(f"{d}: model directory does not exist")
    if not d.is_dir():
        raise ModelFileError(
            f"{d}: not a directory (a model is a directory with {WEIGHTS_FILE} + {CONFIG_FILE})"
        )
    if not (is_checkpoint_dir(d) or is_export_dir(d)):
        present = sorted(p.name for p in d.iterdir())[:8]
        raise ModelFileError(
            f"{d}: neither a checkpoint ({WEIGHTS_FILE} + {CONFIG_FILE}) nor an ONNX export "
            f"({EXPORT_MANIFEST}, encoder.onnx, rollout.onnx); found: {', '.join(present) or 'nothing'}"
        )
    return d


def read_config(d: Path) -> tuple[ModelConfig, str]:
    """The model config and model_id recorded in ``d/config.json`` (checkpoint or export copy of it)."""
    path = d / CONFIG_FILE
    if not path.is_file():
        raise ModelFileError(f"{d}: missing {CONFIG_FILE}")
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise TypeError(f"expected a JSON object, got {type(doc).__name__}")
        cfg = ModelConfig.from_dict(doc["config"])
        model_id = str(doc["model_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: not a valid model config.json: {exc}") from exc
    return cfg, model_id


def frames_to_uint8(frames: np.ndarray) -> np.ndarray:
    """[N,K,3,H,W] float in [0,1] -> [N,K,H,W,3] uint8, rounding half up (same rule on every backend)."""
    x = np.clip(frames.astype(np.float32, copy=False) * np.float32(255.0) + np.float32(0.5), 0.0, 255.0)
    return np.ascontiguousarray(np.moveaxis(x.astype(np.uint8), 2, -1))


class LearnedBackend(Backend):
    """Backend flow shared by the model backends. See module doc."""

    #: Largest candidate batch one ``_run_rollout`` call may get (TensorRT profile max); None = any.
    max_candidates: int | None = None

    def __init__(self, cfg: ModelConfig, model_id: str) -> None:
        self.cfg = cfg
        self.spec = modality_spec(cfg)
        self.model_id = model_id
        self.horizon = cfg.horizon
        self.dt_ns = cfg.dt_ns
        self.image_size = (cfg.image_size, cfg.image_size)
        self.affordance_channels = tuple(cfg.affordance_channels)
        self.action_dim = cfg.action_dim
        self._prev_obs: Observation | None = None
        self._state: Any = None
        self._state_stamp_ns = 0
        # The node's planner service may call rollout() from another executor thread while predict()
        # runs; a TensorRT execution context and the cached state must not be used by both at once.
        self._lock = threading.RLock()

    # -- what subclasses implement -----------------------------------------------------------------
    @abstractmethod
    def _encode(self, inputs: dict[str, np.ndarray]) -> Any:
        """Batch-1 encoder inputs -> backend-native state (ENCODER_OUTPUTS, in order)."""

    @abstractmethod
    def _latent(self, state: Any) -> np.ndarray:
        """The "latent" entry of ``state`` as a float32 numpy vector [D]."""

    @abstractmethod
    def _run_rollout(self, state: Any, actions: np.ndarray) -> Any:
        """State + raw actions [N,K,A] float32 -> backend-native (frames, affordance), computed (synced)."""

    def _run_score(
        self, state: Any, actions: np.ndarray, designated: np.ndarray, goals: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scores-only graph: (positions [N,K,P,2], distances [N,K,P], latents [N,K,D]) as numpy."""
        raise BackendUnavailableError(f"{self.name}: this backend has no scores-only rollout")

    def _postprocess(self, outputs: Any) -> tuple[np.ndarray, np.ndarray]:
        """Backend-native outputs -> (frames [N,K,H,W,3] uint8, affordance [N,C,H,W] float32)."""
        frames, aff = outputs
        return frames_to_uint8(np.asarray(frames)), np.ascontiguousarray(aff, dtype=np.float32)

    # -- Backend API -------------------------------------------------------------------------------
    def held_actions(self, obs: Observation) -> np.ndarray:
        """K x A: ``obs.action`` held for the whole horizon (zeros when missing), fitted to action_dim."""
        act = np.zeros(self.action_dim, np.float32)
        if obs.action is not None:
            a = np.asarray(obs.action, np.float32).reshape(-1)[: self.action_dim]
            act[: a.size] = a
        return np.repeat(act[None], self.horizon, axis=0)

    def predict(self, obs: Observation, actions: np.ndarray | None = None) -> Prediction:
        with self._lock:
            return self._predict(obs, actions)

    def _predict(self, obs: Observation, actions: np.ndarray | None) -> Prediction:
        t0 = time.perf_counter()
        acts = (
            self.held_actions(obs)[None]
            if actions is None
            else validate_candidates(np.asarray(actions)[None], self.horizon, self.action_dim, what="actions")
        )
        prev = self._prev_obs
        if prev is not None and prev.stamp_ns >= obs.stamp_ns:
            prev = None  # stamps repeated or went backwards: the "previous" frame is not the one before this
        try:
            inputs = encoder_inputs(obs, prev, self.cfg)
        except ValueError as exc:
            raise BackendError(f"{self.name}: bad observation at {obs.stamp_ns} ns: {exc}") from exc
        t1 = time.perf_counter()
        state = self._encode(inputs)
        t2 = time.perf_counter()
        outputs = self._run_rollout(state, acts)
        t3 = time.perf_counter()
        frames, aff = self._postprocess(outputs)
        latent = self._latent(state)
        t4 = time.perf_counter()
        self._state, self._state_stamp_ns = state, obs.stamp_ns
        # After a camera-less observation (camera outage) the next frame has no previous one dt before
        # it: "no motion seen yet", as at start, rather than motion across the whole outage.
        self._prev_obs = obs if obs.image is not None else None
        return Prediction(
            stamp_ns=obs.stamp_ns,
            dt_ns=self.dt_ns,
            frames=frames[0],
            affordance=aff[0],
            affordance_channels=self.affordance_channels,
            latent=latent,
            timings_ms={
                "preprocess": (t1 - t0) * 1e3,
                "encode": (t2 - t1) * 1e3,
                "rollout": (t3 - t2) * 1e3,
                "postprocess": (t4 - t3) * 1e3,
            },
            model_id=self.model_id,
            frame_id=obs.frame_id,
        )

    def rollout_state(self) -> tuple[Any, int]:
        with self._lock:
            if self._state is None:
                raise BackendError(f"{self.name}: rollout() before any predict() (no encoded state yet)")
            # predict() replaces self._state with new arrays/tensors, never writes into it (TensorRT
            # clones its static output buffers), so the reference stays valid after later predictions.
            return self._state, self._state_stamp_ns

    def rollout(self, candidates: np.ndarray, state: Any = None) -> Rollout:
        with self._lock:
            return self._rollout(candidates, self.rollout_state() if state is None else state)

    def _rollout(self, candidates: np.ndarray, source: tuple[Any, int]) -> Rollout:
        state, stamp_ns = source
        cand = validate_candidates(candidates, self.horizon, self.action_dim)
        step = self.max_candidates or cand.shape[0]
        t0 = time.perf_counter()
        frames_parts, aff_parts = [], []
        t_roll = 0.0
        for i in range(0, cand.shape[0], step):
            ta = time.perf_counter()
            out = self._run_rollout(state, cand[i : i + step])
            t_roll += time.perf_counter() - ta
            f, a = self._postprocess(out)
            frames_parts.append(f)
            aff_parts.append(a)
        frames = frames_parts[0] if len(frames_parts) == 1 else np.concatenate(frames_parts)
        aff = aff_parts[0] if len(aff_parts) == 1 else np.concatenate(aff_parts)
        total = time.perf_counter() - t0
        return Rollout(
            stamp_ns=stamp_ns,
            dt_ns=self.dt_ns,
            frames=frames,
            affordance=aff,
            affordance_channels=self.affordance_channels,
            timings_ms={"rollout": t_roll * 1e3, "postprocess": (total - t_roll) * 1e3},
            model_id=self.model_id,
        )

    def score_pixels(self, candidates: np.ndarray, designated: np.ndarray, goals: np.ndarray) -> PixelRollout:
        with self._lock:
            if self._state is None:
                raise BackendError(f"{self.name}: score_pixels() before any predict() (no encoded state yet)")
            cand = validate_candidates(candidates, self.horizon, self.action_dim)
            d, g = validate_pixels(designated, goals, self.image_size)
            step = self.max_candidates or cand.shape[0]
            t0 = time.perf_counter()
            parts = [
                self._run_score(self._state, cand[i : i + step], d, g) for i in range(0, len(cand), step)
            ]
            pos, dist, lat = (np.concatenate([p[j] for p in parts]) for j in range(3))
            return PixelRollout(
                stamp_ns=self._state_stamp_ns,
                dt_ns=self.dt_ns,
                positions=np.ascontiguousarray(pos, np.float32),
                distances=np.ascontiguousarray(dist, np.float32),
                latents=np.ascontiguousarray(lat, np.float32),
                timings_ms={"score": (time.perf_counter() - t0) * 1e3},
                model_id=self.model_id,
            )

    def encode_goal(self, goal_rgb: np.ndarray) -> np.ndarray:
        """The encoder's latent of ``goal_rgb`` (H x W x 3 uint8, any size) as a still scene (previous
        frame = the goal) with the other modalities of the newest observation: what the rolled latents
        are trained to match. Leaves the backend's state alone."""
        with self._lock:
            obs = self._prev_obs
            if obs is None:
                raise BackendError(f"{self.name}: encode_goal() before any predict() with an image")
            goal_obs = dataclasses.replace(obs, image=np.ascontiguousarray(goal_rgb, np.uint8))
            try:
                inputs = encoder_inputs(goal_obs, goal_obs, self.cfg)
            except ValueError as exc:
                raise BackendError(f"{self.name}: bad goal image: {exc}") from exc
            return self._latent(self._encode(inputs))

    def reset(self) -> None:
        with self._lock:
            self._prev_obs = None
            self._state = None
            self._state_stamp_ns = 0

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "config": self.cfg.name,
            "image_size": list(self.image_size),
            "horizon": self.horizon,
            "dt_ns": self.dt_ns,
            "affordance_channels": list(self.affordance_channels),
            "uses_actions": True,
        }
