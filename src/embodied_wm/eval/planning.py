"""Closed-loop planner evaluation: can the world model steer a push toward a goal in the simulator?

    embodied-wm eval-planner --model models/tiny --episodes 10 --steps 30 --out DIR
                             [--seed 7000] [--controllers cem random zero scripted]
                             [--start-at scene|push-stroke] [--no-delay-compensation]
                             [--goal-mode last|region]
                             [--num-candidates N --iterations N --max-speed V --active-dims 0 1 ...]

Protocol, per episode i (simulator scene ``Episode(seed, i)``; ``models/tiny`` was trained on
``Episode(1000, 0..99)`` and validated on ``Episode(5000, 0..19)``, so the default seed 7000 gives scenes it
never saw):

1. Warm-up: ``--warmup`` frames with the finger still (every controller and the goal run alike), so the
   Pipeline's non-camera streams are active when control starts (the Aligner needs 0.2 s of history).
2. Goal: from there the simulator's scripted approach-push policy (``ScriptedPolicy.begin("push")``: above
   a randomly drawn object, down, through it, up; then holding still; a waypoint not reached within
   GOAL_FRAMES_PER_WAYPOINT frames is given up) runs for ``--steps`` control steps at the camera rate
   (10 Hz). Its last camera frame is the goal image; the object it displaced most is the
   goal object and that object's final xy its goal position; the finger's final position is the finger
   goal. An episode whose push moved no object by ``--min-push`` metres is skipped (listed in the JSON)
   and the next episode index is drawn instead. With ``--start-at push-stroke`` the push's approach
   (above the object, then down beside it) is a prefix that every controller replays first, and control
   (and the ``--steps`` count) starts where the stroke through the object begins: a goal a few model
   horizons away instead of one behind a 1-3 s approach.
3. Every controller starts again from the same initial state (the scene rebuilt from the same seed;
   MuJoCo is deterministic) and runs the same ``--steps`` steps:

   * ``cem``: planning.cem's ``CemSampler`` and planning.objectives' ``score_rollout`` (imported, not copied)
     over ``backend.rollout`` of the candidates, receding horizon: the first action of the best sequence
     is executed each step. Settings default to planner_node's parameters (config/planner.yaml).
     ``--objective`` (default planner_node's, ``pixel``): ``pixel`` scores pixel goals on the
     scores-only rollout as perception_node does for a request with designated pixels: the goal
     object's projected centre (designated pixel, re-read from the simulator every control step, i.e. a
     perfect tracker), its goal position's projection (goal pixel) and the fingertip's (effector pixel);
     ``image`` scores the goal image: ``--goal-mode`` picks ``score_rollout``'s goal comparison (default
     ``last``, as the nodes use); ``region`` takes the latest Observation's image as the reference.
   * ``random``: uniform random actions within the same bounds (``CemSampler.sample(uniform=True)``).
   * ``zero``: the finger holds still.
   * ``scripted``: the goal run's own actions replayed; an upper reference that must reproduce the goal
     exactly (``summary.scripted_exact``).

What the model sees: the simulator's own messages (``sim.messages.sensor_messages``, rclpy message
objects, as sim_node publishes them) go through ``Pipeline.feed`` exactly as in perception_node, and every
Observation it emits is predicted with ``Pipeline.predict`` (the node's path), so ``backend.rollout``
starts from the latest Observation's state. The commanded twist of step t is fed after it was chosen,
stamped with frame t (the command in force from t on; sim_node in scripted mode stamps it the same way).
With the simulator's audio (a chunk covers [t - dt, t)) the Aligner completes frame t only when frame
t + 1's audio arrives, so when choosing the action for [t, t + dt) the newest Observation is frame t - 1:
a one-frame delay, the same as in the live node. By default the planner compensates: the actions already
applied since that Observation lead every candidate and CEM samples the remaining K - 1 steps
(``--no-delay-compensation`` samples all K from the stale state, as planner_node does). The simulator
waits for the planner, so planning time costs no control steps here (unlike the live loop).

Metrics per episode and controller: ``object_dist_norm`` = final xy distance of the goal object to its goal
position divided by its initial distance (1.0 = no progress, 0 = reached, > 1 = pushed away);
``pixel_mse`` = mean squared difference, pixels scaled to [0, 1], between the final frame and the goal
image (the scale of the planner's goal term); ``finger_dist_m`` = distance of the fingertip to its goal
position. Summary per controller: mean / median of ``object_dist_norm``, the means of the others and
``fraction_progress`` (episodes with ``object_dist_norm`` < 0.9); ``cem_vs_random``: episodes where cem
ended closer to the goal than random by more than 1 mm (wins), within 1 mm (ties), and wins / episodes.

Output (DIR/planning.json, schema ``embodied_wm.planning/1``):
  ``settings``: every option; ``model``: model_dir, model_id, backend describe(); ``machine``:
  ``runtime.machine.machine_info()`` (cpu_model, cpu_cores, platform, load); ``wall_s``; ``timing``: cem
  milliseconds per control step (Pipeline feed + predict + all CEM rollouts and scoring; simulation
  excluded) as mean / p50 / p95 and count;
  ``episodes``: per episode seed, episode, goal_object (index, shape), push_displacement_m,
  push_done_step (control step at which the scripted push finished, None if still running at the end),
  prefix_steps (scripted approach steps replayed before control, 0 unless ``--start-at push-stroke``),
  and ``results`` per controller (the metrics above, ``goal_object_moved_m`` (how far the goal object moved
  from its start), ``object_dist_curve`` (normalized distance after each step), and for cem
  ``no_observation_steps``, ``delay_frames`` and mean score spreads (max - min over candidates, per term)
  at the last CEM iteration); ``skipped``: episodes left out and why; ``summary`` as above.
DIR/planning.png: one row per episode: start frame, goal frame, final frame of cem, final frame of random
(the goal position marked with a cross). Bad options end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from embodied_wm import paramspec as P
from embodied_wm.errors import EmbodiedWMError
from embodied_wm.eval.controllers import (
    GOAL_FRAMES_PER_WAYPOINT,
    CemController,
    Controller,
    RandomController,
    ReplayController,
    ScriptedPushController,
    ZeroController,
)
from embodied_wm.eval.metrics import mse
from embodied_wm.eval.report import _plt
from embodied_wm.planning.objectives import GOAL_MODES
from embodied_wm.planning.params import PLANNER_PARAMS
from embodied_wm.runtime.machine import machine_info as device_info
from embodied_wm.runtime.registry import device_problem
from embodied_wm.runtime.select import NAMES, create_backend

if TYPE_CHECKING:
    from embodied_wm.runtime.base import Backend
    from embodied_wm.sim.episode import Episode

PROG = "embodied-wm eval-planner"
SCHEMA = "embodied_wm.planning/1"
CONTROLLERS: tuple[str, ...] = ("cem", "random", "zero", "scripted")
#: Planner settings taken from planner_node's parameter table (ros/params.py) unless given.
PLANNER_SETTINGS: tuple[str, ...] = (
    "num_candidates",
    "iterations",
    "elite_fraction",
    "max_speed",
    "active_dims",
    "init_std",
    "goal_weight",
    "contact_weight",
    "objective",
    "pixel_weight",
    "approach_weight",
    "seed",
)
#: Where control starts: the scene's initial state, or where the scripted push stroke begins.
START_AT: tuple[str, ...] = ("scene", "push-stroke")
#: The scripted approach (above the object, then down beside it) takes at most 2 x 40 frames.
MAX_APPROACH_STEPS = 2 * GOAL_FRAMES_PER_WAYPOINT + 2
#: cem and random end "tied" when their final goal-object distances differ by less than this (m).
TIE_TOLERANCE_M = 0.001


class PlanningError(EmbodiedWMError, ValueError):
    """Bad options or an evaluation that cannot run (reported as one line)."""


@dataclass
class PlanningOptions:
    out: Path
    model_dir: Path | None = None
    backend: str = "auto"
    device: str = "auto"
    seed: int = 7000
    episodes: int = 10
    first_episode: int = 0
    steps: int = 30
    warmup: int = 3
    controllers: tuple[str, ...] = CONTROLLERS
    #: planner_node parameters (names as in config/planner.yaml; ``seed`` is the sampler's).
    planner: dict[str, Any] = field(default_factory=dict)
    delay_compensation: bool = True
    min_push: float = 0.01
    max_attempts: int = 5
    start_at: str = "scene"
    #: score_rollout's goal_mode for cem (planning.objectives.GOAL_MODES).
    goal_mode: str = "last"

    def validate(self) -> None:
        if self.backend not in NAMES:
            raise PlanningError(f"--backend must be one of {', '.join(NAMES)}, got {self.backend!r}")
        problem = device_problem(self.device)
        if problem:
            raise PlanningError(f"--device {problem}")
        for name, val, lo in (
            ("--episodes", self.episodes, 1),
            ("--steps", self.steps, 1),
            ("--warmup", self.warmup, 2),
            ("--seed", self.seed, 0),
            ("--first-episode", self.first_episode, 0),
            ("--max-attempts", self.max_attempts, 1),
        ):
            if val < lo:
                raise PlanningError(f"{name} must be >= {lo}, got {val}")
        if not (self.min_push > 0 and math.isfinite(self.min_push)):
            raise PlanningError(f"--min-push must be > 0 (metres), got {self.min_push}")
        if self.goal_mode not in GOAL_MODES:
            raise PlanningError(f"--goal-mode must be one of {', '.join(GOAL_MODES)}, got {self.goal_mode!r}")
        if self.start_at not in START_AT:
            raise PlanningError(f"--start-at must be one of {', '.join(START_AT)}, got {self.start_at!r}")
        if not self.controllers:
            raise PlanningError("--controllers needs at least one of " + ", ".join(CONTROLLERS))
        bad = [c for c in self.controllers if c not in CONTROLLERS]
        if bad:
            raise PlanningError(
                f"unknown controller(s) {', '.join(bad)}; choose from {', '.join(CONTROLLERS)}"
            )
        specs = P.spec_table(PLANNER_PARAMS)
        for name in PLANNER_SETTINGS:
            if name not in self.planner:
                self.planner[name] = specs[name].default
            reason = P.validate(specs, name, self.planner[name])
            if reason:
                option = "planner-seed" if name == "seed" else name.replace("_", "-")
                raise PlanningError(f"--{option}{reason[len(name) :]}")
        if self.model_dir is not None and not self.model_dir.is_dir():
            raise PlanningError(f"--model {self.model_dir}: no such directory")
        if self.out.exists() and not self.out.is_dir():
            raise PlanningError(f"--out {self.out}: exists and is not a directory")


# ----------------------------------------------------------------------------------------- episodes
@dataclass
class Trace:
    """What one controller did in one episode."""

    start_rgb: np.ndarray
    final_rgb: np.ndarray
    start_objects: np.ndarray  # n x 3
    final_objects: np.ndarray  # n x 3
    final_finger: np.ndarray
    actions: list[np.ndarray]
    objects_per_step: list[np.ndarray]
    #: Actions applied before control started (the prefix; warm-up excluded).
    prefix_actions: list[np.ndarray] = field(default_factory=list)


def make_episode(opts: PlanningOptions, episode: int, res: int) -> Episode:
    # lazy: MuJoCo is optional (the simulator extra)
    from embodied_wm.sim.episode import Episode

    return Episode(opts.seed, episode, res=res, ground_truth=False)


def run_controller(
    ep: Episode,
    ctrl: Controller,
    steps: int,
    warmup: int,
    prefix: Controller | None = None,
    prefix_steps: int = 0,
    on_step: Callable[[], None] | None = None,
) -> Trace:
    """``warmup`` still frames, ``prefix_steps`` steps whose actions ``prefix`` chooses (``ctrl`` still
    sees them), then ``steps`` control steps of ``ctrl``; frames are rendered every step."""
    prefix_actions: list[np.ndarray] = []
    for i in range(warmup + prefix_steps):
        frame = ep.observe()
        ctrl.observe(frame)
        action = np.zeros(6) if i < warmup or prefix is None else prefix.decide(ep, frame, i - warmup)
        frame.action = ep.step(action)
        ctrl.applied(frame)
        if i >= warmup:
            prefix_actions.append(frame.action.copy())
    start_objects = ep.sim.object_poses()[:, :3]
    start_rgb: np.ndarray | None = None
    actions: list[np.ndarray] = []
    per_step: list[np.ndarray] = []
    for t in range(steps):
        frame = ep.observe()
        if start_rgb is None:
            start_rgb = frame.rgb
        ctrl.observe(frame)
        action = ctrl.decide(ep, frame, t)
        frame.action = ep.step(action)
        ctrl.applied(frame)
        actions.append(frame.action.copy())
        per_step.append(ep.sim.object_poses()[:, :3])
        if on_step is not None:
            on_step()
    final = ep.observe()
    assert start_rgb is not None
    return Trace(
        start_rgb=start_rgb,
        final_rgb=final.rgb,
        start_objects=start_objects,
        final_objects=final.object_poses[:, :3],
        final_finger=final.joint_pos.copy(),
        actions=actions,
        objects_per_step=per_step,
        prefix_actions=prefix_actions,
    )


@dataclass
class Goal:
    episode: int
    trace: Trace
    object_index: int
    displacement_m: float
    done_step: int | None
    #: Actions of the scripted approach every controller executes first (``--start-at push-stroke``).
    prefix_actions: list[np.ndarray]
    #: The goal position projected into the camera image (u, v pixels), for the PNG.
    goal_uv: list[float]

    @property
    def position(self) -> np.ndarray:
        return self.trace.final_objects[self.object_index]


def _xy_dist(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a)[:2] - np.asarray(b)[:2]))


def pixel_mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared difference of two uint8 images with pixels scaled to [0, 1]."""

    return mse(a, b) / 255.0**2


def metrics(trace: Trace, goal: Goal) -> dict[str, Any]:
    k = goal.object_index
    g = goal.position
    d0 = _xy_dist(trace.start_objects[k], g)
    return {
        "object_dist_norm": _xy_dist(trace.final_objects[k], g) / d0,
        "object_dist_m": _xy_dist(trace.final_objects[k], g),
        "pixel_mse": pixel_mse(trace.final_rgb, goal.trace.final_rgb),
        "finger_dist_m": float(np.linalg.norm(trace.final_finger - goal.trace.final_finger)),
        "goal_object_moved_m": _xy_dist(trace.final_objects[k], trace.start_objects[k]),
        "object_dist_curve": [round(_xy_dist(p[k], g) / d0, 5) for p in trace.objects_per_step],
    }


def make_goal(opts: PlanningOptions, episode: int, res: int) -> Goal | str:
    """The episode's goal, or why it has none."""
    prefix: list[np.ndarray] = []
    if opts.start_at == "push-stroke":
        # Find where the stroke begins (the simulator is deterministic: a rerun takes the same path).
        ep = make_episode(opts, episode, res)
        try:
            probe = ScriptedPushController()
            tr = run_controller(ep, probe, MAX_APPROACH_STEPS, opts.warmup)
        finally:
            ep.close()
        if probe.stroke_step is None:
            return f"the scripted approach took more than {MAX_APPROACH_STEPS} steps"
        prefix = tr.actions[: probe.stroke_step]
    ep = make_episode(opts, episode, res)
    try:
        ctrl = ScriptedPushController()
        trace = run_controller(ep, ctrl, opts.steps, opts.warmup, ctrl, len(prefix))
        if len(prefix) != len(trace.prefix_actions) or not all(
            np.array_equal(a, b) for a, b in zip(prefix, trace.prefix_actions)
        ):
            return "the scripted approach did not repeat (simulator not deterministic)"
        moved = np.linalg.norm(trace.final_objects[:, :2] - trace.start_objects[:, :2], axis=1)
        k = int(np.argmax(moved)) if len(moved) else -1
        uv = ep.sim.project(trace.final_objects[k][None])[0][0].tolist() if k >= 0 else [math.nan] * 2
    finally:
        ep.close()
    disp = float(moved[k]) if k >= 0 else 0.0
    if disp < opts.min_push:
        return f"scripted push moved no object by {opts.min_push} m (largest displacement {disp:.4f} m)"
    done = None if ctrl.done_step is None else ctrl.done_step - len(prefix)
    return Goal(episode, trace, k, disp, done, prefix_actions=prefix, goal_uv=uv)


def _stats(vals: Sequence[float]) -> dict[str, float | None]:
    if not vals:
        return {"mean": None, "median": None}
    return {"mean": float(np.mean(vals)), "median": float(np.median(vals))}


def summarize(episodes: list[dict[str, Any]], controllers: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"controllers": {}}
    for c in controllers:
        rows = [e["results"][c] for e in episodes if c in e["results"]]
        norm = [r["object_dist_norm"] for r in rows]
        out["controllers"][c] = {
            "n": len(rows),
            "object_dist_norm": _stats(norm),
            "pixel_mse_mean": _stats([r["pixel_mse"] for r in rows])["mean"],
            "finger_dist_m_mean": _stats([r["finger_dist_m"] for r in rows])["mean"],
            "fraction_progress": (sum(v < 0.9 for v in norm) / len(norm)) if norm else None,
        }
    if "cem" in controllers and "random" in controllers:
        pairs = [(e["results"]["cem"], e["results"]["random"]) for e in episodes]
        wins = sum(a["object_dist_m"] < b["object_dist_m"] - TIE_TOLERANCE_M for a, b in pairs)
        ties = sum(abs(a["object_dist_m"] - b["object_dist_m"]) <= TIE_TOLERANCE_M for a, b in pairs)
        out["cem_vs_random"] = {
            "wins": wins,
            "ties": ties,
            "n": len(pairs),
            "win_fraction": wins / len(pairs) if pairs else None,
        }
    if "scripted" in controllers:
        out["scripted_exact"] = all(e["results"]["scripted"]["exact"] for e in episodes)
    return out


def _sub_seed(*parts: int) -> int:
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(1)[0])


def evaluate(opts: PlanningOptions, progress: Callable[[], None] | None = None) -> dict[str, Any]:
    """Run the evaluation (opts validated); returns the planning.json document (plus frames for the PNG
    under the private key ``_frames``)."""

    t_start = time.perf_counter()

    machine = device_info()
    backend = None
    if "cem" in opts.controllers:
        backend = create_backend(opts.backend, model_dir=opts.model_dir, device=opts.device)
        res = int(backend.image_size[0])
        if backend.image_size[0] != backend.image_size[1]:
            raise PlanningError(f"the simulator renders square frames; model image size {backend.image_size}")
    else:
        res = 64
    episodes: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    frames: list[dict[str, Any]] = []
    step_ms: list[float] = []
    index = opts.first_episode
    while len(episodes) < opts.episodes:
        if len(skipped) >= opts.max_attempts * opts.episodes:
            raise PlanningError(
                f"{len(skipped)} episodes skipped (last: {skipped[-1]['reason']}); "
                "try more --steps or a smaller --min-push"
            )
        goal = make_goal(opts, index, res)
        if isinstance(goal, str):
            skipped.append({"episode": index, "reason": goal})
            index += 1
            continue
        ep_doc, ep_frames, ms = _evaluate_episode(opts, goal, backend, res, progress)
        episodes.append(ep_doc)
        frames.append(ep_frames)
        step_ms.extend(ms)
        index += 1
    wall = time.perf_counter() - t_start
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "settings": {
            **{k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items() if k != "planner"},
            "controllers": list(opts.controllers),
            "planner": {k: opts.planner[k] for k in PLANNER_SETTINGS},
            "dt_s": 0.1,
            "camera_resolution": res,
        },
        "model": {
            "model_dir": str(opts.model_dir) if opts.model_dir else None,
            "model_id": backend.model_id if backend is not None else None,
            "backend": backend.describe() if backend is not None else None,
        },
        "machine": machine,
        "wall_s": wall,
        "timing": {
            "cem_step_ms": {
                "mean": float(np.mean(step_ms)) if step_ms else None,
                "p50": float(np.percentile(step_ms, 50)) if step_ms else None,
                "p95": float(np.percentile(step_ms, 95)) if step_ms else None,
                "count": len(step_ms),
            }
        },
        "episodes": episodes,
        "skipped": skipped,
        "summary": summarize(episodes, opts.controllers),
        # planner_node's default objective (config/planner.yaml); cem's figures under summary[<objective>]
        # for the objective this run used.
        "default_objective": default_objective(),
        "_frames": frames,
    }
    s = doc["summary"]
    s["objective"] = opts.planner["objective"]
    s[s["objective"]] = {k: s[k] for k in ("cem_vs_random",) if k in s}
    if "cem" in s["controllers"]:
        s[s["objective"]]["cem"] = s["controllers"]["cem"]
    return doc


def default_objective() -> str:
    """The objective planner_node uses by default (its ``objective`` parameter)."""
    return str(P.spec_table(PLANNER_PARAMS)["objective"].default)


def _evaluate_episode(
    opts: PlanningOptions,
    goal: Goal,
    backend: Backend | None,
    res: int,
    progress: Callable[[], None] | None,
) -> tuple[dict[str, Any], dict[str, Any], list[float]]:
    results: dict[str, Any] = {}
    frames: dict[str, Any] = {
        "start": goal.trace.start_rgb,
        "goal": goal.trace.final_rgb,
        "goal_uv": goal.goal_uv,
    }
    step_ms: list[float] = []
    shape = ""
    for name in opts.controllers:
        ep = make_episode(opts, goal.episode, res)
        try:
            shape = ep.spec.objects[goal.object_index].shape
            ctrl: Controller
            if name == "cem":
                assert backend is not None
                backend.reset()
                ctrl = CemController(
                    backend,
                    opts.planner,
                    goal.trace.final_rgb,
                    _sub_seed(int(opts.planner["seed"]), opts.seed, goal.episode),
                    ep,
                    opts.delay_compensation,
                    opts.goal_mode,
                    goal.object_index,
                    goal.goal_uv,
                )
            elif name == "random":
                seed = _sub_seed(int(opts.planner["seed"]), opts.seed, goal.episode, 1)
                ctrl = RandomController(opts.planner, seed)
            elif name == "zero":
                ctrl = ZeroController()
            else:
                ctrl = ReplayController(goal.trace.actions)
            prefix = ReplayController(goal.prefix_actions)
            trace = run_controller(
                ep, ctrl, opts.steps, opts.warmup, prefix, len(goal.prefix_actions), on_step=progress
            )
        finally:
            ep.close()
        if not np.array_equal(trace.start_objects, goal.trace.start_objects):
            raise PlanningError(
                f"episode {goal.episode}: the simulator did not restart from the same state "
                "(not deterministic)"
            )
        r = metrics(trace, goal)
        if name == "scripted":
            r["exact"] = bool(
                np.array_equal(trace.final_objects, goal.trace.final_objects)
                and np.array_equal(trace.final_rgb, goal.trace.final_rgb)
            )
        if isinstance(ctrl, CemController):
            r.update(ctrl.diagnostics())
            step_ms.extend(ctrl.step_ms)
        results[name] = r
        frames[name] = trace.final_rgb
    doc = {
        "seed": opts.seed,
        "episode": goal.episode,
        "goal_object": {"index": goal.object_index, "shape": shape},
        "push_displacement_m": goal.displacement_m,
        "push_done_step": goal.done_step,
        "prefix_steps": len(goal.prefix_actions),
        "results": results,
    }
    return doc, frames, step_ms


# ------------------------------------------------------------------------------------------- output
def write_png(doc: dict[str, Any], path: Path) -> None:
    """One row per episode: start, goal, cem final, random final (missing controllers left blank)."""

    plt = _plt()
    rows = doc["_frames"]
    cols = (("start", "start"), ("goal", "goal"), ("cem", "cem final"), ("random", "random final"))
    fig, axes = plt.subplots(len(rows), len(cols), figsize=(2.2 * len(cols), 2.3 * len(rows)), squeeze=False)
    for r, (fr, ep) in enumerate(zip(rows, doc["episodes"])):
        for c, (key, label) in enumerate(cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            img = fr.get(key)
            if img is None:
                ax.set_title(f"{label}: not run", fontsize=8)
                ax.axis("off")
                continue
            ax.imshow(img, interpolation="nearest")
            uv = fr.get("goal_uv")
            if uv is not None and all(math.isfinite(v) for v in uv):
                ax.plot([uv[0]], [uv[1]], marker="x", color="yellow", markersize=7, mew=1.5)
            title = label
            if key == "start":
                title = f"ep {ep['episode']} start"
            elif key == "goal":
                title = f"goal (push {100 * ep['push_displacement_m']:.1f} cm)"
            elif key in ep["results"]:
                title = f"{label} d={ep['results'][key]['object_dist_norm']:.2f}"
            ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def summary_line(doc: dict[str, Any]) -> str:
    s = doc["summary"]
    parts = [
        f"{c} {_fmt(v['object_dist_norm']['mean'])}/{_fmt(v['object_dist_norm']['median'])}"
        for c, v in s["controllers"].items()
    ]
    line = f"{len(doc['episodes'])} episodes, normalized goal-object distance mean/median: " + ", ".join(
        parts
    )
    if "cem_vs_random" in s:
        cv = s["cem_vs_random"]
        line += f"; cem beat random in {cv['wins']}/{cv['n']}"
    if doc["timing"]["cem_step_ms"]["mean"] is not None:
        line += f"; cem {doc['timing']['cem_step_ms']['mean']:.0f} ms/step"
    if "scripted_exact" in s:
        line += f"; scripted replay exact: {s['scripted_exact']}"
    return line


