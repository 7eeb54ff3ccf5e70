"""The one overlay renderer (viz/): known probabilities give known colours at known pixels, ground truth
is drawn as contours, nearest-neighbour upscaling keeps model pixels square, and the contact sheet and
perception_node's preview are built from it."""

from __future__ import annotations

import numpy as np
import pytest

from embodied_wm import viz
from embodied_wm.errors import ConfigError, InvalidDataError
from embodied_wm.viz import overlay as ov


def _blend(base: np.ndarray, p: float, cmap: str = ov.PROBABILITY_CMAP) -> np.ndarray:
    colour = ov.lut(cmap)[round(p * 255)].astype(np.float64)
    a = ov.MAX_ALPHA * p
    return np.clip(np.floor(base.astype(np.float64) * (1 - a) + colour * a + 0.5), 0, 255)


def test_colour_maps_are_the_named_perceptual_maps() -> None:
    turbo, viridis, inferno = ov.lut("turbo"), ov.lut("viridis"), ov.lut("inferno")
    assert turbo.shape == (256, 3) and turbo.dtype == np.uint8
    # Known end points of the published maps: viridis dark purple -> yellow, inferno black -> pale
    # yellow, turbo dark blue-purple -> dark red.
    assert viridis[0].tolist() == pytest.approx([68, 1, 84], abs=2)
    assert viridis[255].tolist() == pytest.approx([253, 231, 37], abs=2)
    assert inferno[0].tolist() == pytest.approx([0, 0, 4], abs=2)
    assert turbo[255][0] > 100 and turbo[255][1] < 20 and turbo[255][2] < 20
    # Lightness of viridis and inferno rises monotonically (what "perceptually ordered" buys).
    for lut in (viridis, inferno):
        luma = lut.astype(np.float64) @ [0.299, 0.587, 0.114]
        assert np.all(np.diff(luma) > -1.0)
    with pytest.raises(ConfigError, match="unknown colour map"):
        ov.lut("jet")


def test_overlay_of_a_known_map_has_the_expected_colour_at_known_pixels() -> None:
    base = np.full((4, 4, 3), 100, np.uint8)
    base[:, :, 2] = 200
    prob = np.zeros((4, 4), np.float32)
    prob[0, 0] = 1.0
    prob[1, 2] = 0.5
    prob[3, 3] = np.nan  # NaN counts as 0: the frame is left as it is
    out = viz.probability_overlay(base, prob, scale=3)
    assert out.shape == (12, 12, 3) and out.dtype == np.uint8
    # p = 0: the camera pixel unchanged; NaN too.
    np.testing.assert_array_equal(out[4, 4], base[1, 1])
    np.testing.assert_array_equal(out[11, 11], base[3, 3])
    # p = 1: the map's top colour at MAX_ALPHA, over the whole 3 x 3 block (nearest neighbour: crisp).
    want = _blend(base[0, 0], 1.0)
    for y in range(3):
        for x in range(3):
            np.testing.assert_allclose(out[y, x], want, atol=1)
    # p = 0.5: the map's middle colour at half of MAX_ALPHA.
    np.testing.assert_allclose(out[1 * 3 + 1, 2 * 3 + 1], _blend(base[1, 2], 0.5), atol=1)
    # Alpha grows with p: the top colour dominates more at p = 1 than at p = 0.5.
    top = ov.lut()[255].astype(float)
    d1 = np.abs(out[1, 1].astype(float) - top).sum()
    d05 = np.abs(_blend(base[1, 2], 0.5) - top).sum()
    assert d1 < d05


def test_map_of_lower_resolution_is_upscaled_by_nearest_neighbour() -> None:
    base = np.zeros((8, 8, 3), np.uint8)
    prob = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)  # 2 x 2 map over an 8 x 8 frame
    out = viz.probability_overlay(base, prob, scale=1)
    full = _blend(base[0, 0], 1.0)
    for y, x in ((0, 0), (3, 3), (4, 4), (7, 7)):
        np.testing.assert_allclose(out[y, x], full, atol=1)
    for y, x in ((0, 4), (3, 7), (4, 0), (7, 3)):
        np.testing.assert_array_equal(out[y, x], [0, 0, 0])


def test_ground_truth_is_a_contour_over_the_prediction() -> None:
    base = np.full((16, 16, 3), 128, np.uint8)
    prob = np.zeros((16, 16), np.float32)
    truth = np.zeros((16, 16), bool)
    truth[4:12, 4:12] = True
    out = viz.probability_overlay(base, prob, scale=2, truth=truth)
    # The region's border (at 2x: pixel 8 and 23) carries the contour colour; inside and far outside
    # stay the camera pixel: an outline, not a fill.
    assert out[8, 16].tolist() == list(ov.CONTOUR_COLOUR)
    assert out[16, 8].tolist() == list(ov.CONTOUR_COLOUR)
    assert out[23, 16].tolist() == list(ov.CONTOUR_COLOUR)
    assert out[16, 16].tolist() == [128, 128, 128]
    assert out[1, 1].tolist() == [128, 128, 128]
    # A dark outline on both sides of the light line keeps it visible on light and dark pixels.
    assert out[7, 16].tolist() == list(ov.CONTOUR_OUTLINE) and out[9, 16].tolist() == list(ov.CONTOUR_OUTLINE)
    # No truth region: nothing drawn.
    np.testing.assert_array_equal(
        viz.probability_overlay(base, prob, 2, truth=np.zeros((16, 16))), ov.upscale(base, 2)
    )


def test_error_map_and_colour_bars() -> None:
    pred = np.zeros((4, 4, 3), np.uint8)
    actual = np.zeros((4, 4, 3), np.uint8)
    actual[0, 0] = 255  # error far above ERROR_VMAX: the top colour
    actual[1, 1] = int(ov.ERROR_VMAX / 2)  # half: the middle colour
    err = viz.error_map(pred, actual, scale=2)
    assert err.shape == (8, 8, 3)
    assert err[0, 0].tolist() == ov.lut(ov.ERROR_CMAP)[255].tolist()
    assert err[3, 3].tolist() == pytest.approx(ov.lut(ov.ERROR_CMAP)[127].tolist(), abs=6)
    assert err[7, 7].tolist() == ov.lut(ov.ERROR_CMAP)[0].tolist()
    bar = viz.probability_bar(128, "p(contact)")
    assert bar.shape[0] == 128 and bar.shape[1] > 20
    # The bar runs from the top colour (p = 1, top) to the bottom colour (p = 0).
    col = bar[:, 10].astype(int)
    top_row = next(i for i in range(128) if (np.abs(col[i] - ov.lut()[255]) <= 8).all())
    bottom_row = max(i for i in range(128) if (np.abs(col[i] - ov.lut()[0]) <= 8).all())
    assert top_row < bottom_row
    assert viz.error_bar(20).shape[0] == 20  # squeezed to the height asked for


def test_comparison_sheet_layout() -> None:
    k, h, w = 3, 16, 16
    obs = np.full((32, 32, 3), 90, np.uint8)  # camera resolution differs from the prediction's
    targets = [np.full((32, 32, 3), 100 + i, np.uint8) for i in range(2)] + [None]
    preds = {"model": np.full((k, h, w, 3), 100, np.uint8), "copy_last": np.full((k, h, w, 3), 90, np.uint8)}
    aff = (["contact"], np.random.default_rng(0).random((1, h, w)).astype(np.float32))
    truth = (["contact"], (aff[1] > 0.5).astype(np.float32))
    sheet = viz.comparison_sheet(
        obs, targets, preds, [0.1, 0.2, 0.3], {"model": "20 dB"}, aff, truth, "t = 1.00 s"
    )
    s = ov.display_scale(h)
    assert s == 8 and sheet.dtype == np.uint8
    # Rows: actual, 2 x (prediction, error) and one affordance row at twice the frame size.
    assert sheet.shape[0] > 5 * h * s + 2 * h * s
    assert sheet.shape[1] >= 118 + (k + 1) * (w * s + 4)
    with pytest.raises(InvalidDataError):
        viz.comparison_sheet(obs, targets, {}, [0.1])


def test_node_preview_uses_the_same_renderer() -> None:
    pytest.importorskip("rclpy")
    from embodied_wm.ros import conversions as conv

    base = np.full((8, 8, 3), 60, np.uint8)
    aff = np.zeros((2, 8, 8), np.float32)
    aff[1, 2:4, 2:4] = 1.0
    img = conv.affordance_preview(base, aff, ("contact", "movable"), "movable", scale=4)
    np.testing.assert_array_equal(img[:, :32], viz.probability_overlay(base, aff[1], 4))
    assert img.shape[0] == 32 and img.shape[1] > 32  # the colour bar beside it
    plain = conv.affordance_preview(base, np.zeros((0, 8, 8), np.float32), (), "contact", scale=2)
    np.testing.assert_array_equal(plain, ov.upscale(base, 2))


def test_overlay_blends_at_frame_resolution_the_same_as_after_upscaling() -> None:
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    prob = rng.random((6, 5)).astype(np.float32)
    small_then_up = viz.probability_overlay(base, prob, scale=3)
    up_then_blend = viz.probability_overlay(ov.upscale(base, 3), ov.upscale(prob, 3), scale=1)
    np.testing.assert_array_equal(small_then_up, up_then_blend)
    # A map finer than the frame keeps its detail: blended at the upscaled size.
    fine = np.zeros((12, 10), np.float32)
    fine[0, 0] = 1.0
    out = viz.probability_overlay(base, fine, scale=2)
    assert out.shape == (12, 10, 3)
    np.testing.assert_allclose(out[0, 0], _blend(base[0, 0], 1.0), atol=1)
    np.testing.assert_array_equal(out[0, 1], base[0, 0])
