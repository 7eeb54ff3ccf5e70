"""The one Backend interface every predictor implements: learned models (TensorRT, ONNX Runtime,
PyTorch) and baselines (copy-last-frame, linear motion extrapolation).

The live node, the offline replay evaluation, the planner service and the benchmarks only talk to this.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from embodied_wm.observation import Observation, Prediction, Rollout


class BackendError(RuntimeError):
    """A backend could not be created or run (missing library, bad model files, device trouble)."""


class BackendUnavailableError(BackendError):
    """The requested backend cannot run on this machine (e.g. no TensorRT, no CUDA)."""


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
    """

    name: str
    model_id: str
    horizon: int
    dt_ns: int
    image_size: tuple[int, int]
    affordance_channels: tuple[str, ...]
    action_dim: int

    @abstractmethod
    def predict(self, obs: Observation, actions: np.ndarray | None = None) -> Prediction:
        """Predict K frames from ``obs``. ``actions`` is K x action_dim future actions; None holds
        ``obs.action`` for all K steps (zeros when the action is missing). Updates the backend's history
        (e.g. the previous frame) so the next call sees motion."""

    @abstractmethod
    def rollout(self, candidates: np.ndarray) -> Rollout:
        """Evaluate N x K x action_dim candidate action sequences from the state of the most recent
        ``predict`` call. Raises BackendError if ``predict`` was never called."""

    @abstractmethod
    def reset(self) -> None:
        """Forget history (bag loop, simulator reset, stamps jumping backwards)."""

    def describe(self) -> dict[str, Any]:
        """What is running: backend name, device, precision, providers... (for diagnostics and bench JSON)."""
        return {"backend": self.name, "model_id": self.model_id}
