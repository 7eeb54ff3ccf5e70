"""Pixel goals and latent goals: objectives computed from the scores-only rollout (``Backend.score_pixels``).

Pixel goals follow Visual Foresight (Finn & Levine 2017; Ebert et al. 2018): the planner names designated
pixels on the object and a goal pixel for each. The model's per-step backward warps move a small Gaussian
probability map on each designated pixel; the cost of a candidate is the maps' expected distance to their
goal pixels, summed over the horizon. An optional approach term brings the end effector to the object
first: the end effector's own pixel is tracked the same way and its distance to the nearest designated
pixel's predicted position (beyond a contact radius) is added per step, so a plan from far away moves the
finger to the object before the goal term can reward a push.

The latent goal (DINO-WM, V-JEPA 2-AC) is the squared distance of the last rolled latent to the encoder's
latent of the goal image (``Backend.encode_goal``).

Scores are "higher is better" and in image widths (pixels / max(H, W)), so weights do not depend on the
camera resolution. Pixels given to ``PixelGoal.from_camera`` are in the camera image (u right, v down, pixel
centres at integers, as ``TabletopSim.project`` and OpenCV) and are scaled to the model image the way the
backends resize it (each axis on its own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from embodied_wm.errors import InvalidDataError
from embodied_wm.observation import PixelRollout

#: Score weight names (PredictRollout.score_channels pseudo-channels, planner parameters).
PIXEL_CHANNEL = "pixel"
APPROACH_CHANNEL = "approach"
LATENT_CHANNEL = "latent"
DEFAULT_PIXEL_WEIGHTS: dict[str, float] = {PIXEL_CHANNEL: 1.0, APPROACH_CHANNEL: 1.0, LATENT_CHANNEL: 0.0}
#: The end effector counts as "at the object" within this distance (image widths; ~3 px at 64 px).
CONTACT_RADIUS = 0.05


class PixelGoalError(InvalidDataError):
    """Designated / goal / effector pixels that cannot be used (the text says which and why)."""


@dataclass
class PixelGoal:
    """Designated pixels, one goal pixel each, and optionally the end effector's pixel, all (u, v) in
    pixels of the model image (``image_size`` = (H, W))."""

    designated: np.ndarray  # P x 2
    goals: np.ndarray  # P x 2
    image_size: tuple[int, int]
    effector: np.ndarray | None = None  # 2

    @classmethod
    def from_camera(
        cls,
        designated: np.ndarray,
        goals: np.ndarray,
        camera_size: tuple[int, int],
        model_size: tuple[int, int],
        effector: np.ndarray | None = None,
    ) -> PixelGoal:
        """From camera-image pixels (``camera_size`` = (H, W)); PixelGoalError names a pixel outside it."""
        ch, cw = camera_size
        scale = np.array([model_size[1] / cw, model_size[0] / ch])
        d = check_pixels("designated pixel", designated, camera_size)
        g = check_pixels("goal pixel", goals, camera_size)
        if len(d) != len(g):
            raise PixelGoalError(f"{len(d)} designated pixels but {len(g)} goal pixels (one goal per pixel)")
        e = None if effector is None else check_pixels("effector pixel", effector, camera_size)[0]

        def to_model(p: np.ndarray) -> np.ndarray:
            # Pixel centres: camera u -> model (u + 0.5) * scale - 0.5.
            return ((p + 0.5) * scale - 0.5).astype(np.float32)

        return cls(to_model(d), to_model(g), model_size, None if e is None else to_model(e[None])[0])

    def to_camera(self, positions: np.ndarray, camera_size: tuple[int, int]) -> np.ndarray:
        """Model-image (u, v) positions (any leading shape x 2) -> camera-image pixels."""
        ch, cw = camera_size
        scale = np.array([cw / self.image_size[1], ch / self.image_size[0]])
        return np.asarray((np.asarray(positions, np.float64) + 0.5) * scale - 0.5, np.float32)

    def query(self) -> tuple[np.ndarray, np.ndarray]:
        """(designated, goals) for ``Backend.score_pixels``: the effector is tracked as one more
        designated pixel (last; its goal is itself, unused)."""
        if self.effector is None:
            return self.designated, self.goals
        e = self.effector[None].astype(np.float32)
        return np.concatenate([self.designated, e]), np.concatenate([self.goals, e])


def check_pixels(what: str, pixels: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """``pixels`` (flat u, v pairs or P x 2) as P x 2 float64 inside an H x W image, else PixelGoalError."""
    h, w = image_size
    a = np.asarray(pixels, np.float64)
    if a.size == 0 or a.size % 2:
        raise PixelGoalError(f"{what}s: need (u, v) pairs, got {a.size} values")
    a = a.reshape(-1, 2)
    if not np.isfinite(a).all():
        raise PixelGoalError(f"{what}s contain NaN or infinite values")
    for i, (u, v) in enumerate(a):
        if not (-0.5 <= u < w - 0.5 and -0.5 <= v < h - 0.5):
            raise PixelGoalError(
                f"{what} {i} (u={u:g}, v={v:g}) is outside the {w}x{h} image "
                f"(u must lie in [-0.5, {w - 0.5:g}), v in [-0.5, {h - 0.5:g}))"
            )
    return a


def pixel_terms(pr: PixelRollout, goal: PixelGoal) -> dict[str, np.ndarray]:
    """Per-candidate score terms (higher is better, image widths): ``pixel`` = minus the designated maps'
    expected goal distance, summed over pixels and averaged over steps (a sum divided by the constant K);
    ``approach`` (with an effector pixel) = minus the effector's distance beyond CONTACT_RADIUS to the
    nearest designated pixel's predicted position, averaged over steps."""
    scale = 1.0 / max(goal.image_size)
    p = len(goal.designated)
    dist = pr.distances[:, :, :p].astype(np.float64) * scale  # N x K x P
    terms = {PIXEL_CHANNEL: -dist.sum(axis=2).mean(axis=1)}
    if goal.effector is not None:
        eff = pr.positions[:, :, p].astype(np.float64)  # N x K x 2
        obj = pr.positions[:, :, :p].astype(np.float64)  # N x K x P x 2
        gap = np.linalg.norm(obj - eff[:, :, None], axis=-1).min(axis=2) * scale
        terms[APPROACH_CHANNEL] = -np.maximum(gap - CONTACT_RADIUS, 0.0).mean(axis=1)
    return terms


def latent_term(pr: PixelRollout, goal_latent: np.ndarray) -> np.ndarray:
    """Minus the mean squared difference of each candidate's last rolled latent to the goal latent."""
    if pr.latents is None:
        raise PixelGoalError("this backend has no latent state (the latent goal needs a learned model)")
    z = pr.latents[:, -1].astype(np.float64)
    return np.asarray(-((z - np.asarray(goal_latent, np.float64)[None]) ** 2).mean(axis=1))


def combine(terms: Mapping[str, np.ndarray], weights: Mapping[str, float]) -> np.ndarray:
    """Weighted sum of ``terms`` (weights default to DEFAULT_PIXEL_WEIGHTS; unknown terms weigh 0)."""
    n = len(next(iter(terms.values())))
    out = np.zeros(n, np.float64)
    for name, term in terms.items():
        out += float(weights.get(name, DEFAULT_PIXEL_WEIGHTS.get(name, 0.0))) * term
    return out


def true_pixel_terms(
    tracks: np.ndarray, goal: PixelGoal, effector_tracks: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """``pixel_terms`` for known trajectories (the simulator's ground truth): ``tracks`` N x K x P x 2
    model-image positions of the designated points, ``effector_tracks`` N x K x 2 (a delta map)."""
    scale = 1.0 / max(goal.image_size)
    d = np.linalg.norm(tracks - goal.goals[None, None], axis=-1) * scale
    terms = {PIXEL_CHANNEL: -d.sum(axis=2).mean(axis=1)}
    if goal.effector is not None and effector_tracks is not None:
        gap = np.linalg.norm(tracks - effector_tracks[:, :, None], axis=-1).min(axis=2) * scale
        terms[APPROACH_CHANNEL] = -np.maximum(gap - CONTACT_RADIUS, 0.0).mean(axis=1)
    return terms
