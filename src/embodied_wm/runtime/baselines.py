"""Baseline predictors every learned model is compared against (DESIGN.md, "Evaluation that counts").

* ``CopyLastBackend``: every future frame is the current frame.
* ``LinearBackend``: linear extrapolation of image motion. Dense optical flow (Farneback) between the
  previous and the current frame at model resolution gives a per-pixel velocity; frame k is the current
  frame moved k steps along it. Without a previous frame it is copy-last.

Both ignore actions: ``rollout`` returns the same frames for every candidate, so a planner that queries a
baseline learns nothing about its actions (that is the point of a baseline). Neither predicts
affordances: ``affordance`` has shape (0, H, W) and ``affordance_channels`` is empty.

Both work at the model resolution (``image_size``) via ``sensing.image.resize_rgb`` so PSNR/SSIM compare
like with like.
"""

from __future__ import annotations

import time
from abc import abstractmethod
from typing import Any

import cv2
import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.observation import ACTION_DIM, Observation, Prediction, Rollout
from embodied_wm.runtime.base import Backend, BackendError, validate_candidates
from embodied_wm.sensing.image import resize_rgb


def _resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 image to ``size`` = (h, w) with the sensing module's resampler."""
    if image.shape[0] == size[0] and image.shape[1] == size[1]:
        return np.ascontiguousarray(image)
    return np.ascontiguousarray(resize_rgb(image, size))


class _BaselineBackend(Backend):
    """Shared bookkeeping: resizing, history of the previous frame, timings, rollout tiling."""

    name = "baseline"

    def __init__(
        self,
        image_size: tuple[int, int] = (64, 64),
        horizon: int = 8,
        dt_ns: int = 100_000_000,
        action_dim: int = ACTION_DIM,
    ) -> None:
        if horizon < 1:
            raise ConfigError(f"horizon must be >= 1, got {horizon}")
        if dt_ns <= 0:
            raise ConfigError(f"dt_ns must be > 0, got {dt_ns}")
        h, w = (int(image_size[0]), int(image_size[1]))
        if h < 1 or w < 1:
            raise ConfigError(f"image_size must be positive, got {image_size}")
        self.model_id = self.name
        self.horizon = int(horizon)
        self.dt_ns = int(dt_ns)
        self.image_size = (h, w)
        self.affordance_channels = ()
        self.action_dim = int(action_dim)
        self._prev_frame: np.ndarray | None = None
        self._prev_stamp_ns: int | None = None
        self._last: Prediction | None = None

    # -- Backend API -------------------------------------------------------------------------------
    def predict(self, obs: Observation, actions: np.ndarray | None = None) -> Prediction:
        if actions is not None:
            # Checked although unused, so a caller's shape bug shows up with a baseline too.
            validate_candidates(np.asarray(actions)[None], self.horizon, self.action_dim, what="actions")
        t0 = time.perf_counter()
        if obs.image is None:
            if self._prev_frame is None:
                raise BackendError(
                    f"{self.name}: observation at {obs.stamp_ns} ns has no image and none was seen"
                )
            # A dropped camera frame: the best a baseline can do is repeat the last frame it saw.
            cur = self._prev_frame
            prev, dt_obs = None, 0
        else:
            img = np.asarray(obs.image)
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise BackendError(
                    f"{self.name}: Observation.image must be HxWx3 uint8, got {img.shape} {img.dtype}"
                )
            cur = _resize_rgb(img, self.image_size)
            prev = self._prev_frame
            dt_obs = obs.stamp_ns - self._prev_stamp_ns if self._prev_stamp_ns is not None else 0
            if dt_obs <= 0:  # stamps jumped backwards or repeated: motion since then is meaningless
                prev = None
        t1 = time.perf_counter()
        frames = self._extrapolate(cur, prev, dt_obs)
        t2 = time.perf_counter()
        if obs.image is not None:
            self._prev_frame, self._prev_stamp_ns = cur, obs.stamp_ns
        h, w = self.image_size
        pred = Prediction(
            stamp_ns=obs.stamp_ns,
            dt_ns=self.dt_ns,
            frames=frames,
            affordance=np.zeros((0, h, w), np.float32),
            affordance_channels=(),
            timings_ms={
                "preprocess": (t1 - t0) * 1e3,
                "encode": 0.0,
                "rollout": (t2 - t1) * 1e3,
                "postprocess": 0.0,
            },
            model_id=self.model_id,
            frame_id=obs.frame_id,
        )
        self._last = pred
        return pred

    def rollout_state(self) -> Prediction:
        if self._last is None:
            raise BackendError(f"{self.name}: rollout() before any predict()")
        return self._last

    def rollout(self, candidates: np.ndarray, state: Any = None) -> Rollout:
        last: Prediction = self.rollout_state() if state is None else state
        cand = validate_candidates(candidates, self.horizon, self.action_dim)
        t0 = time.perf_counter()
        n = cand.shape[0]
        frames = np.broadcast_to(last.frames, (n, *last.frames.shape)).copy()
        h, w = self.image_size
        return Rollout(
            stamp_ns=last.stamp_ns,
            dt_ns=self.dt_ns,
            frames=frames,
            affordance=np.zeros((n, 0, h, w), np.float32),
            affordance_channels=(),
            timings_ms={"rollout": (time.perf_counter() - t0) * 1e3},
            model_id=self.model_id,
        )

    def reset(self) -> None:
        self._prev_frame = None
        self._prev_stamp_ns = None
        self._last = None

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "device": "cpu",
            "precision": "uint8",
            "image_size": list(self.image_size),
            "horizon": self.horizon,
            "uses_actions": False,
        }

    # -- per-baseline ------------------------------------------------------------------------------
    @abstractmethod
    def _extrapolate(self, cur: np.ndarray, prev: np.ndarray | None, dt_obs_ns: int) -> np.ndarray:
        """K predicted frames from the current (and previous) frame at model resolution."""


class CopyLastBackend(_BaselineBackend):
    """Every future frame equals the current frame (at model resolution)."""

    name = "copy_last"

    def _extrapolate(self, cur: np.ndarray, prev: np.ndarray | None, dt_obs_ns: int) -> np.ndarray:
        return np.broadcast_to(cur, (self.horizon, *cur.shape)).copy()


class LinearBackend(_BaselineBackend):
    """Constant-velocity extrapolation of dense optical flow.

    The velocity field is measured on the current frame's pixel grid (flow from the current to the
    previous frame, negated) and scaled from the observed frame interval to ``dt_ns``. Each step moves the
    previous step's frame one velocity step along and carries the velocity field with it (it is advected by
    itself), so a moving object keeps moving beyond the edge where the flow was measured instead of
    smearing, which a single ``remap`` by k * flow on the fixed current grid would do.
    """

    name = "linear"

    #: Farneback parameters tuned for 64..256 px frames: a 3-level pyramid reaches ~8 px/frame motion,
    #: the 15 px window smooths the field enough that untextured interiors inherit their edges' motion.
    FLOW_PARAMS: dict[str, Any] = {
        "pyr_scale": 0.5,
        "levels": 3,
        "winsize": 15,
        "iterations": 3,
        "poly_n": 5,
        "poly_sigma": 1.2,
        "flags": 0,
    }

    def __init__(
        self,
        image_size: tuple[int, int] = (64, 64),
        horizon: int = 8,
        dt_ns: int = 100_000_000,
        action_dim: int = ACTION_DIM,
    ) -> None:
        super().__init__(image_size, horizon, dt_ns, action_dim)
        h, w = self.image_size
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        self._grid_x, self._grid_y = gx, gy

    def velocity(self, cur: np.ndarray, prev: np.ndarray, dt_obs_ns: int) -> np.ndarray:
        """Per-pixel motion (H x W x 2, x then y, pixels per ``dt_ns``) on the current frame's grid."""
        g_cur = cv2.cvtColor(cur, cv2.COLOR_RGB2GRAY)
        g_prev = cv2.cvtColor(prev, cv2.COLOR_RGB2GRAY)
        # flow(cur -> prev): cur(x) ~ prev(x + f(x)), so the pixel at x moved by -f(x) over dt_obs.
        f = cv2.calcOpticalFlowFarneback(g_cur, g_prev, None, **self.FLOW_PARAMS)  # type: ignore[call-overload]
        return (-f * np.float32(self.dt_ns / dt_obs_ns)).astype(np.float32)

    def _extrapolate(self, cur: np.ndarray, prev: np.ndarray | None, dt_obs_ns: int) -> np.ndarray:
        out = np.empty((self.horizon, *cur.shape), np.uint8)
        if prev is None or prev.shape != cur.shape:
            out[:] = cur
            return out
        v0 = self.velocity(cur, prev, dt_obs_ns)
        gx, gy = self._grid_x, self._grid_y
        # disp: where each output pixel's content sits in the current frame (output(x) = cur(x - disp)).
        # It is built step by step so the velocity travels with the content it belongs to, and ``cur`` is
        # resampled once per k (repeated resampling of frames would blur them more with every step).
        disp = np.zeros_like(v0)
        v = v0
        for k in range(self.horizon):
            disp = v + cv2.remap(
                disp, gx - v[..., 0], gy - v[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
            )
            map_x, map_y = gx - disp[..., 0], gy - disp[..., 1]
            out[k] = cv2.remap(cur, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            v = cv2.remap(v0, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return out
