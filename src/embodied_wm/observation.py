"""The contract between layers: what one time step of sensing looks like, and what a prediction is.

Everything here is plain numpy so sensing, the model, the runtime backends, the ROS nodes and the
offline evaluation can exchange data without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Modalities an Observation can carry, in a fixed order (used for presence masks).
MODALITIES: tuple[str, ...] = ("image", "audio", "tactile", "proprio", "action")

#: Action vector layout: an end-effector twist (TwistStamped) as linear xyz then angular xyz.
ACTION_DIM = 6

NS_PER_S = 1_000_000_000


@dataclass(frozen=True)
class ModalitySpec:
    """Shapes and rates the Aligner produces and a model consumes."""

    #: Audio sample rate after resampling (Hz) and the window ending at the frame stamp (s).
    audio_sample_rate: int = 16000
    audio_window_s: float = 0.1
    #: Tactile grid (rows, cols).
    tactile_shape: tuple[int, int] = (5, 5)
    #: Proprio vector length (joint positions then velocities).
    proprio_dim: int = 6
    action_dim: int = ACTION_DIM

    @property
    def audio_window_samples(self) -> int:
        return round(self.audio_sample_rate * self.audio_window_s)


@dataclass
class Observation:
    """One aligned time step. A modality that is None is *missing* (never silently zero).

    image: H x W x 3 uint8 RGB, at the camera's native resolution (models resize themselves).
    audio: float32 mono samples at ModalitySpec.audio_sample_rate, the window ending at ``stamp_ns``.
    tactile: float32 rows x cols.
    proprio: float32 vector (joint positions then velocities).
    action: float32 vector of ACTION_DIM (the command in force at ``stamp_ns``).
    """

    stamp_ns: int
    image: np.ndarray | None = None
    audio: np.ndarray | None = None
    tactile: np.ndarray | None = None
    proprio: np.ndarray | None = None
    action: np.ndarray | None = None
    frame_id: str = "camera_optical_frame"

    @property
    def present(self) -> dict[str, bool]:
        return {m: getattr(self, m) is not None for m in MODALITIES}

    @property
    def missing(self) -> list[str]:
        return [m for m, ok in self.present.items() if not ok]


@dataclass
class Prediction:
    """K future frames and affordances predicted from the observation at ``stamp_ns``.

    frames: K x H x W x 3 uint8 RGB at the model's resolution; frame k (0-based) is for
    ``stamp_ns + (k + 1) * dt_ns`` (see ``frame_stamps_ns``).
    affordance: C x H x W float32 in [0, 1], channel names in ``affordance_channels``.
    latent: the model's state (any shape, float32); empty for baselines without one.
    timings_ms: per-stage wall time, e.g. {"preprocess": .., "encode": .., "rollout": ..}.
    """

    stamp_ns: int
    dt_ns: int
    frames: np.ndarray
    affordance: np.ndarray
    affordance_channels: tuple[str, ...]
    latent: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    timings_ms: dict[str, float] = field(default_factory=dict)
    model_id: str = ""
    frame_id: str = "camera_optical_frame"
    #: Optional per-frame confidence in [0, 1].
    confidence: np.ndarray | None = None

    @property
    def horizon(self) -> int:
        return int(self.frames.shape[0])

    @property
    def frame_stamps_ns(self) -> np.ndarray:
        return self.stamp_ns + self.dt_ns * np.arange(1, self.horizon + 1, dtype=np.int64)


@dataclass
class Rollout:
    """Predictions for N candidate action sequences from one observation (the planner's query).

    frames: N x K x H x W x 3 uint8; affordance: N x C x H x W float32 in [0, 1].
    """

    stamp_ns: int
    dt_ns: int
    frames: np.ndarray
    affordance: np.ndarray
    affordance_channels: tuple[str, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    model_id: str = ""


@dataclass
class PixelRollout:
    """The scores-only rollout of N candidates for P designated pixels (pixel goals, latent goals).

    positions: N x K x P x 2 float32, the expected (u, v) of each designated pixel's probability map after
    each step, in pixels of the model image; distances: N x K x P float32, the maps' expected distance to
    the goal pixels; latents: N x K x D float32 rolled latents (None for action-blind baselines).
    """

    stamp_ns: int
    dt_ns: int
    positions: np.ndarray
    distances: np.ndarray
    latents: np.ndarray | None
    timings_ms: dict[str, float] = field(default_factory=dict)
    model_id: str = ""
