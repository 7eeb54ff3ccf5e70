"""A sensor's rate measured from its stamps: median period and how regular the stamps are.

Training cuts its windows by stamp at the model's dt and offline evaluation reports the camera rate next
to the model's dt; both measure the camera here, so "20 Hz" means the same in both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embodied_wm.observation import NS_PER_S

#: A stamp gap counts as regular when it is within this fraction of a period of a whole number of
#: periods (one period: the next frame; two: one dropped frame, which a robot does).
JITTER_TOLERANCE = 0.25


@dataclass(frozen=True)
class StampRate:
    """Rate of one stream of stamps. ``period_ns`` is the median gap between consecutive stamps."""

    period_ns: int
    frames: int
    #: Gaps that are not within JITTER_TOLERANCE of a whole number of periods.
    irregular_gaps: int
    #: Gaps of two or more periods (dropped frames).
    dropped_gaps: int

    @property
    def period_s(self) -> float:
        return self.period_ns / NS_PER_S

    @property
    def hz(self) -> float:
        return NS_PER_S / self.period_ns if self.period_ns > 0 else 0.0

    @property
    def gaps(self) -> int:
        return max(self.frames - 1, 0)

    @property
    def irregular_fraction(self) -> float:
        return self.irregular_gaps / self.gaps if self.gaps else 0.0

    def describe(self) -> str:
        return f"{self.hz:.3g} Hz (median period {self.period_s * 1e3:.4g} ms over {self.frames} frames)"


def measure_rate(stamps_ns: Sequence[int] | np.ndarray) -> StampRate | None:
    """The rate of sorted (or unsorted) stamps; None with fewer than two distinct stamps."""
    s = np.unique(np.asarray(stamps_ns, np.int64))
    if s.size < 2:
        return None
    gaps = np.diff(s)
    period = int(np.median(gaps))
    ratio = gaps / period
    off = np.abs(ratio - np.round(ratio))
    return StampRate(
        period_ns=period,
        frames=int(s.size),
        irregular_gaps=int(((off > JITTER_TOLERANCE) | (ratio < 1 - JITTER_TOLERANCE)).sum()),
        dropped_gaps=int((np.round(ratio) >= 2).sum()),
    )


def pooled_period_ns(rates: Sequence[StampRate]) -> int:
    """One period for several streams (bags): the median of their periods weighted by frames."""
    if not rates:
        raise ValueError("no rates to pool")
    periods = np.repeat([r.period_ns for r in rates], [max(r.gaps, 1) for r in rates])
    return int(np.median(periods))


def steps_per_dt(period_ns: int, dt_ns: int) -> float:
    """How many camera periods one model step is (2.0: a 20 Hz camera under a 10 Hz model)."""
    return dt_ns / period_ns if period_ns > 0 else float("inf")
