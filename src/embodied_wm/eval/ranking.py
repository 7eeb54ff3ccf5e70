"""Open-loop planning diagnostic: does the model rank candidate actions by what they really do?

    embodied-wm eval-ranking --model models/tiny --episodes 10 --out DIR
                             [--seed 7000] [--state-steps 0 4 8] [--candidates 64] [--max-speed 0.1]

``eval-planner`` answers "does the closed loop reach the goal?"; when it does not, this answers why:
because the objective is wrong, or because the model's predictions carry no information about the
outcome. It scores the same candidates on the model's predicted frames and on the frames the simulator
really renders for them, and compares both rankings with the candidates' true effect on the goal object.

Protocol, per episode (the goal is built as in ``eval-planner --start-at push-stroke``: the scripted push
of ``--steps`` steps after its approach; same seeds, same skipping) and per state ``s`` in
``--state-steps`` (control steps into the scripted push, 0 = where the stroke through the object begins):

1. The Pipeline is fed the simulator's messages up to frame t (as eval-planner's cem controller and
   perception_node are), so the backend's state is the newest Observation, frame t - 1 (audio completes a
   frame one frame late). The action applied during [t - 1, t) leads every candidate.
2. ``--candidates`` N action sequences for the remaining K - 1 steps, planar (vx, vy) within
   ``--max-speed``: half are straight lines (evenly spread directions at full and half speed), half
   uniform random per step.
3. Ground truth: the physics state is snapshotted (``TabletopSim.snapshot``) and each candidate is
   executed from it; the frames it renders (at the model resolution) and the goal object's final
   distance to its goal position are kept, divided by its distance where the push stroke began
   (``dist_norm``: 1 = where it started, 0 = at the goal; ``at_state`` is the value at t, i.e. no
   progress from there).
4. Objectives, each computed on the model's frames (``model``) and on the true frames (``true``):
   ``goal_last`` and ``goal_region`` (``planning.objectives.score_rollout``'s goal term in its ``last`` and
   ``region`` modes, as planner_node and eval-planner use it), and ``track``: the goal object's
   centroid in the last frame, found by colour inside a window around it, distance to the goal centroid
   (normalized; a lost object counts 1.5). ``track`` is privileged (it is told which pixels are the
   goal object, from the simulator's segmentation): it is not a planner mode but a probe of whether
   frames carry the object's motion at all. ``pixel`` (planner_node's default objective): the goal
   object's projected centre at t is the designated pixel, its goal position's projection the goal
   pixel, the fingertip's projection the effector pixel (``planning.pixel_goal``, config/planner.yaml
   weights); ``model`` scores the maps moved by the model's warps (``Backend.score_pixels``), ``true``
   the same cost on the simulator's projected object and fingertip positions per step (a delta map).
   ``latent`` (model only): minus the squared distance of the last rolled latent to the encoder's latent
   of the goal image. ``node_score`` is the complete score planner_node gets from the service (its
   default objective + contact affordance, config/planner.yaml weights), model only.
5. Per objective: Spearman rank correlation of score vs -dist_norm, the dist_norm of the candidate it
   picks (argmax), and ``gap_closed`` = (mean - picked) / (mean - best) over candidates: 0 = no better
   than picking at random, 1 = picks the best candidate.

Output (DIR/ranking.json, schema ``embodied_wm.ranking/1``): ``settings``, ``model``, ``machine``,
``wall_s``, ``states`` (per episode/state: the candidates' dist_norm statistics, the fraction that moved
the object at all, and per objective and source spearman / picked / gap_closed), ``skipped``, and
``summary`` (per objective and source: means over states of spearman, picked dist_norm and gap_closed;
means of best, random-pick and median dist_norm; ``gap_closed_pooled`` = (mean random-pick - mean
picked) / (mean random-pick - mean best) over all states at once, which states where all candidates end
alike cannot swing), and ``default_objective`` (the objective planner_node uses; its figures are
``summary.objectives[<name>]``). DIR/ranking.png: one row per state: current frame,
goal, then the last frame of the truly best candidate and of the candidate node_score picks, each as
the simulator rendered it and as the model predicted it. Bad options: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.stats import spearmanr
from tqdm import tqdm

from embodied_wm import paramspec as P
from embodied_wm.errors import one_line_argparse_errors
from embodied_wm.eval import planning as PL
from embodied_wm.eval.controllers import CemController, sim_pixel_goal, sim_pixels
from embodied_wm.eval.planning_cli import add_episode_arguments, model_dir_from_args
from embodied_wm.eval.report import _plt
from embodied_wm.observation import Rollout
from embodied_wm.planning import pixel_goal as PG
from embodied_wm.planning.objectives import DEFAULT_SCORE_WEIGHTS, score_rollout
from embodied_wm.planning.params import PLANNER_PARAMS
from embodied_wm.runtime.machine import machine_info as device_info
from embodied_wm.runtime.select import create_backend
from embodied_wm.sensing import resize as conv

if TYPE_CHECKING:
    from embodied_wm.runtime.base import Backend

PROG = "embodied-wm eval-ranking"
SCHEMA = "embodied_wm.ranking/1"
#: Objectives scored on both the model's and the simulator's frames, and the model-only node score.
OBJECTIVES: tuple[str, ...] = ("goal_last", "goal_region", "track", "pixel")
SOURCES: tuple[str, ...] = ("model", "true")
NODE_SCORE = "node_score"
#: Model-only objective: the rolled latent's distance to the encoder's latent of the goal image.
LATENT = "latent"
#: dist_norm assigned when ``track`` cannot find the object in a frame (worse than no progress).
LOST_DIST = 1.5
#: A candidate "moved" the goal object when it ended this much closer or farther (normalized).
MOVED_EPS = 0.02
#: ``track``: a pixel is the object's when its colour is within this (max channel, [0, 1]) of one of
#: the object's colours at t; the search window extends this many pixels around the object.
TRACK_COLOUR_TOL = 0.08
TRACK_WINDOW_PX = 16
#: ``track``: the object is lost when fewer pixels than this fraction of its size at t match.
TRACK_MIN_FRACTION = 0.3


@dataclass
class RankingOptions:
    out: Path
    model_dir: Path | None = None
    backend: str = "auto"
    device: str = "auto"
    seed: int = 7000
    episodes: int = 10
    first_episode: int = 0
    #: Length of the scripted goal push (control steps), as eval-planner's --steps.
    steps: int = 20
    warmup: int = 3
    state_steps: tuple[int, ...] = (0, 4, 8)
    candidates: int = 64
    max_speed: float = 0.1
    min_push: float = 0.01
    max_attempts: int = 5
    #: planner_node parameters (config/planner.yaml) for node_score's weights.
    planner: dict[str, Any] = field(default_factory=dict)

    def planning_options(self) -> PL.PlanningOptions:
        return PL.PlanningOptions(
            out=self.out,
            model_dir=self.model_dir,
            backend=self.backend,
            device=self.device,
            seed=self.seed,
            episodes=self.episodes,
            first_episode=self.first_episode,
            steps=self.steps,
            warmup=self.warmup,
            controllers=("cem",),
            planner=dict(self.planner),
            min_push=self.min_push,
            max_attempts=self.max_attempts,
            start_at="push-stroke",
        )

    def validate(self) -> None:
        popts = self.planning_options()
        popts.validate()  # the shared options, with eval-planner's messages; fills the planner defaults
        self.planner = popts.planner
        if self.backend in ("copy_last", "linear"):
            raise PL.PlanningError(f"--backend {self.backend} is action-blind: there is nothing to rank")
        if self.candidates < 4:
            raise PL.PlanningError(f"--candidates must be >= 4, got {self.candidates}")
        if not (0 < self.max_speed <= 0.3 and math.isfinite(self.max_speed)):
            raise PL.PlanningError(f"--max-speed must be in (0, 0.3] m/s, got {self.max_speed}")
        if not self.state_steps:
            raise PL.PlanningError("--state-steps needs at least one step")
        bad = [s for s in self.state_steps if not 0 <= s < self.steps]
        if bad:
            raise PL.PlanningError(f"--state-steps must lie in [0, --steps={self.steps}), got {bad}")


# ------------------------------------------------------------------------------------------ candidates
def candidate_set(n: int, steps: int, max_speed: float, rng: np.random.Generator) -> np.ndarray:
    """n x steps x 2 planar velocities: n // 2 straight lines (n // 4 directions at full and half
    speed, evenly spread) and the rest uniform random per step within +-max_speed per component."""
    lines = n // 2
    dirs = max(lines // 2, 1)
    out = np.zeros((n, steps, 2), np.float32)
    for i in range(lines):
        ang = 2.0 * math.pi * (i % dirs) / dirs
        speed = max_speed if i < dirs else 0.5 * max_speed
        out[i] = [speed * math.cos(ang), speed * math.sin(ang)]
    out[lines:] = rng.uniform(-max_speed, max_speed, (n - lines, steps, 2))
    return out


# ------------------------------------------------------------------------------------------ objectives
def object_centroids(frames: np.ndarray, current: np.ndarray, object_mask: np.ndarray) -> np.ndarray:
    """(u, v) centroid of the object in each of ``frames`` (N x H x W x 3 uint8), N x 2, NaN where lost.

    The object is ``object_mask`` (H x W bool) in ``current`` (H x W x 3): a pixel of a frame is the
    object's if its colour is within TRACK_COLOUR_TOL of one of the object's colours in ``current``,
    inside a window of TRACK_WINDOW_PX around the object, and not a pixel that already had such a colour
    in ``current`` outside the object (a similar-looking static neighbour)."""
    vs, us = np.nonzero(object_mask)
    n = len(frames)
    out = np.full((n, 2), np.nan)
    if len(vs) == 0:
        return out
    cur = current.astype(np.float32) / 255.0
    colours = cur[object_mask]
    if len(colours) > 64:  # a spread of the object's shades is enough, and bounds the cost
        colours = colours[np.linspace(0, len(colours) - 1, 64).astype(int)]
    h, w = object_mask.shape
    v0, v1 = max(int(vs.min()) - TRACK_WINDOW_PX, 0), min(int(vs.max()) + TRACK_WINDOW_PX + 1, h)
    u0, u1 = max(int(us.min()) - TRACK_WINDOW_PX, 0), min(int(us.max()) + TRACK_WINDOW_PX + 1, w)

    def near(img: np.ndarray) -> np.ndarray:
        return np.asarray(np.abs(img[..., None, :] - colours).max(-1).min(-1) < TRACK_COLOUR_TOL)

    lookalike = near(cur[v0:v1, u0:u1]) & ~object_mask[v0:v1, u0:u1]
    match = near(frames[:, v0:v1, u0:u1].astype(np.float32) / 255.0) & ~lookalike
    count = match.sum(axis=(1, 2))
    vv, uu = np.mgrid[v0:v1, u0:u1]
    found = count >= TRACK_MIN_FRACTION * len(vs)
    safe = np.maximum(count, 1)
    out[:, 0] = (match * uu).sum(axis=(1, 2)) / safe
    out[:, 1] = (match * vv).sum(axis=(1, 2)) / safe
    out[~found] = np.nan
    return out


def track_scores(
    frames: np.ndarray, current: np.ndarray, object_mask: np.ndarray, goal_uv: np.ndarray
) -> np.ndarray:
    """``track``: minus the normalized image distance of the object's centroid in each candidate's last
    frame (N x K x H x W x 3) to ``goal_uv``; a lost object scores -LOST_DIST."""
    vs, us = np.nonzero(object_mask)
    d0 = float(np.hypot(us.mean() - goal_uv[0], vs.mean() - goal_uv[1])) if len(vs) else 0.0
    cen = object_centroids(frames[:, -1], current, object_mask)
    dist = np.hypot(cen[:, 0] - goal_uv[0], cen[:, 1] - goal_uv[1]) / max(d0, 1e-6)
    return np.asarray(-np.where(np.isnan(dist), LOST_DIST, dist))


def objective_scores(
    frames: np.ndarray,
    current: np.ndarray,
    goal: np.ndarray,
    object_mask: np.ndarray,
    goal_uv: np.ndarray,
    dt_ns: int,
) -> dict[str, np.ndarray]:
    """OBJECTIVES for N candidates' frames (N x K x H x W x 3 uint8); ``current`` is frame t and ``goal``
    the goal image, both at the frames' resolution."""

    n = len(frames)
    ro = Rollout(0, dt_ns, frames, np.zeros((n, 0, *frames.shape[2:4]), np.float32), ())
    goal_only = {"goal": 1.0}
    return {
        "goal_last": score_rollout(ro, goal_only, goal, "last")[0].astype(np.float64),
        "goal_region": score_rollout(ro, goal_only, goal, "region", current)[0].astype(np.float64),
        "track": track_scores(frames, current, object_mask, goal_uv),
    }


def pixel_weights(planner: dict[str, Any]) -> dict[str, float]:
    """The pixel objective's term weights as planner_node sends them (config/planner.yaml)."""
    return {
        PG.PIXEL_CHANNEL: float(planner["pixel_weight"]),
        PG.APPROACH_CHANNEL: float(planner["approach_weight"]),
    }


def rank_quality(scores: np.ndarray, dist: np.ndarray) -> dict[str, float | None]:
    """How well ``scores`` (higher = better) rank candidates whose true outcome is ``dist`` (lower =
    better): Spearman correlation with -dist (None when either is constant), the picked candidate's
    dist, and the fraction of the mean-to-best gap that pick closes (None when all candidates tie)."""

    picked = float(dist[int(np.argmax(scores))])
    mean, best = float(dist.mean()), float(dist.min())
    rho: float | None = None
    if np.ptp(scores) > 0 and np.ptp(dist) > 0:
        rho = float(spearmanr(scores, -dist)[0])
    gap = (mean - picked) / (mean - best) if mean - best > 1e-6 else None
    return {"spearman": rho, "picked": picked, "gap_closed": gap}


# ---------------------------------------------------------------------------------------------- states
@dataclass
class StateResult:
    doc: dict[str, Any]
    #: Frames for the PNG: current, goal, and (true, model) last frames of the best and picked candidates.
    frames: dict[str, np.ndarray]


def evaluate_state(
    opts: RankingOptions, goal: PL.Goal, state_step: int, backend: Backend, rng: np.random.Generator
) -> StateResult:
    """Steps 1-5 of the protocol for one state of one episode."""
    # lazy: MuJoCo is optional (the simulator extra)
    from embodied_wm.sim.scene import FIRST_OBJECT_LABEL

    popts = opts.planning_options()
    h, w = backend.image_size
    ep = PL.make_episode(popts, goal.episode, h)
    try:
        backend.reset()
        feeder = CemController(backend, opts.planner, goal.trace.final_rgb, 0, ep, True)
        applied = list(goal.prefix_actions) + list(goal.trace.actions[:state_step])
        for i in range(opts.warmup + len(applied)):
            frame = ep.observe()
            feeder.observe(frame)
            frame.action = ep.step(np.zeros(6) if i < opts.warmup else applied[i - opts.warmup])
            feeder.applied(frame)
        frame = ep.observe()
        feeder.observe(frame)
        obs = feeder.latest
        if obs is None:
            raise PL.PlanningError(f"episode {goal.episode}: the Pipeline emitted no Observation")
        delay = round((frame.stamp_ns - obs.stamp_ns) / backend.dt_ns)
        if delay != 1:
            raise PL.PlanningError(
                f"episode {goal.episode}: newest Observation is {delay} frames old (expected 1)"
            )
        k_obj = goal.object_index
        current = np.asarray(frame.rgb)
        _, seg, _ = ep.sim.render(True)
        assert seg is not None
        object_mask = seg == FIRST_OBJECT_LABEL + k_obj
        if not object_mask.any():
            raise PL.PlanningError(f"episode {goal.episode}: the goal object is not visible")
        # Goal centroid: the goal position projected, shifted by the object's centroid-to-centre offset.
        pos_now = ep.sim.object_poses()[k_obj, :3]
        centre_uv = ep.sim.project(pos_now[None])[0][0]
        vs, us = np.nonzero(object_mask)
        goal_uv = np.asarray(goal.goal_uv) + (np.array([us.mean(), vs.mean()]) - centre_uv)
        # Normalized by the distance where the stroke began, so states of one episode share a scale.
        d0 = PL._xy_dist(goal.trace.start_objects[k_obj], goal.position)
        d_state = PL._xy_dist(pos_now, goal.position) / d0

        k = backend.horizon
        planar = candidate_set(opts.candidates, k - 1, opts.max_speed, rng)
        cand = np.zeros((opts.candidates, k, backend.action_dim), np.float32)
        # The action applied during [t - 1, t) (none before the first control step: the warm-up's zero).
        cand[:, 0] = np.asarray(applied[-1] if applied else np.zeros(6), np.float32)[: backend.action_dim]
        cand[:, 1:, :2] = planar
        pixel_goal = sim_pixel_goal(ep, k_obj, goal.goal_uv, (h, w))
        snap = ep.sim.snapshot()
        index0 = ep.frame_index
        true_frames = np.empty((opts.candidates, k, h, w, 3), np.uint8)
        true_frames[:, 0] = current
        # Ground truth of the pixel objective: the object's (and fingertip's) projected positions.
        obj_tracks = np.empty((opts.candidates, k, 1, 2))
        tip_tracks = np.empty((opts.candidates, k, 2))
        obj_tracks[:, 0, 0], tip_tracks[:, 0] = sim_pixels(ep, k_obj, (h, w))
        dist = np.empty(opts.candidates)
        for c in range(opts.candidates):
            ep.sim.restore(snap)
            ep.frame_index = index0
            for j in range(1, k):
                ep.step(cand[c, j, :6].astype(float))
                true_frames[c, j] = ep.sim.render(False)[0]
                obj_tracks[c, j, 0], tip_tracks[c, j] = sim_pixels(ep, k_obj, (h, w))
            dist[c] = PL._xy_dist(ep.sim.object_poses()[k_obj], goal.position) / d0
    finally:
        ep.close()

    rollout = backend.rollout(cand)
    pixels = backend.score_pixels(cand, *pixel_goal.query())
    pw = pixel_weights(opts.planner)
    model_pixel = PG.combine(PG.pixel_terms(pixels, pixel_goal), pw)
    true_pixel = PG.combine(PG.true_pixel_terms(obj_tracks, pixel_goal, tip_tracks), pw)
    goal_img = conv.resize_area(goal.trace.final_rgb, h, w).astype(np.uint8)
    scores = {
        "model": objective_scores(rollout.frames, current, goal_img, object_mask, goal_uv, backend.dt_ns),
        "true": objective_scores(true_frames, current, goal_img, object_mask, goal_uv, backend.dt_ns),
    }
    scores["model"]["pixel"], scores["true"]["pixel"] = model_pixel, true_pixel
    goal_latent = backend.encode_goal(goal_img)
    latent = PG.latent_term(pixels, goal_latent)
    weights = dict(DEFAULT_SCORE_WEIGHTS)
    weights.update({"contact": float(opts.planner["contact_weight"])})
    if opts.planner["objective"] == "pixel":
        # What planner_node gets: pixel terms + contact (perception_node adds both).
        node = model_pixel + score_rollout(rollout, weights, None)[0].astype(np.float64)
    else:
        weights["goal"] = float(opts.planner["goal_weight"])
        node = score_rollout(rollout, weights, goal_img, "last")[0].astype(np.float64)
    quality: dict[str, dict[str, Any]] = {
        obj: {src: rank_quality(scores[src][obj], dist) for src in SOURCES} for obj in OBJECTIVES
    }
    quality[NODE_SCORE] = {"model": rank_quality(node, dist)}
    quality[LATENT] = {"model": rank_quality(latent, dist)}
    best, picked = int(np.argmin(dist)), int(np.argmax(node))
    doc = {
        "episode": goal.episode,
        "state_step": state_step,
        "goal_object": k_obj,
        "dist_norm": {
            "at_state": d_state,
            "best": float(dist.min()),
            "mean": float(dist.mean()),
            "median": float(np.median(dist)),
            "worst": float(dist.max()),
        },
        "moved_fraction": float(np.mean(np.abs(dist - d_state) > MOVED_EPS)),
        "pixel_goal": {
            "designated_uv": pixel_goal.designated.tolist(),
            "goal_uv": pixel_goal.goals.tolist(),
            "effector_uv": None if pixel_goal.effector is None else pixel_goal.effector.tolist(),
        },
        "objectives": quality,
    }
    frames = {
        "current": current,
        "goal": goal_img,
        "best_true": true_frames[best, -1],
        "best_model": rollout.frames[best, -1],
        "picked_true": true_frames[picked, -1],
        "picked_model": rollout.frames[picked, -1],
    }
    return StateResult(doc, frames)


def _mean(vals: Sequence[float | None]) -> float | None:
    v = [x for x in vals if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else None


def summarize(states: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "states": len(states),
        "dist_norm": {
            key: _mean([s["dist_norm"][key] for s in states])
            for key in ("at_state", "best", "mean", "median")
        },
        "moved_fraction": _mean([s["moved_fraction"] for s in states]),
        "objectives": {},
    }
    for obj in (*OBJECTIVES, NODE_SCORE, LATENT):
        out["objectives"][obj] = {}
        for src in SOURCES:
            rows = [(s, s["objectives"][obj][src]) for s in states if src in s["objectives"][obj]]
            if rows:
                q: dict[str, Any] = {
                    m: _mean([r[m] for _, r in rows]) for m in ("spearman", "picked", "gap_closed")
                }
                q["gap_closed_pooled"] = gap_closed_pooled(
                    [st["dist_norm"]["mean"] for st, _ in rows],
                    [r["picked"] for _, r in rows],
                    [st["dist_norm"]["best"] for st, _ in rows],
                )
                out["objectives"][obj][src] = q
    return out


def gap_closed_pooled(
    random_pick: Sequence[float], picked: Sequence[float], best: Sequence[float]
) -> float | None:
    """(mean random-pick - mean picked) / (mean random-pick - mean best) over all states at once: unlike
    the mean of per-state ratios it is not swung by states where all candidates end alike."""
    r, p, b = float(np.mean(random_pick)), float(np.mean(picked)), float(np.mean(best))
    return (r - p) / (r - b) if r - b > 1e-9 else None


def evaluate(opts: RankingOptions, progress: Callable[[], None] | None = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    backend = create_backend(opts.backend, model_dir=opts.model_dir, device=opts.device)
    res = int(backend.image_size[0])
    if backend.image_size[0] != backend.image_size[1]:
        raise PL.PlanningError(f"the simulator renders square frames; model image size {backend.image_size}")
    popts = opts.planning_options()
    states: list[dict[str, Any]] = []
    frames: list[dict[str, np.ndarray]] = []
    skipped: list[dict[str, Any]] = []
    done, index = 0, opts.first_episode
    while done < opts.episodes:
        if len(skipped) >= opts.max_attempts * opts.episodes:
            raise PL.PlanningError(f"{len(skipped)} episodes skipped (last: {skipped[-1]['reason']})")
        goal = PL.make_goal(popts, index, res)
        if isinstance(goal, str):
            skipped.append({"episode": index, "reason": goal})
            index += 1
            continue
        for s in opts.state_steps:
            rng = np.random.default_rng([opts.seed, index, s])
            r = evaluate_state(opts, goal, s, backend, rng)
            states.append(r.doc)
            frames.append(r.frames)
            if progress is not None:
                progress()
        done += 1
        index += 1
    return {
        "schema": SCHEMA,
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
            "state_steps": list(opts.state_steps),
            "start_at": "push-stroke",
            "horizon": backend.horizon,
            "camera_resolution": res,
        },
        "model": {
            "model_dir": str(opts.model_dir) if opts.model_dir else None,
            "model_id": backend.model_id,
            "backend": backend.describe(),
        },
        "machine": device_info(),
        "wall_s": time.perf_counter() - t0,
        "states": states,
        "skipped": skipped,
        "summary": summarize(states),
        # planner_node's objective (config/planner.yaml); its figures: summary.objectives[<name>].
        "default_objective": default_objective(),
        "_frames": frames,
    }


def default_objective() -> str:
    """The objective planner_node uses by default, named as in summary.objectives."""
    name = str(P.spec_table(PLANNER_PARAMS)["objective"].default)
    return "pixel" if name == "pixel" else "goal_last"


# ------------------------------------------------------------------------------------------- output
def write_png(doc: dict[str, Any], path: Path) -> None:
    plt = _plt()
    cols = (
        ("current", "frame t"),
        ("goal", "goal"),
        ("best_true", "best: sim"),
        ("best_model", "best: model"),
        ("picked_true", "node pick: sim"),
        ("picked_model", "node pick: model"),
    )
    rows = doc["_frames"]
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(1.9 * len(cols), 2.0 * len(rows)), squeeze=False)
    for r, (fr, st) in enumerate(zip(rows, doc["states"])):
        for c, (key, label) in enumerate(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(fr[key], interpolation="nearest")
            title = label
            if key == "current":
                title = f"ep {st['episode']} step {st['state_step']}"
            elif key == "best_true":
                title = f"best: sim d={st['dist_norm']['best']:.2f}"
            elif key == "picked_true":
                title = f"node pick: sim d={st['objectives'][NODE_SCORE]['model']['picked']:.2f}"
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.2f}"


def summary_line(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    parts = []
    for obj, by_src in s["objectives"].items():
        for src, q in by_src.items():
            parts.append(f"{obj}/{src} {_fmt(q['gap_closed'])} (pooled {_fmt(q.get('gap_closed_pooled'))})")
    d = s["dist_norm"]
    return (
        f"{s['states']} states; default objective {doc.get('default_objective')}; "
        "gap closed (0 = random pick, 1 = best): "
        + ", ".join(parts)
        + f"; dist_norm at the states {d['at_state']:.3f}, best candidate {d['best']:.3f}, "
        f"random pick {d['mean']:.3f}"
    )


# ---------------------------------------------------------------------------------------------- CLI
def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_episode_arguments(
        p, "auto, onnxruntime, pytorch or tensorrt", 20, "length of the scripted goal push"
    )
    p.add_argument(
        "--state-steps",
        type=int,
        nargs="+",
        default=[0, 4, 8],
        metavar="S",
        help="states ranked: control steps into the scripted push stroke (0 = its start)",
    )
    p.add_argument("--candidates", type=int, default=64, metavar="N", help="candidate sequences per state")
    p.add_argument("--max-speed", type=float, default=0.1, metavar="V", help="m/s per planar component")
    p.set_defaults(func=run)
    one_line_argparse_errors(p, PROG)
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval-ranking`` on the ``embodied-wm`` command."""
    p = subparsers.add_parser(
        "eval-ranking",
        help="open-loop planning diagnostic: model vs simulator ranking of candidate actions",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    return configure_parser(p)


def options_from_args(args: argparse.Namespace) -> RankingOptions:
    opts = RankingOptions(
        out=Path(args.out),
        model_dir=model_dir_from_args(args),
        backend=args.backend,
        device=args.device,
        seed=args.seed,
        episodes=args.episodes,
        first_episode=args.first_episode,
        steps=args.steps,
        warmup=args.warmup,
        state_steps=tuple(dict.fromkeys(args.state_steps)),
        candidates=args.candidates,
        max_speed=args.max_speed,
        min_push=args.min_push,
        max_attempts=args.max_attempts,
    )
    opts.validate()
    return opts


def write_outputs(doc: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = out / "ranking.json", out / "ranking.png"
    write_png(doc, png_path)
    body = {k: v for k, v in doc.items() if k != "_frames"}
    json_path.write_text(json.dumps(body, indent=2, allow_nan=False))
    return json_path, png_path


def run(args: argparse.Namespace) -> int:
    try:
        opts = options_from_args(args)
    except PL.PlanningError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    try:
        total = opts.episodes * len(opts.state_steps)
        with tqdm(total=total, unit="state", desc="eval-ranking", disable=None, file=sys.stderr) as bar:
            doc = evaluate(opts, progress=lambda: bar.update(1))
    except PL.PlanningError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    json_path, png_path = write_outputs(doc, opts.out)
    print(f"wrote {json_path} and {png_path}")
    print(summary_line(doc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = configure_parser(argparse.ArgumentParser(prog=PROG, description=__doc__))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
