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
     ``--goal-mode`` picks ``score_rollout``'s goal comparison (default ``last``, as the nodes use);
     ``region`` takes the latest Observation's image as the reference the goal is compared with.
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

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from embodied_wm.errors import EmbodiedWMError, one_line_argparse_errors
from embodied_wm.runtime.registry import device_problem

if TYPE_CHECKING:
    from embodied_wm.observation import Observation
    from embodied_wm.runtime.base import Backend
    from embodied_wm.sim.episode import Episode, FrameData

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
    "seed",
)
#: Simulator message key -> Pipeline kind, for the inputs perception_node subscribes to.
FEED_KINDS: dict[str, str] = {
    "image": "image",
    "audio": "audio",
    "tactile": "tactile",
    "joint_states": "joint_state",
}
#: The scripted policy's hold after the push lasts longer than any episode.
_HOLD_FOREVER = 1_000_000
#: Where control starts: the scene's initial state, or where the scripted push stroke begins.
START_AT: tuple[str, ...] = ("scene", "push-stroke")
#: The goal push gives up a waypoint it has not reached after this many frames (the data generator's
#: 12 cuts a slow approach short, leaving the finger far from the object where the stroke begins).
GOAL_FRAMES_PER_WAYPOINT = 40
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
        from embodied_wm import paramspec as P
        from embodied_wm.planning.objectives import GOAL_MODES
        from embodied_wm.planning.params import PLANNER_PARAMS
        from embodied_wm.runtime.select import NAMES

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


# ------------------------------------------------------------------------------------- controllers
class Controller(Protocol):
    name: str

    def observe(self, frame: FrameData) -> None:
        """Frame t's sensor data, before the action for [t, t + dt) is chosen."""

    def decide(self, ep: Episode, frame: FrameData, step: int) -> np.ndarray:
        """The twist (6-vector) to apply during [t, t + dt); ``step`` counts control steps from 0."""

    def applied(self, frame: FrameData) -> None:
        """``frame.action`` now holds the twist the simulator applied during [t, t + dt)."""


class _Passive:
    """No sensing: the base of the controllers that do not use the model."""

    name = "passive"

    def observe(self, frame: FrameData) -> None:
        pass

    def applied(self, frame: FrameData) -> None:
        pass


class ZeroController(_Passive):
    name = "zero"

    def decide(self, ep: Episode, frame: FrameData, step: int) -> np.ndarray:
        return np.zeros(6)


class ReplayController(_Passive):
    name = "scripted"

    def __init__(self, actions: Sequence[np.ndarray]) -> None:
        self.actions = [np.asarray(a, float) for a in actions]

    def decide(self, ep: Episode, frame: FrameData, step: int) -> np.ndarray:
        return self.actions[step]


class ScriptedPushController(_Passive):
    """The simulator's approach-push policy for one push, then holding still (makes the goal)."""

    name = "goal"

    def __init__(self) -> None:
        self.calls = 0
        #: Step (counted from the push's first) at which the push stroke (through the object) began,
        #: and at which the whole push (stroke and lift) was done; None until then.
        self.stroke_step: int | None = None
        self.done_step: int | None = None

    def decide(self, ep: Episode, frame: FrameData, step: int) -> np.ndarray:
        from embodied_wm.sim.policies import Waypoint

        state = ep.policy_state()
        if self.calls == 0:
            ep.policy.max_frames_per_waypoint = GOAL_FRAMES_PER_WAYPOINT
            ep.policy.begin("push", state)
            ep.policy.plan.append(Waypoint(state.finger.copy(), 0.0, hold=_HOLD_FOREVER))
        action = ep.scripted_action()
        # The push plan is [above, down beside the object, through it, lift] + the hold appended here.
        if self.stroke_step is None and len(ep.policy.plan) <= 3:
            self.stroke_step = self.calls
        if self.done_step is None and ep.policy.plan and ep.policy.plan[0].hold:
            self.done_step = self.calls
        self.calls += 1
        return action


class RandomController(_Passive):
    """Uniform random twists within the planner's bounds (CemSampler's uniform sampling, horizon 1)."""

    name = "random"

    def __init__(self, planner: Mapping[str, Any], seed: int) -> None:
        from embodied_wm.planning.cem import CemSampler

        self.sampler = CemSampler(
            1,
            planner["active_dims"],
            planner["max_speed"],
            planner["init_std"],
            planner["elite_fraction"],
            seed,
        )

    def decide(self, ep: Episode, frame: FrameData, step: int) -> np.ndarray:
        return self.sampler.full(self.sampler.sample(1, uniform=True))[0, 0].astype(float)


class CemController:
    """planner_node's CEM over the backend's batched rollout, fed through perception_node's Pipeline."""

    name = "cem"

    def __init__(
        self,
        backend: Backend,
        planner: Mapping[str, Any],
        goal_rgb: np.ndarray,
        seed: int,
        ep: Episode,
        delay_compensation: bool,
        goal_mode: str = "last",
    ) -> None:
        from embodied_wm.pipeline import Pipeline
        from embodied_wm.planning.objectives import DEFAULT_SCORE_WEIGHTS
        from embodied_wm.sensing import resize as conv
        from embodied_wm.sim import messages as mk

        self.backend = backend
        self.pipeline = Pipeline(backend)
        self.cfg = dict(planner)
        self.seed = seed
        self.compensate = delay_compensation
        self.goal_mode = goal_mode
        # What planner_node sends (score_channels ["goal", "contact"]) merged as perception_node does.
        self.weights = dict(DEFAULT_SCORE_WEIGHTS)
        self.weights.update(
            {"goal": float(planner["goal_weight"]), "contact": float(planner["contact_weight"])}
        )
        h, w = backend.image_size
        self.goal = conv.resize_area(goal_rgb, h, w)
        self.kit = mk.RclpyKit()
        self.ids = mk.FrameIds()
        self.res = ep.sim.res
        self.intr = ep.sim.intrinsics()
        self.sampler: Any = None
        self.latest: Observation | None = None
        self.applied_by_stamp: dict[int, np.ndarray] = {}
        self.step_ms: list[float] = []
        self.delays: list[int] = []
        self.spreads: dict[str, list[float]] = {}
        self.no_observation_steps = 0
        self._t_step = 0.0
        self._decided = False

    def _feed(self, kind: str, msg: Any) -> None:
        for obs in self.pipeline.feed(kind, msg):
            self.pipeline.predict(obs)  # as perception_node's worker does; rollout() starts from here
            self.latest = obs

    def observe(self, frame: FrameData) -> None:
        from embodied_wm.sim import messages as mk

        t0 = time.perf_counter()
        for key, msg, _ in mk.sensor_messages(self.kit, frame, self.ids, self.res, self.intr):
            kind = FEED_KINDS.get(key)
            if kind is not None:
                self._feed(kind, msg)
        self._t_step = time.perf_counter() - t0

    def decide(self, ep: Episode, frame: FrameData, step: int) -> np.ndarray:
        from embodied_wm.planning.cem import CemSampler
        from embodied_wm.planning.objectives import score_rollout

        t0 = time.perf_counter()
        self._decided = True
        obs = self.latest
        if obs is None:
            self.no_observation_steps += 1
            return np.zeros(6)
        be = self.backend
        delay = round((frame.stamp_ns - obs.stamp_ns) / be.dt_ns)
        self.delays.append(delay)
        known = np.zeros((0, be.action_dim), np.float32)
        if self.compensate and delay > 0:
            stamps = [obs.stamp_ns + i * be.dt_ns for i in range(delay)]
            if all(s in self.applied_by_stamp for s in stamps):
                known = np.stack([self.applied_by_stamp[s][: be.action_dim] for s in stamps]).astype(
                    np.float32
                )
        horizon = be.horizon - len(known)
        if horizon < 1:
            self.no_observation_steps += 1
            return np.zeros(6)
        c = self.cfg
        if self.sampler is None or self.sampler.horizon != horizon:
            self.sampler = CemSampler(
                horizon,
                c["active_dims"],
                c["max_speed"],
                c["init_std"],
                c["elite_fraction"],
                self.seed,
                action_dim=be.action_dim,
            )
        n = int(c["num_candidates"])
        samples = scores = None
        terms: dict[str, np.ndarray] = {}
        reference = None
        if self.goal_mode == "region" and obs.image is not None:
            from embodied_wm.sensing import resize as conv

            reference = conv.resize_area(obs.image, *be.image_size)
        for _ in range(int(c["iterations"])):
            samples = self.sampler.sample(n)
            full = self.sampler.full(samples)
            cand = np.concatenate([np.broadcast_to(known, (n, *known.shape)), full], axis=1)
            rollout = be.rollout(cand)
            scores, terms = score_rollout(rollout, self.weights, self.goal, self.goal_mode, reference)
            self.sampler.refit(samples, scores)
        assert samples is not None and scores is not None
        for name, term in terms.items():
            self.spreads.setdefault(name, []).append(float(term.max() - term.min()))
        plan = self.sampler.full(samples[int(np.argmax(scores))][None])[0]
        self.sampler.shift()
        self._t_step += time.perf_counter() - t0
        first = plan[0][:6]
        action = np.zeros(6)
        action[: first.size] = first
        return action

    def applied(self, frame: FrameData) -> None:
        from embodied_wm.sim import messages as mk

        t0 = time.perf_counter()
        self.applied_by_stamp[frame.stamp_ns] = np.asarray(frame.action, np.float32)
        self._feed("twist", mk.twist(self.kit, frame.stamp_ns, self.ids.world, frame.action))
        if self._decided:  # a control step, not a warm-up frame
            self.step_ms.append((self._t_step + time.perf_counter() - t0) * 1e3)
            self._decided = False

    def diagnostics(self) -> dict[str, Any]:
        return {
            "no_observation_steps": self.no_observation_steps,
            "delay_frames": sorted(set(self.delays)),
            "score_spread_mean": {k: float(np.mean(v)) for k, v in self.spreads.items()},
            "pipeline": {
                "observations": self.pipeline.stats.observations,
                "invalid": dict(self.pipeline.stats.invalid),
                "dropped": dict(self.pipeline.stats.dropped),
            },
        }


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
    from embodied_wm.eval.metrics import mse

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
    from embodied_wm.runtime.select import create_backend

    t_start = time.perf_counter()
    from embodied_wm.runtime.machine import machine_info as device_info

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
        "_frames": frames,
    }
    return doc


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
    from embodied_wm.eval.report import _plt

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


# ---------------------------------------------------------------------------------------------- CLI
def add_episode_arguments(
    p: argparse.ArgumentParser,
    backends: str = "auto, onnxruntime, pytorch, tensorrt, copy_last or linear",
    steps: int = 30,
    steps_help: str = "control steps per episode (10 Hz)",
) -> None:
    """The options eval-planner and eval-ranking share: the model, the scenes and the goal push."""
    p.add_argument(
        "--model", metavar="DIR", default=None, help="model directory (default: the shipped models/tiny)"
    )
    p.add_argument("--backend", default="auto", help=f"{backends} (default auto)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--seed", type=int, default=7000, help="scene seed (training used 1000, validation 5000)")
    p.add_argument("--episodes", type=int, default=10, metavar="N", help="episodes evaluated")
    p.add_argument("--first-episode", type=int, default=0, metavar="I", help="first episode index")
    p.add_argument("--steps", type=int, default=steps, metavar="T", help=steps_help)
    p.add_argument("--warmup", type=int, default=3, metavar="W", help="still frames before control (>= 2)")
    p.add_argument(
        "--min-push", type=float, default=0.01, metavar="M", help="skip goals moving no object by M m"
    )
    p.add_argument("--max-attempts", type=int, default=5, help="give up after this many skips per episode")


def model_dir_from_args(args: argparse.Namespace) -> Path | None:
    """``--model``, else the shipped models/tiny (None for the action-blind baselines, which need none)."""
    if args.model:
        return Path(args.model)
    if args.backend in ("copy_last", "linear"):
        return None
    from embodied_wm.runtime.select import default_model_dir

    model = default_model_dir()
    if model is None:
        raise PlanningError("no --model given and the shipped models/tiny was not found")
    return model


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_episode_arguments(p)
    p.add_argument(
        "--controllers",
        nargs="+",
        default=list(CONTROLLERS),
        metavar="C",
        help=f"subset of {' '.join(CONTROLLERS)}",
    )
    p.add_argument(
        "--start-at",
        default="scene",
        metavar="WHERE",
        help="scene: control starts at the scene's initial state; push-stroke: every controller first "
        "replays the scripted approach (above the object, down beside it) and control starts where the "
        "stroke through the object begins (a goal within a few model horizons)",
    )
    p.add_argument(
        "--no-delay-compensation",
        action="store_true",
        help="sample all K actions from the one-frame-old state, as planner_node does",
    )
    p.add_argument(
        "--goal-mode",
        default="last",
        metavar="MODE",
        help="cem's goal term (planning.objectives.score_rollout): last (default, as the nodes score) or "
        "region (the goal MSE only where the goal differs from the current image, dilated)",
    )
    g = p.add_argument_group("planner settings (default: planner_node's parameters, config/planner.yaml)")
    g.add_argument("--num-candidates", type=int, default=None, metavar="N")
    g.add_argument("--iterations", type=int, default=None, metavar="N")
    g.add_argument("--elite-fraction", type=float, default=None, metavar="F")
    g.add_argument("--max-speed", type=float, default=None, metavar="V", help="m/s per linear component")
    g.add_argument(
        "--active-dims", type=int, nargs="+", default=None, metavar="D", help="0..5 = vx vy vz wx wy wz"
    )
    g.add_argument("--init-std", type=float, default=None, metavar="F")
    g.add_argument("--goal-weight", type=float, default=None, metavar="W")
    g.add_argument("--contact-weight", type=float, default=None, metavar="W")
    g.add_argument("--planner-seed", type=int, default=None, metavar="S")
    p.set_defaults(func=run)
    one_line_argparse_errors(p, PROG)
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval-planner`` on the ``embodied-wm`` command."""
    p = subparsers.add_parser(
        "eval-planner",
        help="closed-loop test of the example planner: push an object toward a goal in the simulator",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    return configure_parser(p)


def options_from_args(args: argparse.Namespace) -> PlanningOptions:
    planner = {
        name: getattr(args, "planner_seed" if name == "seed" else name)
        for name in PLANNER_SETTINGS
        if getattr(args, "planner_seed" if name == "seed" else name) is not None
    }
    model = model_dir_from_args(args)
    opts = PlanningOptions(
        out=Path(args.out),
        model_dir=model,
        backend=args.backend,
        device=args.device,
        seed=args.seed,
        episodes=args.episodes,
        first_episode=args.first_episode,
        steps=args.steps,
        warmup=args.warmup,
        controllers=tuple(dict.fromkeys(args.controllers)),
        planner=planner,
        delay_compensation=not args.no_delay_compensation,
        min_push=args.min_push,
        max_attempts=args.max_attempts,
        start_at=args.start_at,
        goal_mode=args.goal_mode,
    )
    opts.validate()
    return opts


def run(args: argparse.Namespace) -> int:
    try:
        opts = options_from_args(args)
    except PlanningError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    from tqdm import tqdm

    total = opts.episodes * opts.steps * len(opts.controllers)
    try:
        with tqdm(total=total, unit="step", desc="eval-planner", disable=None, file=sys.stderr) as bar:
            doc = evaluate(opts, progress=lambda: bar.update(1))
    except PlanningError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    opts.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = opts.out / "planning.json", opts.out / "planning.png"
    write_png(doc, png_path)
    doc.pop("_frames")
    json_path.write_text(json.dumps(doc, indent=2, allow_nan=False))
    print(f"wrote {json_path} and {png_path}")
    print(summary_line(doc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = configure_parser(argparse.ArgumentParser(prog=PROG, description=__doc__))
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
