"""Training windows cut by stamp: frame t and the frames at t + k·dt (k = 1..K) of the model's dt.

Time is data: a window's targets are the camera frames whose stamps are nearest t + k·dt, never "the
next K frames", so a 20 Hz camera under a dt = 0.1 s model gives targets every second frame (and every
frame can start a window), and a model's ``dt_s`` is what it was trained on. A camera slower than dt,
a dt that is not a whole number of camera periods, or stamps too irregular to match is a
``TimingError`` naming the bag, the measured rate and what to pass instead.

Matching is half-open: a frame is the target of t + k·dt when it is less than half a camera period
away (the scorer's rule, with the camera period in place of dt, which is at most dt).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.observation import NS_PER_S
from embodied_wm.sensing.rate import JITTER_TOLERANCE, StampRate, measure_rate, pooled_period_ns, steps_per_dt

#: Largest share of irregular stamp gaps (see sensing.rate) a bag may have and still be cut by stamp.
MAX_IRREGULAR_FRACTION = 0.1
#: A frame is "the previous frame" of the next when their gap is at most this many camera periods
#: (longer: a dropped frame, and the model sees the current frame as its own previous, as at start-up).
PREV_MAX_PERIODS = 1.5


class TimingError(ConfigError):
    """The camera's stamps cannot give windows at the requested dt (reported as one line)."""


@dataclass(frozen=True)
class Windows:
    """Window indices of one episode: ``anchors`` [N] frame indices t, ``future`` [N, K] the frame
    indices at t + k·dt, ``prev`` [T] every frame's previous camera frame (itself when none)."""

    anchors: np.ndarray
    future: np.ndarray
    prev: np.ndarray
    rate: StampRate | None


def _fmt_s(ns: int) -> str:
    return f"{ns / NS_PER_S:.4g} s"


def check_rate(rate: StampRate, dt_ns: int, source: str) -> int:
    """Camera periods per model step (1, 2, ...) or TimingError saying why ``dt_ns`` cannot be cut."""
    ratio = steps_per_dt(rate.period_ns, dt_ns)
    hint = f"pass --dt auto (= {rate.period_s:.4g} s) or a whole multiple of it"
    if ratio < 1.0 - JITTER_TOLERANCE:
        raise TimingError(
            f"{source}: camera runs at {rate.describe()}, slower than the model's dt {_fmt_s(dt_ns)}: "
            f"a model cannot be trained on steps shorter than the camera period; {hint}"
        )
    if abs(ratio - round(ratio)) > JITTER_TOLERANCE:
        raise TimingError(
            f"{source}: dt {_fmt_s(dt_ns)} is {ratio:.2f} camera periods ({rate.describe()}), not a "
            f"whole number; {hint}"
        )
    if rate.irregular_fraction > MAX_IRREGULAR_FRACTION:
        raise TimingError(
            f"{source}: camera stamps are irregular: {rate.irregular_gaps} of {rate.gaps} gaps are more "
            f"than {JITTER_TOLERANCE:.0%} of a period off the median period {rate.period_s * 1e3:.4g} ms "
            f"(limit {MAX_IRREGULAR_FRACTION:.0%}); record with hardware or driver stamps, not arrival times"
        )
    return max(1, round(ratio))


def stamp_windows(stamps_ns: np.ndarray, dt_ns: int, horizon: int, source: str = "episode") -> Windows:
    """Windows of one episode's sorted camera stamps at ``dt_ns`` (see module doc). An episode too
    short for one window gives none; one whose rate does not fit ``dt_ns`` raises TimingError."""
    s = np.asarray(stamps_ns, np.int64)
    n = s.size
    rate = measure_rate(s)
    if rate is None:
        empty = np.zeros(0, np.int64)
        return Windows(empty, np.zeros((0, horizon), np.int64), np.arange(n, dtype=np.int64), None)
    check_rate(rate, dt_ns, source)
    gap = np.diff(s, prepend=s[:1] - 10 * rate.period_ns)
    has_prev = (gap > 0) & (gap <= PREV_MAX_PERIODS * rate.period_ns)
    prev = np.where(has_prev, np.arange(n) - 1, np.arange(n)).astype(np.int64)
    targets = s[:, None] + dt_ns * np.arange(1, horizon + 1, dtype=np.int64)[None]  # [T, K]
    j = np.searchsorted(s, targets)
    lo, hi = np.clip(j - 1, 0, n - 1), np.clip(j, 0, n - 1)
    d_lo, d_hi = np.abs(s[lo] - targets), np.abs(s[hi] - targets)
    idx = np.where(d_hi < d_lo, hi, lo)
    ok = (np.minimum(d_lo, d_hi) * 2 < min(rate.period_ns, dt_ns)).all(axis=1)
    anchors = np.flatnonzero(ok).astype(np.int64)
    return Windows(anchors, idx[anchors].astype(np.int64), prev, rate)


def auto_dt_ns(stamps: Sequence[np.ndarray]) -> int:
    """``--dt auto``: the camera's median period over the given episodes' stamps."""
    rates = [r for r in (measure_rate(s) for s in stamps) if r is not None]
    if not rates:
        raise TimingError("--dt auto: no episode has two camera frames to measure the camera period")
    return pooled_period_ns(rates)


def parse_dt(value: str | float | None) -> float | str | None:
    """``--dt``: None (the config's), "auto", or seconds > 0."""
    if value is None or value == "auto":
        return value
    try:
        dt = float(value)
    except (TypeError, ValueError):
        raise TimingError(f"--dt must be a number of seconds or 'auto', got {value!r}") from None
    if not dt > 0:
        raise TimingError(f"--dt must be > 0 seconds, got {value!r}")
    return dt
