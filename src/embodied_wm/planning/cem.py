"""The cross-entropy method over action sequences (pure numpy): planner_node's sampler, and the
closed-loop evaluation's (eval/planning.py), so both plan with the same code.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from embodied_wm.observation import ACTION_DIM

# Which action dimensions are linear velocities (clipped to max_speed); angular ones get max_speed rad/s
# scaled by this factor so one parameter bounds both sensibly for a tabletop pusher.
ANGULAR_SPEED_FACTOR = 10.0


class CemSampler:
    """Sampling state of the planner (pure numpy; unit-testable without ROS)."""

    def __init__(
        self,
        horizon: int,
        active_dims: Sequence[int],
        max_speed: float,
        init_std: float,
        elite_fraction: float,
        seed: int = 0,
        action_dim: int = ACTION_DIM,
    ) -> None:
        self.horizon = int(horizon)
        self.active = list(active_dims)
        self.action_dim = action_dim
        bounds = np.array([max_speed if d < 3 else max_speed * ANGULAR_SPEED_FACTOR for d in self.active])
        self.bounds = bounds.astype(np.float32)
        self.init_std = float(init_std)
        self.elite_fraction = float(elite_fraction)
        self.rng = np.random.default_rng(seed)
        self.mean = np.zeros((self.horizon, len(self.active)), np.float32)
        self.std = np.full_like(self.mean, 1.0) * self.bounds * self.init_std

    def sample(self, n: int, uniform: bool = False) -> np.ndarray:
        """n x K x |active| samples, clipped to the bounds. The first is the current mean (so a good plan
        is never lost to sampling noise)."""
        shape = (n, self.horizon, len(self.active))
        if uniform:
            s = self.rng.uniform(-1.0, 1.0, shape).astype(np.float32) * self.bounds
        else:
            s = (self.mean + self.rng.standard_normal(shape).astype(np.float32) * self.std).astype(np.float32)
            s[0] = self.mean
        return np.clip(s, -self.bounds, self.bounds)

    def full(self, samples: np.ndarray) -> np.ndarray:
        """n x K x |active| -> n x K x action_dim (inactive dimensions 0)."""
        out = np.zeros((*samples.shape[:2], self.action_dim), np.float32)
        out[..., self.active] = samples
        return out

    def refit(self, samples: np.ndarray, scores: np.ndarray) -> None:
        n_elite = max(1, round(self.elite_fraction * len(scores)))
        elite = samples[np.argsort(-scores)[:n_elite]]
        self.mean = elite.mean(axis=0).astype(np.float32)
        # A floor on the spread keeps CEM exploring when scores are flat (e.g. an action-blind baseline).
        self.std = np.maximum(elite.std(axis=0), 0.05 * self.bounds).astype(np.float32)

    def shift(self) -> None:
        """Receding horizon: drop the executed step, repeat the last one, reset the spread."""
        self.mean = np.concatenate([self.mean[1:], self.mean[-1:]], axis=0)
        self.std = np.full_like(self.mean, 1.0) * self.bounds * self.init_std
