"""Contact audio synthesis at 16 kHz from the simulator's contact forces and slip speeds.

Physics gives, per 2 ms step, each touching geom pair's normal force and slip speed. Two sources:
- impacts: a rise in a pair's normal force (contact onset, a tap) is an impulse that rings both
  geoms' materials — a bank of damped resonant modes per material (wood thuds, metal rings);
- sliding: friction noise whose amplitude is proportional to slip speed x normal force (the power
  dissipated by friction), coloured per material and also feeding the material's modes.
Resting contacts (constant force, no slip) are silent, so the sound carries exactly the contact
events a camera misses. A faint seeded microphone hiss keeps silent frames realistic. All randomness
comes from the Generator passed in, so a seed gives the same samples.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

from embodied_wm.errors import ConfigError
from embodied_wm.sim.scene import MATERIAL_ORDER, MATERIALS

SAMPLE_RATE = 16000
#: Excitation gains: impulse amplitude per N of force rise, and noise per (m/s * N) of slip power.
IMPACT_GAIN = 0.01
FRICTION_GAIN = 0.06
#: Force rises below this (N per step) are solver jitter of resting contacts, not impacts.
IMPACT_THRESHOLD_N = 0.02
HISS_RMS = 1e-4
#: Output scaling to S16LE.
FULL_SCALE = 32767.0


class ContactAudio:
    """Stateful synthesizer: feed one frame's worth of per-step contacts, get that frame's samples.

    Resonator states carry over between frames so rings decay across frame boundaries.
    """

    def __init__(
        self, rng: np.random.Generator, ngeom: int, geom_material: np.ndarray, samples_per_step: int
    ) -> None:
        if samples_per_step < 1:
            raise ConfigError(f"samples_per_step must be >= 1, got {samples_per_step}")
        self.rng = rng
        self.ngeom = ngeom
        self.geom_material = np.asarray(geom_material, np.int64)
        self.sps = samples_per_step
        self.n_mat = len(MATERIAL_ORDER)
        self.prev_force = np.zeros(ngeom * ngeom)
        # Per-mode second-order resonator coefficients, grouped by material.
        self.modes: list[tuple[int, np.ndarray, np.ndarray]] = []
        for mi, name in enumerate(MATERIAL_ORDER):
            for freq, decay, amp in MATERIALS[name].modes:
                r = math.exp(-decay / SAMPLE_RATE)
                theta = 2.0 * math.pi * freq / SAMPLE_RATE
                b = np.array([amp * math.sin(theta)])
                a = np.array([1.0, -2.0 * r * math.cos(theta), r * r])
                self.modes.append((mi, b, a))
        self.mode_state = [np.zeros(2) for _ in self.modes]
        # One-pole low-pass per material colours its friction noise.
        self.noise_pole = np.array(
            [math.exp(-2.0 * math.pi * MATERIALS[n].noise_cutoff_hz / SAMPLE_RATE) for n in MATERIAL_ORDER]
        )
        self.noise_gain = np.array([MATERIALS[n].roughness for n in MATERIAL_ORDER])
        self.noise_state = [np.zeros(1) for _ in MATERIAL_ORDER]
        # 1 ms raised-cosine pulse shape for impacts (a pure one-sample click aliases).
        width = max(2, SAMPLE_RATE // 1000)
        self.pulse = 0.5 - 0.5 * np.cos(2.0 * math.pi * np.arange(width) / width)
        self.pulse /= self.pulse.sum()
        self._impacts: list[np.ndarray] = []
        self._frictions: list[np.ndarray] = []

    def add_step(self, geom: np.ndarray, fn: np.ndarray, slip: np.ndarray) -> None:
        """Record one physics step's contacts (geom pairs n x 2, normal force n, slip speed n)."""
        key = geom[:, 0].astype(np.int64) * self.ngeom + geom[:, 1] if len(fn) else np.zeros(0, np.int64)
        force = np.zeros(self.ngeom * self.ngeom)
        power = np.zeros(self.ngeom * self.ngeom)
        if len(fn):
            np.add.at(force, key, fn)
            np.add.at(power, key, fn * slip)
        rise = force - self.prev_force
        self.prev_force = force
        rise[rise < IMPACT_THRESHOLD_N] = 0.0
        impact = np.zeros(self.n_mat)
        friction = np.zeros(self.n_mat)
        for arr, out in ((rise, impact), (power, friction)):
            nz = np.nonzero(arr)[0]
            if len(nz):
                # Each contact excites the materials of both geoms in the pair.
                g1, g2 = nz // self.ngeom, nz % self.ngeom
                out += np.bincount(self.geom_material[g1], arr[nz], self.n_mat)
                out += np.bincount(self.geom_material[g2], arr[nz], self.n_mat)
        self._impacts.append(impact)
        self._frictions.append(friction)

    def reset_pairs(self) -> None:
        """Forget contact history (after teleporting the scene), so no spurious impact is heard."""
        self.prev_force[:] = 0.0

    def render_frame(self) -> np.ndarray:
        """Samples (float32 in about [-1, 1]) for the steps added since the last call."""
        n_steps = len(self._impacts)
        n = n_steps * self.sps
        if n_steps == 0:
            return np.zeros(0, np.float32)
        impacts = np.stack(self._impacts, axis=1) * IMPACT_GAIN  # n_mat x steps
        friction = np.stack(self._frictions, axis=1) * FRICTION_GAIN
        self._impacts.clear()
        self._frictions.clear()
        # Always draw the same amount of noise per frame so the stream of random numbers (and thus
        # the output) does not depend on which materials happened to be excited.
        white = self.rng.standard_normal((self.n_mat + 1, n))
        excitation = np.zeros((self.n_mat, n))
        excitation[:, :: self.sps] = impacts
        excitation = (
            np.apply_along_axis(lambda x: np.convolve(x, self.pulse)[:n], 1, excitation)
            if impacts.any()
            else excitation
        )
        noise_env = np.repeat(friction, self.sps, axis=1)
        direct = np.zeros(n)
        for mi in range(self.n_mat):
            if not noise_env[mi].any() and not self.noise_state[mi].any():
                continue
            p = self.noise_pole[mi]
            colored, self.noise_state[mi] = lfilter(
                [1.0 - p], [1.0, -p], white[mi] * noise_env[mi], zi=self.noise_state[mi]
            )
            colored *= self.noise_gain[mi]
            direct += colored
            excitation[mi] += 0.3 * colored
        out = direct
        for k, (mi, b, a) in enumerate(self.modes):
            if not excitation[mi].any() and np.abs(self.mode_state[k]).max() < 1e-7:
                continue
            y, self.mode_state[k] = lfilter(b, a, excitation[mi], zi=self.mode_state[k])
            out = out + y
        out = out + HISS_RMS * white[self.n_mat]
        return out.astype(np.float32)


def to_s16le(samples: np.ndarray) -> bytes:
    """float samples in [-1, 1] -> S16LE bytes (clipped)."""
    return np.clip(np.round(samples * FULL_SCALE), -32768, 32767).astype("<i2").tobytes()


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
