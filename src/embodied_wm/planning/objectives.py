"""What a planner optimises: scores of predicted rollouts (affordance channels, goal image), no ROS.

``score_rollout`` is the one objective: perception_node's ~/predict_rollout answers with it, and the
closed-loop and ranking evaluations (eval/planning.py, eval/ranking.py) score with it.
"""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.observation import Rollout

#: Score weight of each affordance channel when the request names none, and of the goal term.
#: contact +1: prefer futures in which the end effector touches things (pushing needs contact);
#: goal +1: prefer futures whose last frame is close to the goal image (score term is -MSE in [0, 1]).
#: Other channels (e.g. "movable") weigh 0 unless the request names them.
DEFAULT_SCORE_WEIGHTS: dict[str, float] = {"contact": 1.0, "goal": 1.0}
#: Name of the pseudo-channel that weighs the goal-image term in PredictRollout.score_channels.
GOAL_CHANNEL = "goal"
#: How ``score_rollout`` compares predictions with the goal image (see there); "last" is the default.
GOAL_MODES: tuple[str, ...] = ("last", "region")
#: goal_mode "region": a pixel is in the goal region where goal and reference differ by more than this
#: (largest channel difference, pixels scaled to [0, 1]), grown by GOAL_REGION_DILATE_PX pixels.
GOAL_REGION_THRESHOLD = 0.1
GOAL_REGION_DILATE_PX = 3



def _goal_term(rollout: Rollout, goal: np.ndarray, mode: str, reference: np.ndarray | None) -> np.ndarray:
    """Per-candidate negative mean squared difference to the goal, see ``score_rollout``."""
    n = int(rollout.frames.shape[0])
    g = np.asarray(goal, np.float64)[None] / 255.0
    err = ((rollout.frames[:, -1].astype(np.float64) / 255.0 - g) ** 2).mean(axis=-1)  # N x H x W
    if mode == "region":
        ref = (
            np.asarray(reference, np.float64) / 255.0
            if reference is not None
            else rollout.frames[:, 0].astype(np.float64).mean(axis=0) / 255.0
        )
        changed = (np.abs(ref - g[0]).max(axis=-1) > GOAL_REGION_THRESHOLD).astype(np.uint8)
        side = 2 * GOAL_REGION_DILATE_PX + 1
        mask = cv2.dilate(changed, np.ones((side, side), np.uint8)).astype(bool)
        if mask.any():
            return -err[:, mask].mean(axis=1)
    return -err.reshape(n, -1).mean(axis=1)


def score_rollout(
    rollout: Rollout,
    weights: Mapping[str, float],
    goal: np.ndarray | None,
    goal_mode: str = "last",
    reference: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Score each candidate (higher is better): sum over affordance channels of weight * mean probability
    over the map, plus, with a goal image (H x W x 3 at the model resolution), ``weights['goal']`` times
    the negative mean squared difference (pixel values scaled to [0, 1]) between the candidate's last
    predicted frame and the goal. Returns (scores, per-term scores).

    ``goal_mode`` (one of GOAL_MODES) picks the pixels averaged: ``last`` (default) the whole image;
    ``region`` only those where the goal differs from ``reference`` (the current image at the model
    resolution; None: the mean over candidates of their first predicted frame) by more than
    GOAL_REGION_THRESHOLD, dilated by GOAL_REGION_DILATE_PX (the whole image if none differs), so the
    finger's own pixels elsewhere do not dominate, and the term's spread over candidates is larger (a
    mean over fewer pixels). Neither mode is shown better (README, "Does the model steer a push toward
    a goal?"): closed loop, ``eval-planner --steps 20 --start-at push-stroke`` (seed 7000, 10 episodes)
    gave region 0.823 / last 0.917 mean normalized goal-object distance with the previous weights and
    0.890 / 0.901 with the shipped ones; open loop, ``eval-ranking`` scores both alike on the simulator's
    frames. So the nodes keep ``last``."""
    if goal_mode not in GOAL_MODES:
        raise ConfigError(f"goal_mode must be one of {', '.join(GOAL_MODES)}, got {goal_mode!r}")
    n = int(rollout.frames.shape[0])
    scores = np.zeros(n, np.float64)
    terms: dict[str, np.ndarray] = {}
    for c, name in enumerate(rollout.affordance_channels):
        w = float(weights.get(name, 0.0))
        if w != 0.0 and rollout.affordance.size:
            term = rollout.affordance[:, c].reshape(n, -1).astype(np.float64).mean(axis=1)
            terms[name] = term
            scores += w * term
    if goal is not None:
        term = _goal_term(rollout, goal, goal_mode, reference)
        terms[GOAL_CHANNEL] = term
        scores += float(weights.get(GOAL_CHANNEL, DEFAULT_SCORE_WEIGHTS[GOAL_CHANNEL])) * term
    return scores.astype(np.float32), terms
