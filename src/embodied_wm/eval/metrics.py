"""Prediction-quality metrics, in numpy only (no sklearn), shared by the offline and online evaluators.

Conventions (documented for users in docs/eval_schema.md):

* Frames are H x W x 3 uint8 (or any numeric dtype on the 0..255 scale); the peak value is 255.
* PSNR is capped at ``PSNR_CAP_DB`` (100 dB): identical frames have infinite PSNR, and an uncapped
  ``inf`` would make every average over frames ``inf`` too. 100 dB is an MSE of about 6.5e-6 grey
  levels², far below one quantisation step, so the cap never hides a real difference.
* Moving pixels: a pixel is "moving" when |target - observation| > ``MOVING_THRESHOLD`` (10 grey levels,
  i.e. 10/255) in any channel. ``psnr_masked`` is the PSNR over the channels of those pixels only; with no
  moving pixel it returns None and callers leave that step out of the average.
* SSIM: Wang et al. (2004) with an 11-tap Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, L = 255,
  population (not sample) statistics, computed per colour channel on the "valid" region (no padding)
  and averaged over channels -- the same definition as scikit-image's
  ``structural_similarity(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)`` up to the
  border handling. Images smaller than 11 px use the largest odd window that fits. Moments are computed
  in float64: in float32, E[x²] - E[x]² cancels badly on bright flat regions (errors ~1e-4 in SSIM).
* AUROC is the Mann-Whitney rank statistic with average ranks for ties (a tie between a positive and a
  negative counts one half). AP is the step-wise area under the precision/recall curve with one point per
  distinct score (tied scores enter together), as in most ML toolkits. Both return None when the labels
  are all one class (undefined).
* Pooled affordance metrics over many frames use ``ScoreHistogram``: scores quantised to 1/65535 and
  counted per bin. On the quantised scores its AUROC/AP equal the exact rank statistics above, and its
  memory stays fixed however many pixels are pooled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from embodied_wm.errors import InvalidDataError

PEAK = 255.0
PSNR_CAP_DB = 100.0
#: Grey levels (0..255 scale) a pixel must change by, in any channel, to count as moving.
MOVING_THRESHOLD = 10.0
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03
#: Bins of ScoreHistogram (scores in [0, 1] quantised to 16 bits).
HIST_BINS = 65536


def _as_float(img: np.ndarray) -> np.ndarray:
    return np.asarray(img, dtype=np.float64)


def _check_same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise InvalidDataError(f"images differ in shape: {a.shape} vs {b.shape}")


def mse(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean squared error on the 0..255 scale over all pixels and channels."""
    _check_same_shape(pred, target)
    d = _as_float(pred) - _as_float(target)
    return float(np.mean(d * d))


def psnr_from_mse(value: float, peak: float = PEAK, cap: float = PSNR_CAP_DB) -> float:
    """10·log10(peak² / MSE), capped at ``cap`` dB (MSE 0 gives exactly ``cap``)."""
    if value <= 0.0:
        return cap
    return float(min(cap, 10.0 * math.log10(peak * peak / value)))


def psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """PSNR in dB of ``pred`` against ``target`` (capped, see module doc)."""
    return psnr_from_mse(mse(pred, target))


def moving_mask(
    observation: np.ndarray, target: np.ndarray, threshold: float = MOVING_THRESHOLD
) -> np.ndarray:
    """H x W bool: pixels whose value differs by more than ``threshold`` in any channel between the
    observation the prediction started from and the target frame."""
    _check_same_shape(observation, target)
    diff = np.abs(_as_float(target) - _as_float(observation))
    if diff.ndim == 3:
        return np.asarray(np.any(diff > threshold, axis=-1))
    return np.asarray(diff > threshold)


def psnr_masked(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float | None:
    """PSNR over the pixels where ``mask`` (H x W) is true, all channels; None if the mask is empty."""
    _check_same_shape(pred, target)
    if mask.shape != pred.shape[:2]:
        raise InvalidDataError(f"mask shape {mask.shape} does not match image {pred.shape[:2]}")
    if not mask.any():
        return None
    d = _as_float(pred)[mask] - _as_float(target)[mask]
    return psnr_from_mse(float(np.mean(d * d)))


def gaussian_kernel(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """Normalised 1-D Gaussian of ``size`` taps (odd)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    k = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return np.asarray(k / k.sum())


def _filter_valid_numpy(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of H x W x C with the 1-D kernel ``k`` along rows then columns
    (the reference implementation; ``_filter_valid`` uses OpenCV for speed and must agree with it)."""
    n = k.shape[0]
    # sliding_window_view adds the window as the last axis; contracting it with k is the filter.
    rows = np.lib.stride_tricks.sliding_window_view(img, n, axis=0) @ k  # (H-n+1) x W x C
    return np.asarray(np.lib.stride_tricks.sliding_window_view(rows, n, axis=1) @ k)


def _filter_planes_valid(planes: np.ndarray, k: np.ndarray) -> np.ndarray:
    """P x H x W planes -> P x (H-n+1) x (W-n+1), each filtered like ``_filter_valid_numpy``.

    Speed path: the planes are stacked into one tall image and filtered by OpenCV in one call, in the
    planes' dtype (about 3x faster than the numpy reference at 64 px). Every output pixel kept lies at
    least n//2 rows from its plane's edges, so its window never reaches a neighbouring plane or the
    image border: the result equals the reference to rounding (a test checks it)."""
    p, h, w = planes.shape
    n = k.shape[0]
    r = (n - 1) // 2
    try:
        # lazy: optional: absent here is handled below
        import cv2
    except ImportError:  # OpenCV is a dependency, but the metrics must not hinge on it
        return np.moveaxis(_filter_valid_numpy(np.moveaxis(planes, 0, 2), k), 2, 0)
    tall = np.ascontiguousarray(planes).reshape(p * h, w)
    kk = k.astype(tall.dtype)
    out = cv2.sepFilter2D(tall, -1, kk, kk, borderType=cv2.BORDER_CONSTANT).reshape(p, h, w)
    return np.asarray(out[:, r : h - r, r : w - r])


def ssim(pred: np.ndarray, target: np.ndarray, peak: float = PEAK) -> float:
    """Mean SSIM (Gaussian window, per channel, averaged over channels); 1.0 for identical images."""
    _check_same_shape(pred, target)
    return float(ssim_batch(np.asarray(pred)[None], np.asarray(target)[None], peak)[0])


def ssim_batch(preds: np.ndarray, targets: np.ndarray, peak: float = PEAK) -> np.ndarray:
    """SSIM of N image pairs (N x H x W [x C]) at once -> N values. All channels of all pairs go through
    one filtering call per local moment (several times faster than N calls at 64 px)."""
    _check_same_shape(preds, targets)
    x = np.asarray(preds)
    y = np.asarray(targets)
    if x.ndim == 3:
        x = x[..., None]
        y = y[..., None]
    n, h, w, c = x.shape
    if n == 0:
        return np.zeros(0, np.float64)
    size = min(SSIM_WINDOW, h, w)
    size -= 1 - size % 2  # keep it odd so the window has a centre
    k = gaussian_kernel(size, SSIM_SIGMA)
    # N x H x W x C -> (N*C) x H x W: every channel of every pair is an independent plane.
    x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float64).reshape(n * c, h, w)
    y = np.ascontiguousarray(y.transpose(0, 3, 1, 2), dtype=np.float64).reshape(n * c, h, w)
    c1 = (SSIM_K1 * peak) ** 2
    c2 = (SSIM_K2 * peak) ** 2
    mu_x = _filter_planes_valid(x, k)
    mu_y = _filter_planes_valid(y, k)
    # Population (biased) local moments: E[xy] - E[x]E[y].
    sxx = _filter_planes_valid(x * x, k) - mu_x * mu_x
    syy = _filter_planes_valid(y * y, k) - mu_y * mu_y
    sxy = _filter_planes_valid(x * y, k) - mu_x * mu_y
    num = (2.0 * mu_x * mu_y + c1) * (2.0 * sxy + c2)
    den = (mu_x * mu_x + mu_y * mu_y + c1) * (sxx + syy + c2)
    return np.asarray((num / den).reshape(n, c, -1).mean(axis=(1, 2)))


def _binary(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels).astype(bool).ravel()


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve via the rank statistic: (sum of positive ranks - P(P+1)/2) / (P·N),
    ranks averaged over ties. None when there are no positives or no negatives."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = _binary(labels)
    if s.shape != y.shape:
        raise InvalidDataError(f"scores and labels differ in size: {s.size} vs {y.size}")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return None
    # Average ranks (1-based) of tied groups: group g spans ranks start+1 .. start+count.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    avg_rank = ends - (counts - 1) / 2.0
    rank_sum_pos = float(avg_rank[inverse][y].sum())
    return (rank_sum_pos - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """AP = Σ_n (R_n - R_{n-1}) · P_n over distinct score thresholds, highest first; None without
    positives. Tied scores are one threshold, so their order does not matter."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = _binary(labels)
    if s.shape != y.shape:
        raise InvalidDataError(f"scores and labels differ in size: {s.size} vs {y.size}")
    n_pos = int(y.sum())
    if n_pos == 0 or y.size == 0:
        return None
    uniq, inverse = np.unique(s, return_inverse=True)
    pos = np.bincount(inverse, weights=y.astype(np.float64), minlength=uniq.size)
    tot = np.bincount(inverse, minlength=uniq.size).astype(np.float64)
    return _ap_from_counts(pos[::-1], tot[::-1], n_pos)


def _ap_from_counts(pos_desc: np.ndarray, tot_desc: np.ndarray, n_pos: float) -> float:
    """AP from per-threshold positive/total counts ordered from the highest score down."""
    keep = tot_desc > 0
    tp = np.cumsum(pos_desc[keep])
    fp_tp = np.cumsum(tot_desc[keep])
    precision = tp / fp_tp
    recall = tp / n_pos
    d_recall = np.diff(np.concatenate(([0.0], recall)))
    return float(np.sum(d_recall * precision))


@dataclass
class ScoreHistogram:
    """Pools (score, label) pairs from many frames into fixed-size per-bin counts.

    Scores in [0, 1] (clipped) are quantised to ``HIST_BINS`` levels; AUROC and AP computed from the
    counts equal ``auroc``/``average_precision`` on the quantised scores. Histograms from several
    workers merge by addition.
    """

    pos: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))
    neg: np.ndarray = field(default_factory=lambda: np.zeros(HIST_BINS, np.int64))

    def add(self, scores: np.ndarray, labels: np.ndarray) -> None:
        s = np.asarray(scores, dtype=np.float64).ravel()
        y = _binary(labels)
        if s.shape != y.shape:
            raise InvalidDataError(f"scores and labels differ in size: {s.size} vs {y.size}")
        q = quantize_scores(s)
        self.pos += np.bincount(q[y], minlength=HIST_BINS)
        self.neg += np.bincount(q[~y], minlength=HIST_BINS)

    def merge(self, other: ScoreHistogram) -> None:
        self.pos += other.pos
        self.neg += other.neg

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    def auroc(self) -> float | None:
        n_pos, n_neg = self.n_pos, self.n_neg
        if n_pos == 0 or n_neg == 0:
            return None
        # P(score+ > score-) + 0.5·P(score+ == score-), bin by bin: negatives strictly below each bin.
        neg_below = np.cumsum(self.neg) - self.neg
        wins = float(np.sum(self.pos.astype(np.float64) * (neg_below + 0.5 * self.neg)))
        return wins / (float(n_pos) * float(n_neg))

    def average_precision(self) -> float | None:
        n_pos = self.n_pos
        if n_pos == 0:
            return None
        pos = self.pos[::-1].astype(np.float64)
        tot = pos + self.neg[::-1].astype(np.float64)
        return _ap_from_counts(pos, tot, float(n_pos))

    def to_dict(self) -> dict[str, list[int]]:
        """Sparse JSON-able form (bins with counts only), for passing between processes."""
        nz = np.flatnonzero(self.pos + self.neg)
        return {"bins": nz.tolist(), "pos": self.pos[nz].tolist(), "neg": self.neg[nz].tolist()}


def quantize_scores(scores: np.ndarray) -> np.ndarray:
    """Scores in [0, 1] -> int bin index in 0..HIST_BINS-1 (NaN counts as 0)."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0)
    return np.asarray(np.rint(np.clip(s, 0.0, 1.0) * (HIST_BINS - 1)).astype(np.int64))


def percentiles(values: Sequence[float], qs: Sequence[float] = (50.0, 99.0)) -> dict[str, float | None]:
    """{'p50': .., 'p99': ..} with linear interpolation; None for an empty sequence."""
    arr = np.asarray(values, dtype=np.float64)
    out: dict[str, float | None] = {}
    for q in qs:
        key = f"p{q:g}"
        out[key] = float(np.percentile(arr, q)) if arr.size else None
    return out


@dataclass
class FrameScores:
    """Metrics of one predicted frame against its target."""

    psnr: float
    ssim: float
    psnr_moving: float | None
    moving_fraction: float


def score_frame(
    pred: np.ndarray, target: np.ndarray, observation: np.ndarray, threshold: float = MOVING_THRESHOLD
) -> FrameScores:
    """PSNR, SSIM and moving-pixel PSNR of ``pred`` vs ``target``; ``observation`` (the frame the
    prediction started from, same size) defines the moving pixels."""
    mask = moving_mask(observation, target, threshold)
    return FrameScores(
        psnr=psnr(pred, target),
        ssim=ssim(pred, target),
        psnr_moving=psnr_masked(pred, target, mask),
        moving_fraction=float(mask.mean()),
    )


@dataclass
class BatchScores:
    """Per-pair metrics of ``score_frames`` (psnr_moving / moving_fraction None without an observation)."""

    psnr: list[float]
    ssim: list[float | None]
    psnr_moving: list[float | None]
    moving_fraction: list[float | None]


def score_frames(
    preds: np.ndarray,
    targets: np.ndarray,
    observation: np.ndarray | None,
    threshold: float = MOVING_THRESHOLD,
    with_ssim: bool = True,
) -> BatchScores:
    """``score_frame`` for N predicted frames at once (N x H x W x 3), vectorised over N; the moving
    mask of pair i compares targets[i] with the one ``observation`` frame. The one per-horizon scorer:
    the replay evaluation, the evaluator node, training validation and the demo all score with it.
    ``with_ssim=False`` leaves SSIM out (None), the costly part, where a caller reports only PSNR."""
    _check_same_shape(preds, targets)
    n = preds.shape[0]
    p = _as_float(preds)
    t = _as_float(targets)
    sq = (p - t) ** 2
    per_pixel = sq.reshape(n, -1, sq.shape[-1]) if sq.ndim == 4 else sq.reshape(n, -1, 1)
    mses = per_pixel.mean(axis=(1, 2))
    out = BatchScores(
        psnr=[psnr_from_mse(float(m)) for m in mses],
        ssim=[float(v) for v in ssim_batch(preds, targets)] if with_ssim else [None] * n,
        psnr_moving=[None] * n,
        moving_fraction=[None] * n,
    )
    if observation is not None:
        if observation.shape != preds.shape[1:]:
            raise InvalidDataError(
                f"observation shape {observation.shape} does not match frames {preds.shape[1:]}"
            )
        diff = np.abs(t - _as_float(observation)[None])
        masks = (diff > threshold).any(axis=-1) if diff.ndim == 4 else diff > threshold  # N x H x W
        counts = masks.reshape(n, -1).sum(axis=1)
        channels = per_pixel.shape[2]
        sums = (per_pixel.sum(axis=2) * masks.reshape(n, -1)).sum(axis=1)
        for i in range(n):
            out.moving_fraction[i] = float(counts[i] / masks[i].size)
            if counts[i]:
                out.psnr_moving[i] = psnr_from_mse(float(sums[i] / (counts[i] * channels)))
    return out
