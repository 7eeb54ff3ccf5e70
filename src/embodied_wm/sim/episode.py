"""One simulated episode in closed loop: scene + finger control + contact audio, frame by frame.

Both the offline recorder and the ROS sim node drive an :class:`Episode` the same way::

    frame = ep.observe()          # sensors at time t (audio chunk covers [t - dt, t))
    ep.step(action)               # the action applied during [t, t + dt)

Randomness comes from three independent streams spawned from ``SeedSequence([seed, episode])``
(scene, policy, audio), so e.g. a change to the policy does not reshuffle the scenes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.observation import NS_PER_S
from embodied_wm.sim.audio import SAMPLE_RATE, ContactAudio
from embodied_wm.sim.policies import MAX_SPEED, PolicyState, ScriptedPolicy, clamp_speed
from embodied_wm.sim.scene import PHYSICS_DT, SceneSpec, TabletopSim, sample_scene

#: Bag/sim epoch: episode i's frame 0 is at EPOCH_NS + i * EPISODE_OFFSET_NS (no wall clock anywhere).
EPOCH_NS = 1_700_000_000 * NS_PER_S
EPISODE_OFFSET_NS = 100_000 * NS_PER_S
#: Fingertip contacts are sampled every this many physics steps for ground truth (10 ms).
CONTACT_SAMPLE_EVERY = 5
#: Contacts weaker than this (N) are ignored for ground truth.
CONTACT_MIN_FORCE = 0.01
SETTLE_FRAMES = 4


@dataclass
class FrameData:
    """Everything the simulator knows about one frame at time ``stamp_ns``."""

    index: int
    stamp_ns: int
    rgb: np.ndarray
    seg: np.ndarray | None
    depth: np.ndarray | None
    #: rows x cols normal force per taxel (N), mean over (t - dt, t].
    tactile: np.ndarray
    joint_pos: np.ndarray
    joint_vel: np.ndarray
    joint_effort: np.ndarray
    wrist_force: np.ndarray
    wrist_torque: np.ndarray
    #: Audio of [stamp - dt, stamp), float32.
    audio: np.ndarray
    audio_stamp_ns: int
    object_poses: np.ndarray
    #: Fingertip contact points (world, n x 3) and normal forces at this instant.
    tip_contacts: np.ndarray
    tip_forces: np.ndarray
    #: Fingertip contact points sampled during (t - dt, t] (world, n x 3): ground-truth contact.
    interval_contacts: np.ndarray
    #: Action applied during [t, t + dt): linear xyz, angular xyz (angular is ignored by the finger).
    action: np.ndarray = field(default_factory=lambda: np.zeros(6))


def episode_seed_sequence(seed: int, episode: int) -> np.random.SeedSequence:
    if seed < 0 or episode < 0:
        raise ConfigError(f"seed and episode must be non-negative, got seed={seed} episode={episode}")
    return np.random.SeedSequence([seed, episode])


class Episode:
    def __init__(
        self,
        seed: int,
        episode: int = 0,
        res: int = 64,
        randomize: bool = True,
        dt: float = 0.1,
        max_speed: float = MAX_SPEED,
        ground_truth: bool = True,
        start_ns: int | None = None,
        hidden_physics: bool = False,
    ) -> None:
        steps = dt / PHYSICS_DT
        if dt <= 0 or abs(steps - round(steps)) > 1e-6:
            raise ConfigError(f"dt must be a positive multiple of the physics step {PHYSICS_DT} s, got {dt}")
        self.seed, self.episode = seed, episode
        self.dt = dt
        self.dt_ns = round(dt * NS_PER_S)
        self.steps_per_frame = round(steps)
        self.max_speed = max_speed
        self.ground_truth = ground_truth
        scene_ss, policy_ss, audio_ss = episode_seed_sequence(seed, episode).spawn(3)
        self.spec: SceneSpec = sample_scene(np.random.default_rng(scene_ss), randomize, hidden_physics)
        self.sim = TabletopSim(self.spec, res)
        self.policy = ScriptedPolicy(np.random.default_rng(policy_ss), self.spec.objects, dt, max_speed)
        sps = SAMPLE_RATE * PHYSICS_DT
        if abs(sps - round(sps)) > 1e-9:
            raise ConfigError("audio sample rate must give a whole number of samples per physics step")
        self.audio = ContactAudio(
            np.random.default_rng(audio_ss), self.sim.model.ngeom, self.sim.geom_material, round(sps)
        )
        self.start_ns = EPOCH_NS + episode * EPISODE_OFFSET_NS if start_ns is None else start_ns
        self.frame_index = 0
        self._last_audio = np.zeros(0, np.float32)
        self._interval_contacts = np.zeros((0, 3))
        self._tactile = self.sim.tactile()
        self._wrench = np.zeros(6)
        # Let the objects settle onto the table; the last settle frame's audio is frame 0's chunk.
        for _ in range(SETTLE_FRAMES):
            self._advance(np.zeros(3))

    @property
    def stamp_ns(self) -> int:
        return self.start_ns + self.frame_index * self.dt_ns

    def _tip_contacts(self) -> tuple[np.ndarray, np.ndarray]:
        geom, pos, fn, _ = self.sim.contacts()
        tip = ((geom[:, 0] == self.sim.tip_geom) | (geom[:, 1] == self.sim.tip_geom)) & (
            fn > CONTACT_MIN_FORCE
        )
        return pos[tip], fn[tip]

    def _advance(self, velocity: np.ndarray) -> None:
        sampled = []
        touch = np.zeros_like(self.sim.tactile())
        wrench = np.zeros(6)
        for k in range(self.steps_per_frame):
            self.sim.step(velocity)
            touch += self.sim.tactile()
            wrench += np.concatenate(self.sim.wrist_wrench())
            geom, pos, fn, slip = self.sim.contacts()
            self.audio.add_step(geom, fn, slip)
            if self.ground_truth and (k + 1) % CONTACT_SAMPLE_EVERY == 0:
                tip = ((geom[:, 0] == self.sim.tip_geom) | (geom[:, 1] == self.sim.tip_geom)) & (
                    fn > CONTACT_MIN_FORCE
                )
                if tip.any():
                    sampled.append(pos[tip])
        self._last_audio = self.audio.render_frame()
        # Tactile and wrench are averaged over the frame period, like a sensor with an anti-aliasing
        # filter sampled at the camera rate: MuJoCo's soft contacts chatter at ~70 Hz while sliding
        # (the convex contact model lets sliding bodies drift apart for single steps), and an
        # instantaneous 10 Hz sample would alias that into random zeros.
        self._tactile = (touch / self.steps_per_frame).astype(np.float32)
        self._wrench = wrench / self.steps_per_frame
        self._interval_contacts = np.concatenate(sampled) if sampled else np.zeros((0, 3))

    def policy_state(self) -> PolicyState:
        poses = self.sim.object_poses()
        return PolicyState(self.sim.finger_pos(), poses[:, :3], float(self._tactile.sum()))

    def scripted_action(self) -> np.ndarray:
        """The scripted policy's twist (6-vector) for the current frame."""
        return np.concatenate([self.policy.act(self.policy_state()), np.zeros(3)])

    def observe(self) -> FrameData:
        rgb, seg, depth = self.sim.render(self.ground_truth)
        tip_pos, tip_fn = self._tip_contacts()
        return FrameData(
            index=self.frame_index,
            stamp_ns=self.stamp_ns,
            rgb=rgb,
            seg=seg,
            depth=depth,
            tactile=self._tactile.copy(),
            joint_pos=self.sim.finger_pos(),
            joint_vel=self.sim.finger_vel(),
            joint_effort=self.sim.finger_effort(),
            wrist_force=self._wrench[:3].copy(),
            wrist_torque=self._wrench[3:].copy(),
            audio=self._last_audio,
            audio_stamp_ns=self.stamp_ns - self.dt_ns,
            object_poses=self.sim.object_poses(),
            tip_contacts=tip_pos,
            tip_forces=tip_fn,
            interval_contacts=self._interval_contacts,
        )

    def step(self, action: np.ndarray) -> np.ndarray:
        """Apply twist ``action`` (6-vector; only linear xyz moves the finger) for one frame.
        Returns the action actually applied (speed-clamped, non-finite -> zero)."""
        a = np.zeros(6)
        a[:3] = clamp_speed(np.asarray(action, float).reshape(-1)[:3], self.max_speed)
        self._advance(a[:3])
        self.frame_index += 1
        return a

    def close(self) -> None:
        self.sim.close()
