"""Matching predictions to the frames that actually came, and accumulating metrics.

One implementation for the offline replay (eval/replay.py) and the online evaluator node
(ros/evaluator_node.py): both push camera frames and predictions into a ``HorizonScorer`` in the order
they see them, and get scored predictions back once the targets have arrived.

Target rule: the target of predicted frame k (stamp t + k·dt) is the camera frame whose stamp is nearest
to it, if less than ``tolerance_ns`` (dt/2 by default) away: half-open, so a frame exactly dt/2 off
(the frame before the end of a bag from a camera twice the model's rate) is never a target; otherwise
that step has no target and is left out of every average. A prediction is scored once a camera frame
later than its last target stamp plus the tolerance has been seen (or on ``flush``), so late frames
are still matched.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from embodied_wm.errors import InvalidDataError
from embodied_wm.eval import metrics as M
from embodied_wm.observation import NS_PER_S
from embodied_wm.sensing.image import resize_rgb

#: Metrics reported per horizon step, in the order of summary.json.
FRAME_METRICS: tuple[str, ...] = ("psnr", "psnr_moving", "ssim")

Resizer = Callable[[np.ndarray, tuple[int, int]], np.ndarray]


def default_resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The sensing module's ``resize_rgb`` (what models and baselines use), so targets are resampled
    exactly like the inputs."""
    if image.shape[0] == size[0] and image.shape[1] == size[1]:
        return image
    return np.asarray(resize_rgb(image, size))


def resize_gt_mask(gt: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """C x H x W ground-truth affordance -> C x h x w bool at ``size``: area-averaged when shrinking
    (a model pixel is positive when more than half of the GT pixels it covers are), nearest when growing,
    then binarised at 0.5."""

    c, h, w = gt.shape
    if (h, w) == tuple(size):
        return np.asarray(gt > 0.5)
    interp = cv2.INTER_AREA if size[0] <= h and size[1] <= w else cv2.INTER_NEAREST
    out = np.empty((c, size[0], size[1]), bool)
    for i in range(c):
        out[i] = cv2.resize(gt[i].astype(np.float32), (size[1], size[0]), interpolation=interp) > 0.5
    return out


class StampBuffer:
    """Items keyed by stamp (ns), kept sorted, pruned by age; nearest-stamp lookup with a tolerance."""

    def __init__(self) -> None:
        self.stamps: list[int] = []
        self.items: list[Any] = []

    def add(self, stamp_ns: int, item: Any) -> None:
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.items[i] = item  # a repeated stamp (republished frame): keep the latest
            return
        self.stamps.insert(i, stamp_ns)
        self.items.insert(i, item)

    def nearest(self, stamp_ns: int, tolerance_ns: int) -> tuple[int, Any] | None:
        """The item nearest ``stamp_ns`` if less than ``tolerance_ns`` away (an exact stamp always
        matches, also with tolerance 0)."""
        i = bisect.bisect_left(self.stamps, stamp_ns)
        best: tuple[int, Any] | None = None
        for j in (i - 1, i):
            if 0 <= j < len(self.stamps):
                d = abs(self.stamps[j] - stamp_ns)
                if (d < tolerance_ns or d == 0) and (best is None or d < abs(best[0] - stamp_ns)):
                    best = (self.stamps[j], self.items[j])
        return best

    def prune_before(self, stamp_ns: int) -> None:
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i:
            del self.stamps[:i]
            del self.items[:i]

    @property
    def latest(self) -> int | None:
        return self.stamps[-1] if self.stamps else None

    def __len__(self) -> int:
        return len(self.stamps)


@dataclass
class PendingPrediction:
    """A prediction waiting for its targets. ``frames`` K x H x W x 3 uint8 for ``frame_stamps_ns``."""

    method: str
    stamp_ns: int
    frame_stamps_ns: np.ndarray
    frames: np.ndarray
    condition: str = "clean"
    affordance: np.ndarray | None = None
    affordance_channels: tuple[str, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    #: Free-form fields copied into the result record (e.g. {"bag": name}).
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        return int(self.frames.shape[1]), int(self.frames.shape[2])


@dataclass
class ScoredPrediction:
    """Per-horizon metrics of one prediction (None where a step had no target / no moving pixel)."""

    pending: PendingPrediction
    target_stamps_ns: list[int | None]
    psnr: list[float | None]
    psnr_moving: list[float | None]
    ssim: list[float | None]
    moving_fraction: list[float | None]
    #: channel -> {"auroc", "ap"} for this prediction's affordance vs ground truth.
    affordance: dict[str, dict[str, float | None]]
    #: channel -> (scores, labels) flattened, for pooled accumulation.
    affordance_pixels: dict[str, tuple[np.ndarray, np.ndarray]]
    #: The frames compared (for contact sheets): observation frame and targets at prediction size.
    observation_frame: np.ndarray | None = None
    target_frames: list[np.ndarray | None] = field(default_factory=list)
    gt_affordance: np.ndarray | None = None

    def record(self) -> dict[str, Any]:
        """One results.jsonl line (see docs/eval_schema.md)."""
        p = self.pending
        rec: dict[str, Any] = dict(p.tags)
        rec.update(
            {
                "stamp_ns": int(p.stamp_ns),
                "method": p.method,
                "condition": p.condition,
                "target_stamp_ns": self.target_stamps_ns,
                "psnr": _round_list(self.psnr),
                "psnr_moving": _round_list(self.psnr_moving),
                "ssim": _round_list(self.ssim, 6),
                "moving_fraction": _round_list(self.moving_fraction, 6),
                "latency_ms": {k: round(float(v), 4) for k, v in p.timings_ms.items()},
            }
        )
        if self.affordance:
            rec["affordance"] = {
                ch: {k: _round(v, 6) for k, v in d.items()} for ch, d in self.affordance.items()
            }
        return rec


def _round(v: float | None, nd: int = 4) -> float | None:
    if v is None or not math.isfinite(v):
        return None
    return round(float(v), nd)


def _round_list(vals: Iterable[float | None], nd: int = 4) -> list[float | None]:
    return [_round(v, nd) for v in vals]


class HorizonScorer:
    """Buffers camera frames (and ground-truth affordances) by stamp and scores predictions against them.

    Push frames with ``add_frame`` and predictions with ``add_prediction`` in arrival order; ``poll``
    returns the predictions whose targets are settled. Memory is bounded: frames older than the oldest
    pending prediction (minus the tolerance) are dropped.
    """

    def __init__(
        self,
        tolerance_ns: int | None = None,
        threshold: float = M.MOVING_THRESHOLD,
        resize: Resizer = default_resize,
        keep_frames: bool = False,
        history_ns: int = 2 * NS_PER_S,
        with_ssim: bool = True,
    ) -> None:
        #: False: SSIM is left out (None), the costliest metric; training's validation skips it.
        self.with_ssim = with_ssim
        #: Camera history kept while nothing is pending, so a prediction that arrives after later frames
        #: (the live case: inference takes time) still finds its observation frame and first targets.
        self.history_ns = int(history_ns)
        #: None: dt/2 of each prediction.
        self.tolerance_ns = tolerance_ns
        self.threshold = threshold
        self.resize = resize
        self.keep_frames = keep_frames
        self.frames = StampBuffer()
        self.gt = StampBuffer()
        self.gt_channels: dict[int, tuple[str, ...]] = {}
        self.pending: list[PendingPrediction] = []
        self._resized: dict[tuple[int, tuple[int, int]], np.ndarray] = {}

    # -- inputs ------------------------------------------------------------------------------------
    def add_frame(self, stamp_ns: int, rgb: np.ndarray) -> None:
        """A camera frame (H x W x 3 uint8 RGB, any resolution) as it actually arrived."""
        self.frames.add(int(stamp_ns), rgb)

    def add_ground_truth(self, stamp_ns: int, channels: Iterable[str], maps: np.ndarray) -> None:
        """A ground-truth affordance map (C x H x W, values in [0, 1]) for the horizon after ``stamp_ns``."""
        self.gt.add(int(stamp_ns), (tuple(channels), np.asarray(maps, np.float32)))

    def add_prediction(self, pred: PendingPrediction) -> None:
        self.pending.append(pred)

    # -- scoring -----------------------------------------------------------------------------------
    def _tol(self, p: PendingPrediction) -> int:
        if self.tolerance_ns is not None:
            return self.tolerance_ns
        if len(p.frame_stamps_ns) >= 2:
            dt = int(p.frame_stamps_ns[1] - p.frame_stamps_ns[0])
        else:
            dt = int(p.frame_stamps_ns[0] - p.stamp_ns) if len(p.frame_stamps_ns) else NS_PER_S // 10
        return max(dt // 2, 0)

    def poll(self, now_ns: int | None = None) -> list[ScoredPrediction]:
        """Score every pending prediction whose last target is settled: a frame newer than its last
        target stamp + tolerance has arrived (``now_ns`` overrides the newest frame stamp)."""
        latest = now_ns if now_ns is not None else self.frames.latest
        if latest is None:
            return []
        done: list[ScoredPrediction] = []
        keep: list[PendingPrediction] = []
        for p in self.pending:
            last = int(p.frame_stamps_ns[-1]) if len(p.frame_stamps_ns) else p.stamp_ns
            if latest > last + self._tol(p):
                done.append(self.score(p))
            else:
                keep.append(p)
        self.pending = keep
        self._prune()
        return done

    def flush(self) -> list[ScoredPrediction]:
        """Score everything still pending with whatever frames there are (end of a bag)."""
        done = [self.score(p) for p in self.pending]
        self.pending = []
        return done

    def _prune(self) -> None:
        if self.pending:
            oldest = min(p.stamp_ns - self._tol(p) for p in self.pending)
            if self.frames.latest is not None:
                oldest = min(oldest, self.frames.latest - self.history_ns)
        elif self.frames.latest is not None:
            oldest = self.frames.latest - self.history_ns
        else:
            return
        self.frames.prune_before(oldest)
        self.gt.prune_before(oldest)
        first = self.frames.stamps[0] if len(self.frames) else None
        self._resized = {k: v for k, v in self._resized.items() if first is not None and k[0] >= first}

    def _frame_at(self, stamp_ns: int, tol: int, size: tuple[int, int]) -> tuple[int, np.ndarray] | None:
        hit = self.frames.nearest(stamp_ns, tol)
        if hit is None:
            return None
        key = (hit[0], size)
        img = self._resized.get(key)
        if img is None:
            img = self.resize(hit[1], size)
            self._resized[key] = img
        return hit[0], img

    def score(self, p: PendingPrediction) -> ScoredPrediction:
        tol = self._tol(p)
        size = p.size
        obs = self._frame_at(p.stamp_ns, tol, size)
        obs_img = obs[1] if obs is not None else None
        n = len(p.frame_stamps_ns)
        stamps: list[int | None] = [None] * n
        ps: list[float | None] = [None] * n
        pm: list[float | None] = [None] * n
        ss: list[float | None] = [None] * n
        mf: list[float | None] = [None] * n
        targets: list[np.ndarray | None] = [None] * n
        have: list[int] = []
        for k, t in enumerate(p.frame_stamps_ns):
            hit = self._frame_at(int(t), tol, size)
            if hit is None:
                continue  # no camera frame near t + k·dt: this step is left out
            have.append(k)
            stamps[k] = hit[0]
            targets[k] = hit[1]
        if have:
            # All steps with a target in one vectorised pass (SSIM filtering dominates the cost).
            tgt = np.stack([targets[k] for k in have])  # type: ignore[misc]
            b = M.score_frames(p.frames[have], tgt, obs_img, self.threshold, with_ssim=self.with_ssim)
            for j, k in enumerate(have):
                ps[k], ss[k], pm[k], mf[k] = b.psnr[j], b.ssim[j], b.psnr_moving[j], b.moving_fraction[j]
        if not self.keep_frames:
            targets = [None] * n
        aff, pix, gt_img = self._score_affordance(p, tol)
        return ScoredPrediction(
            pending=p,
            target_stamps_ns=stamps,
            psnr=ps,
            psnr_moving=pm,
            ssim=ss,
            moving_fraction=mf,
            affordance=aff,
            affordance_pixels=pix,
            observation_frame=obs_img if self.keep_frames else None,
            target_frames=targets,
            gt_affordance=gt_img if self.keep_frames else None,
        )

    def _score_affordance(
        self, p: PendingPrediction, tol: int
    ) -> tuple[
        dict[str, dict[str, float | None]], dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray | None
    ]:
        if p.affordance is None or not p.affordance_channels or p.affordance.shape[0] == 0:
            return {}, {}, None
        hit = self.gt.nearest(p.stamp_ns, tol)
        if hit is None:
            return {}, {}, None
        gt_channels, gt_maps = hit[1]
        size = (int(p.affordance.shape[1]), int(p.affordance.shape[2]))
        gt_bin = resize_gt_mask(gt_maps, size)
        out: dict[str, dict[str, float | None]] = {}
        pix: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        gt_view = np.zeros((len(p.affordance_channels), *size), bool)
        for ci, ch in enumerate(p.affordance_channels):
            if ch not in gt_channels:
                continue
            labels = gt_bin[gt_channels.index(ch)]
            gt_view[ci] = labels
            scores = p.affordance[ci]
            out[ch] = {"auroc": M.auroc(scores, labels), "ap": M.average_precision(scores, labels)}
            pix[ch] = (scores.ravel(), labels.ravel())
        return out, pix, gt_view


@dataclass
class MethodStats:
    """Running sums of one (condition, method): per-horizon metric means, latency samples, pooled
    affordance histograms. Mergeable across bags and worker processes."""

    horizon: int
    sums: dict[str, np.ndarray] = field(default_factory=dict)
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    latency: dict[str, list[float]] = field(default_factory=dict)
    affordance: dict[str, M.ScoreHistogram] = field(default_factory=dict)
    predictions: int = 0

    def __post_init__(self) -> None:
        for m in (*FRAME_METRICS, "moving_fraction"):
            self.sums.setdefault(m, np.zeros(self.horizon, np.float64))
            self.counts.setdefault(m, np.zeros(self.horizon, np.int64))

    def add(self, s: ScoredPrediction, latency: bool = True) -> None:
        self.predictions += 1
        for m in (*FRAME_METRICS, "moving_fraction"):
            vals = getattr(s, m)
            for k, v in enumerate(vals[: self.horizon]):
                if v is not None and math.isfinite(v):
                    self.sums[m][k] += v
                    self.counts[m][k] += 1
        if latency:
            for stage, ms in s.pending.timings_ms.items():
                self.latency.setdefault(stage, []).append(float(ms))
        for ch, (scores, labels) in s.affordance_pixels.items():
            self.affordance.setdefault(ch, M.ScoreHistogram()).add(scores, labels)

    def merge(self, other: MethodStats) -> None:
        if other.horizon != self.horizon:
            raise InvalidDataError(f"cannot merge horizons {self.horizon} and {other.horizon}")
        self.predictions += other.predictions
        for m in self.sums:
            self.sums[m] += other.sums[m]
            self.counts[m] += other.counts[m]
        for stage, vals in other.latency.items():
            self.latency.setdefault(stage, []).extend(vals)
        for ch, h in other.affordance.items():
            self.affordance.setdefault(ch, M.ScoreHistogram()).merge(h)

    def means(self, metric: str) -> list[float | None]:
        s, c = self.sums[metric], self.counts[metric]
        return [_round(float(s[k] / c[k]), 6) if c[k] else None for k in range(self.horizon)]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {m: self.means(m) for m in FRAME_METRICS}
        out["moving_fraction"] = self.means("moving_fraction")
        out["n"] = {m: self.counts[m].tolist() for m in FRAME_METRICS}
        out["predictions"] = self.predictions
        if self.affordance:
            out["affordance"] = {
                ch: {
                    "auroc": _round(h.auroc(), 6),
                    "ap": _round(h.average_precision(), 6),
                    "positives": h.n_pos,
                    "pixels": h.n_pos + h.n_neg,
                }
                for ch, h in sorted(self.affordance.items())
            }
        if self.latency:
            out["latency_ms"] = latency_summary(self.latency)
        return out


def latency_summary(latency: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    return {
        stage: {k: _round(v, 4) for k, v in M.percentiles(vals).items()}
        for stage, vals in sorted(latency.items())
    }


class StatsTable:
    """MethodStats per (condition, method)."""

    def __init__(self, horizon: int) -> None:
        self.horizon = horizon
        self.table: dict[tuple[str, str], MethodStats] = {}

    def get(self, condition: str, method: str) -> MethodStats:
        key = (condition, method)
        if key not in self.table:
            self.table[key] = MethodStats(self.horizon)
        return self.table[key]

    def add(self, s: ScoredPrediction) -> None:
        self.get(s.pending.condition, s.pending.method).add(s, latency=s.pending.condition == "clean")

    def merge(self, other: StatsTable) -> None:
        for (c, m), st in other.table.items():
            self.get(c, m).merge(st)

    def methods(self, condition: str = "clean") -> list[str]:
        return [m for (c, m) in self.table if c == condition]

    def conditions(self) -> list[str]:
        seen: list[str] = []
        for c, _ in self.table:
            if c not in seen:
                seen.append(c)
        return seen
