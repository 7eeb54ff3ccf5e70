"""Scripted finger policies that make informative episodes: pushes, taps, sweeps and pauses.

A policy sees privileged simulator state (finger position, object positions and sizes, tactile sum)
and returns a fingertip velocity command (m/s, world frame) once per camera frame. It is a sequence
of segments chosen at random (seeded); each segment is a list of waypoints followed by a
proportional controller with a speed limit, so motions are smooth and stay in the workspace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.sim.scene import JOINT_RANGE, TIP_RADIUS, ObjectSpec

#: Default maximum fingertip speed (m/s).
MAX_SPEED = 0.3
SEGMENT_KINDS = ("push", "tap", "sweep", "idle")
SEGMENT_WEIGHTS = (0.45, 0.25, 0.2, 0.1)
#: Waypoint tolerance (m) and the most frames spent on one waypoint (blocked motions move on).
TOLERANCE = 0.004
MAX_FRAMES_PER_WAYPOINT = 12
SAFE_Z = 0.09


def clamp_speed(v: np.ndarray, max_speed: float) -> np.ndarray:
    """Scale ``v`` down (direction kept) so its norm is at most ``max_speed``; non-finite -> zero."""
    v = np.asarray(v, dtype=float)
    if not np.all(np.isfinite(v)):
        return np.zeros_like(v)
    n = float(np.linalg.norm(v))
    return v * (max_speed / n) if n > max_speed else v


@dataclass
class Waypoint:
    pos: np.ndarray
    speed: float
    #: Stop early when the tactile sum exceeds this (N); taps use it to bounce off the surface.
    stop_on_contact: float = math.inf
    #: Frames to hold (zero velocity) instead of moving; used by idle.
    hold: int = 0


@dataclass
class PolicyState:
    finger: np.ndarray
    objects: np.ndarray  # n x 3 positions
    tactile_sum: float


@dataclass
class ScriptedPolicy:
    rng: np.random.Generator
    objects: tuple[ObjectSpec, ...]
    dt: float
    max_speed: float = MAX_SPEED
    plan: list[Waypoint] = field(default_factory=list)
    kind: str = "idle"
    #: Frames after which a waypoint not yet reached is given up (a blocked motion moves on).
    max_frames_per_waypoint: int = MAX_FRAMES_PER_WAYPOINT
    _frames_on_wp: int = 0

    def _new_segment(self, s: PolicyState) -> None:
        self.begin(SEGMENT_KINDS[int(self.rng.choice(len(SEGMENT_KINDS), p=SEGMENT_WEIGHTS))], s)

    def begin(self, kind: str, s: PolicyState) -> None:
        """Start a segment of ``kind`` (one of SEGMENT_KINDS) now, replacing the current plan; its speed
        and target are drawn from the policy's rng as for a random segment. Push and tap need an object
        and become a sweep without one. (The planner evaluation uses this for its scripted goal push.)"""
        if kind not in SEGMENT_KINDS:
            raise ConfigError(f"unknown segment kind {kind!r}; expected one of {SEGMENT_KINDS}")
        if kind in ("push", "tap") and len(s.objects) == 0:
            kind = "sweep"
        self.kind = kind
        speed = float(self.rng.uniform(0.08, self.max_speed))
        if kind == "push":
            self.plan = self._push(s, speed)
        elif kind == "tap":
            self.plan = self._tap(s, speed)
        elif kind == "sweep":
            self.plan = self._sweep(s, speed)
        else:
            self.plan = [Waypoint(s.finger.copy(), 0.0, hold=int(self.rng.integers(3, 10)))]
        self._frames_on_wp = 0

    def _push(self, s: PolicyState, speed: float) -> list[Waypoint]:
        k = int(self.rng.integers(len(s.objects)))
        obj = self.objects[k]
        p = s.objects[k]
        # Push roughly towards the table centre (plus noise) so objects stay in the workspace.
        ang = math.atan2(-p[1], -p[0]) + float(self.rng.normal(0.0, 0.6))
        d = np.array([math.cos(ang), math.sin(ang), 0.0])
        standoff = obj.footprint_radius + TIP_RADIUS + 0.025
        z = float(np.clip(p[2], TIP_RADIUS + 0.003, 0.04))
        start = p - d * standoff
        end = p + d * float(self.rng.uniform(0.03, 0.09))
        return [
            Waypoint(np.array([start[0], start[1], SAFE_Z]), speed),
            Waypoint(np.array([start[0], start[1], z]), speed),
            Waypoint(np.array([end[0], end[1], z]), min(speed, 0.15)),
            Waypoint(np.array([end[0], end[1], SAFE_Z]), speed),
        ]

    def _tap(self, s: PolicyState, speed: float) -> list[Waypoint]:
        if self.rng.random() < 0.7:
            k = int(self.rng.integers(len(s.objects)))
            xy = s.objects[k][:2] + self.rng.normal(0.0, 0.004, 2)
            top = s.objects[k][2] + self.objects[k].half_height
        else:
            xy = self.rng.uniform(-0.12, 0.12, 2)
            top = 0.0
        above = top + TIP_RADIUS + float(self.rng.uniform(0.02, 0.05))
        plan = [Waypoint(np.array([xy[0], xy[1], max(above, 0.05)]), speed)]
        for _ in range(int(self.rng.integers(1, 4))):
            plan.append(
                Waypoint(np.array([xy[0], xy[1], top + TIP_RADIUS - 0.01]), speed, stop_on_contact=0.3)
            )
            # Sometimes rest on the surface a moment: contact that is felt but (being still) not heard.
            hold = int(self.rng.choice(3, p=(0.6, 0.3, 0.1)))
            if hold:
                plan.append(Waypoint(np.zeros(3), 0.0, hold=hold))
            plan.append(Waypoint(np.array([xy[0], xy[1], above]), speed))
        return plan

    def _sweep(self, s: PolicyState, speed: float) -> list[Waypoint]:
        a = self.rng.uniform(-0.13, 0.13, 2)
        ang = float(self.rng.uniform(-math.pi, math.pi))
        length = float(self.rng.uniform(0.06, 0.16))
        b = np.clip(a + length * np.array([math.cos(ang), math.sin(ang)]), -0.16, 0.16)
        # Slightly below contact height so the tip presses on the table and slides (friction noise).
        z = TIP_RADIUS - 0.003
        return [
            Waypoint(np.array([a[0], a[1], 0.05]), speed),
            Waypoint(np.array([a[0], a[1], z]), min(speed, 0.1)),
            Waypoint(np.array([b[0], b[1], z]), min(speed, 0.15)),
            Waypoint(np.array([b[0], b[1], 0.06]), speed),
        ]

    def act(self, s: PolicyState) -> np.ndarray:
        """Velocity command (m/s) for the next frame."""
        if not self.plan:
            self._new_segment(s)
        wp = self.plan[0]
        self._frames_on_wp += 1
        if wp.hold:
            wp.hold -= 1
            if wp.hold <= 0:
                self._advance()
            return np.zeros(3)
        err = wp.pos - s.finger
        done = (
            np.linalg.norm(err) < TOLERANCE
            or s.tactile_sum > wp.stop_on_contact
            or self._frames_on_wp > self.max_frames_per_waypoint
        )
        if done:
            self._advance()
            if not self.plan:
                self._new_segment(s)
            wp = self.plan[0]
            err = wp.pos - s.finger
        # Reach a waypoint in about two frames, limited by the segment's speed.
        v = clamp_speed(err / (2.0 * self.dt), min(wp.speed, self.max_speed)) if not wp.hold else np.zeros(3)
        lo = np.array([JOINT_RANGE[n][0] for n in ("finger_x", "finger_y", "finger_z")])
        hi = np.array([JOINT_RANGE[n][1] for n in ("finger_x", "finger_y", "finger_z")])
        # Do not command into the joint limits (the command would be clamped anyway).
        v = np.where((s.finger <= lo + 1e-3) & (v < 0) | (s.finger >= hi - 1e-3) & (v > 0), 0.0, v)
        return v

    def _advance(self) -> None:
        self.plan.pop(0)
        self._frames_on_wp = 0
