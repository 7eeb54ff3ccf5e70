"""The controllers the closed-loop planner evaluation (eval/planning.py) compares: cem (the world model
through planning.cem and planning.objectives, as planner_node plans), random, zero and scripted."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from embodied_wm.pipeline import Pipeline
from embodied_wm.planning import pixel_goal as PG
from embodied_wm.planning.cem import CemSampler
from embodied_wm.planning.objectives import DEFAULT_SCORE_WEIGHTS, score_rollout
from embodied_wm.planning.pixel_goal import PixelGoal
from embodied_wm.sensing import resize as conv

if TYPE_CHECKING:
    from embodied_wm.observation import Observation
    from embodied_wm.runtime.base import Backend
    from embodied_wm.sim.episode import Episode, FrameData


#: Simulator message key -> Pipeline kind, for the inputs perception_node subscribes to.
FEED_KINDS: dict[str, str] = {
    "image": "image",
    "audio": "audio",
    "tactile": "tactile",
    "joint_states": "joint_state",
}
#: The scripted policy's hold after the push lasts longer than any episode.
_HOLD_FOREVER = 1_000_000
#: The goal push gives up a waypoint it has not reached after this many frames (the data generator's
#: 12 cuts a slow approach short, leaving the finger far from the object where the stroke begins).
GOAL_FRAMES_PER_WAYPOINT = 40


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
        # lazy: MuJoCo is optional (the simulator extra)
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
        goal_object: int | None = None,
        goal_uv: Sequence[float] | None = None,
    ) -> None:
        # lazy: MuJoCo is optional (the simulator extra)
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
        # The pixel objective (planner_node's default): the goal object's pixel and its goal pixel, both
        # from the simulator (a perfect tracker re-designates the object every control step).
        wants_pixels = planner.get("objective", "image") == "pixel"
        self.pixel_target = (
            (int(goal_object), [float(v) for v in goal_uv])
            if wants_pixels and goal_object is not None and goal_uv is not None
            else None
        )
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
        # lazy: MuJoCo is optional (the simulator extra)
        from embodied_wm.sim import messages as mk

        t0 = time.perf_counter()
        for key, msg, _ in mk.sensor_messages(self.kit, frame, self.ids, self.res, self.intr):
            kind = FEED_KINDS.get(key)
            if kind is not None:
                self._feed(kind, msg)
        self._t_step = time.perf_counter() - t0

    def decide(self, ep: Episode, frame: FrameData, step: int) -> np.ndarray:
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
            reference = conv.resize_area(obs.image, *be.image_size)
        pixel_goal = None
        if self.pixel_target is not None:
            pixel_goal = sim_pixel_goal(ep, self.pixel_target[0], self.pixel_target[1], be.image_size)
        for _ in range(int(c["iterations"])):
            samples = self.sampler.sample(n)
            full = self.sampler.full(samples)
            cand = np.concatenate([np.broadcast_to(known, (n, *known.shape)), full], axis=1)
            if pixel_goal is None:
                rollout = be.rollout(cand)
                scores, terms = score_rollout(rollout, self.weights, self.goal, self.goal_mode, reference)
            else:
                scores, terms = self._pixel_scores(cand, pixel_goal)
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

    def _pixel_scores(self, cand: np.ndarray, goal: PixelGoal) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """What perception_node computes for a pixel-goal request: the scores-only path, plus the contact
        term (full decode) only when its weight is nonzero."""
        pixels = self.backend.score_pixels(cand, *goal.query())
        terms = PG.pixel_terms(pixels, goal)
        weights = {
            PG.PIXEL_CHANNEL: float(self.cfg["pixel_weight"]),
            PG.APPROACH_CHANNEL: float(self.cfg["approach_weight"]),
        }
        scores = PG.combine(terms, weights)
        if float(self.cfg["contact_weight"]) != 0.0:
            extra, contact = score_rollout(self.backend.rollout(cand), self.weights, None)
            scores = scores + extra
            terms.update(contact)
        return scores.astype(np.float32), terms

    def applied(self, frame: FrameData) -> None:
        # lazy: MuJoCo is optional (the simulator extra)
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


def sim_pixels(ep: Episode, object_index: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(object centre, fingertip centre) projected into the camera, as (u, v) pixels of a ``size``
    (H, W) model image."""
    pts = np.stack([ep.sim.object_poses()[object_index, :3], ep.sim.data.xpos[ep.sim.tip_body]])
    uv = ep.sim.project(pts)[0]
    res = ep.sim.res
    scale = np.array([size[1] / res, size[0] / res])
    out = (uv + 0.5) * scale - 0.5
    return out[0], out[1]


def sim_pixel_goal(
    ep: Episode, object_index: int, goal_uv: Sequence[float], size: tuple[int, int]
) -> PixelGoal:
    """The pixel goal a planner would be given now: the goal object's centre pixel, its goal position's
    pixel (``goal_uv``, camera pixels), and the fingertip's pixel when it is in view; in model pixels,
    clipped into the image (an object or goal at the very edge)."""
    obj, tip = sim_pixels(ep, object_index, size)
    res = ep.sim.res
    g = (np.asarray(goal_uv, float) + 0.5) * np.array([size[1] / res, size[0] / res]) - 0.5
    hi = np.array([size[1] - 1.0, size[0] - 1.0])
    inside = bool(np.isfinite(tip).all() and (tip >= 0).all() and (tip <= hi).all())
    return PixelGoal(
        np.clip(obj, 0, hi)[None].astype(np.float32),
        np.clip(g, 0, hi)[None].astype(np.float32),
        (int(size[0]), int(size[1])),
        tip.astype(np.float32) if inside else None,
    )
