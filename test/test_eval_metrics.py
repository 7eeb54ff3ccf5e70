"""Evaluation metrics against hand-computed values (eval/metrics.py) and the prediction/target matching
of eval/scoring.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from embodied_wm.eval import metrics as M
from embodied_wm.eval.scoring import HorizonScorer, MethodStats, PendingPrediction


def test_psnr_of_known_mse() -> None:
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 48  # MSE = 48^2 / 48 = 48
    assert M.mse(a, b) == pytest.approx(48.0)
    assert M.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 48.0))
    # A uniform error of 1 grey level: 48.13 dB.
    assert M.psnr(a, a + 1) == pytest.approx(20 * math.log10(255.0))


def test_psnr_identical_is_capped() -> None:
    a = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert M.psnr(a, a) == M.PSNR_CAP_DB == 100.0
    assert M.psnr_from_mse(1e-30) == 100.0


def test_masked_psnr_and_moving_mask() -> None:
    obs = np.zeros((4, 4, 3), np.uint8)
    target = obs.copy()
    target[1, 2] = (0, 11, 0)  # moves (> 10 in one channel)
    target[3, 3] = (10, 10, 10)  # exactly at the threshold: not moving
    mask = M.moving_mask(obs, target)
    assert mask.sum() == 1 and mask[1, 2]
    pred = target.copy()
    pred[1, 2] = (0, 0, 0)  # error 11 in one of the 3 channels of the one moving pixel
    assert M.psnr_masked(pred, target, mask) == pytest.approx(10 * math.log10(255**2 / (121 / 3)))
    assert M.psnr_masked(pred, target, np.zeros((4, 4), bool)) is None


def test_ssim_identical_is_one_and_drops_with_noise() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert M.ssim(a, a) == pytest.approx(1.0)
    noisy = np.clip(a.astype(int) + rng.normal(0, 40, a.shape), 0, 255).astype(np.uint8)
    assert M.ssim(a, noisy) < 0.9
    # Batched equals one-by-one.
    b = np.stack([a, noisy])
    assert M.ssim_batch(b, b[::-1]) == pytest.approx([M.ssim(a, noisy), M.ssim(noisy, a)])


def test_ssim_matches_direct_formula_on_constant_images() -> None:
    # Constant images: sigma terms vanish, SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1).
    x = np.full((16, 16), 100, np.uint8)
    y = np.full((16, 16), 120, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert M.ssim(x, y) == pytest.approx((2 * 100 * 120 + c1) / (100**2 + 120**2 + c1))


def test_ssim_small_image_uses_smaller_window() -> None:
    a = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    assert M.ssim(a, a) == pytest.approx(1.0)


def test_auroc_perfect_inverted_tied() -> None:
    y = np.array([0, 0, 1, 1])
    assert M.auroc(np.array([0.1, 0.2, 0.8, 0.9]), y) == 1.0
    assert M.auroc(np.array([0.9, 0.8, 0.2, 0.1]), y) == 0.0
    assert M.auroc(np.array([0.5, 0.5, 0.5, 0.5]), y) == 0.5
    # One positive tied with one negative, the other positive above both: (1 + 1 + 0.5 + 1) / 4.
    assert M.auroc(np.array([0.1, 0.5, 0.5, 0.9]), y) == pytest.approx(0.875)
    assert M.auroc(np.array([0.1, 0.2]), np.array([1, 1])) is None


def test_average_precision_hand_example() -> None:
    # Ranked: 0.8 (pos) P=1 R=.5; 0.4 (neg); 0.35 (pos) P=2/3 R=1 -> AP = .5*1 + .5*2/3.
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    y = np.array([0, 0, 1, 1])
    assert M.average_precision(scores, y) == pytest.approx(0.5 + 0.5 * 2 / 3)
    # Ties enter together: all equal -> precision = prevalence.
    assert M.average_precision(np.full(4, 0.3), y) == pytest.approx(0.5)
    assert M.average_precision(scores, np.zeros(4)) is None


def test_score_histogram_equals_exact_on_quantised_scores() -> None:
    rng = np.random.default_rng(2)
    s = np.round(rng.random(3000), 3)
    y = rng.random(3000) < s
    h = M.ScoreHistogram()
    h.add(s[:1000], y[:1000])
    h2 = M.ScoreHistogram()
    h2.add(s[1000:], y[1000:])
    h.merge(h2)
    q = M.quantize_scores(s)
    assert h.auroc() == pytest.approx(M.auroc(q, y), abs=1e-12)
    assert h.average_precision() == pytest.approx(M.average_precision(q, y), abs=1e-12)


def test_percentiles() -> None:
    assert M.percentiles([1.0, 2.0, 3.0]) == {"p50": 2.0, "p99": pytest.approx(2.98)}
    assert M.percentiles([]) == {"p50": None, "p99": None}


def _pending(stamp: int, frames: np.ndarray, dt: int = 100) -> PendingPrediction:
    k = frames.shape[0]
    return PendingPrediction("m", stamp, stamp + dt * np.arange(1, k + 1), frames)


def test_scorer_nearest_within_half_dt_and_waits_for_targets() -> None:
    img = [np.full((8, 8, 3), v, np.uint8) for v in (0, 10, 20, 30)]
    sc = HorizonScorer(keep_frames=True)
    sc.add_frame(0, img[0])
    sc.add_prediction(_pending(0, np.stack([img[1], img[2], img[3]])))
    sc.add_frame(104, img[1])  # 4 ns late: within dt/2
    assert sc.poll() == []  # targets at 200, 300 not settled yet
    sc.add_frame(260, img[2])  # 60 off 200 and 40 off 300: nearest is 300's
    sc.add_frame(451, img[3])  # settles 300 + 50
    (s,) = sc.poll()
    assert s.target_stamps_ns == [104, None, 260]
    assert s.psnr[0] == 100.0 and s.psnr[1] is None
    assert s.psnr[2] == pytest.approx(M.psnr(img[3], img[2]))
    st = MethodStats(3)
    st.add(s)
    summ = st.summary()
    assert summ["psnr"][0] == 100.0 and summ["psnr"][1] is None and summ["n"]["psnr"] == [1, 0, 1]


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Straight float64 SSIM from the numpy reference filter (per channel, mean)."""
    k = M.gaussian_kernel()
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    f = lambda a: M._filter_valid_numpy(a, k)  # noqa: E731
    mx, my = f(x), f(y)
    sxx, syy, sxy = f(x * x) - mx * mx, f(y * y) - my * my, f(x * y) - mx * my
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    return float(np.mean((2 * mx * my + c1) * (2 * sxy + c2) / ((mx * mx + my * my + c1) * (sxx + syy + c2))))


def test_fast_ssim_matches_float64_reference() -> None:
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.normal(0, 25, a.shape), 0, 255).astype(np.uint8)
    assert M.ssim(a, b) == pytest.approx(_ssim_reference(a, b), abs=1e-12)
    planes = rng.random((5, 20, 30))
    k = M.gaussian_kernel()
    fast = M._filter_planes_valid(planes, k)
    ref = np.moveaxis(M._filter_valid_numpy(np.moveaxis(planes, 0, 2), k), 2, 0)
    assert np.allclose(fast, ref, atol=1e-12)


def test_batched_frame_scores_equal_single() -> None:
    rng = np.random.default_rng(4)
    obs = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    preds = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    targets = preds.copy()
    targets[1] = obs  # nothing moves in step 1
    targets[2, :4] = 0
    b = M.score_frames(preds, targets, obs)
    for i in range(3):
        one = M.score_frame(preds[i], targets[i], obs)
        assert b.psnr[i] == pytest.approx(one.psnr) and b.ssim[i] == pytest.approx(one.ssim)
        assert b.moving_fraction[i] == pytest.approx(one.moving_fraction)
        assert (b.psnr_moving[i] is None) == (one.psnr_moving is None)
        if one.psnr_moving is not None:
            assert b.psnr_moving[i] == pytest.approx(one.psnr_moving)
    assert b.psnr_moving[1] is None and b.moving_fraction[1] == 0.0
