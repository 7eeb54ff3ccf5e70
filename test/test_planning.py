"""planning/: the rollout objective (score_rollout and its goal modes) and the CEM sampler. No ROS."""

from __future__ import annotations

import numpy as np
import pytest

from embodied_wm.observation import Rollout
from embodied_wm.planning.cem import CemSampler
from embodied_wm.planning.objectives import score_rollout


def test_score_rollout() -> None:
    frames = np.zeros((3, 2, 4, 4, 3), np.uint8)
    frames[1, -1] = 255  # candidate 1 ends on white
    aff = np.zeros((3, 2, 4, 4), np.float32)
    aff[2, 0] = 1.0  # candidate 2 predicts full contact
    r = Rollout(0, 1, frames, aff, ("contact", "movable"))
    goal = np.full((4, 4, 3), 255, np.uint8)
    scores, terms = score_rollout(r, {"contact": 0.0, "goal": 1.0}, goal)
    assert int(np.argmax(scores)) == 1 and terms["goal"][1] == 0.0 and terms["goal"][0] == -1.0
    scores, _ = score_rollout(r, {"contact": 1.0}, None)
    assert int(np.argmax(scores)) == 2 and scores[2] == pytest.approx(1.0)


def test_score_rollout_goal_modes() -> None:
    goal = np.zeros((16, 16, 3), np.uint8)
    goal[2:4, 2:4] = 255  # the object's goal position; the current image has it elsewhere
    current = np.zeros_like(goal)
    current[10:12, 10:12] = 255
    frames = np.zeros((2, 3, 16, 16, 3), np.uint8)
    frames[:, :] = current
    # Candidate 0 moves the object to the goal but its finger ends at a far corner (many pixels off);
    # candidate 1 leaves the object and keeps the scene otherwise identical to the goal.
    frames[0, -1] = goal
    frames[0, -1, 8:16, 0:6] = 200
    r = Rollout(0, 1, frames, np.zeros((2, 1, 16, 16), np.float32), ("contact",))
    w = {"contact": 0.0, "goal": 1.0}
    _, last = score_rollout(r, w, goal)
    _, region = score_rollout(r, w, goal, "region", current)
    assert last["goal"][1] > last["goal"][0]  # whole-image MSE prefers the idle candidate
    assert region["goal"][0] == 0.0 and region["goal"][0] > region["goal"][1]
    # Without a reference the candidates' mean first frame stands in for the current image.
    _, region_default = score_rollout(r, w, goal, "region")
    np.testing.assert_allclose(region_default["goal"], region["goal"])
    with pytest.raises(ValueError, match="goal_mode"):
        score_rollout(r, w, goal, "nope")


def test_cem_sampler() -> None:
    s = CemSampler(horizon=4, active_dims=[0, 1], max_speed=0.1, init_std=0.5, elite_fraction=0.25, seed=1)
    x = s.sample(64)
    assert x.shape == (64, 4, 2) and np.abs(x).max() <= 0.1 + 1e-7
    full = s.full(x)
    assert full.shape == (64, 4, 6) and not full[..., 2:].any()
    scores = x[:, :, 0].sum(axis=1)  # prefer +vx
    s.refit(x, scores)
    assert (s.mean[:, 0] > 0).all()
    s.shift()
    assert s.mean.shape == (4, 2)
