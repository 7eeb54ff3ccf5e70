"""Image decoders against known arrays, built as rclpy and as rosbags messages."""

from __future__ import annotations

import tracemalloc

import cv2
import numpy as np
import pytest
from conftest import requires_ros

from embodied_wm.io.messages import compressed_image_msg, image_msg
from embodied_wm.sensing.errors import (
    CompressedImageError,
    DataLengthError,
    EmptyImageError,
    SensingError,
    ShapeError,
    UnknownEncodingError,
)
from embodied_wm.sensing.image import (
    compressed_to_rgb,
    image_to_array,
    image_to_rgb,
    resize_rgb,
    rgb_to_image_fields,
)

FLAVORS = [pytest.param("rclpy", marks=requires_ros), "rosbags"]
RNG = np.random.default_rng(1234)
H, W = 5, 6


def fields(arr: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> dict:
    """Image fields for ``arr`` (H x W or H x W x C) with ``pad`` junk bytes at the end of each row."""
    h, w = arr.shape[:2]
    dt = arr.dtype.newbyteorder(">" if bigendian else "<")
    rows = arr.astype(dt).reshape(h, -1).view(np.uint8)
    junk = np.full((h, pad), 0xAB, np.uint8)
    data = np.concatenate([rows, junk], axis=1)
    return {
        "height": h,
        "width": w,
        "encoding": encoding,
        "step": data.shape[1],
        "data": data.tobytes(),
        "is_bigendian": int(bigendian),
    }


RGB = RNG.integers(0, 256, (H, W, 3), dtype=np.uint8)
ALPHA = RNG.integers(0, 256, (H, W, 1), dtype=np.uint8)
MONO8 = RNG.integers(0, 256, (H, W), dtype=np.uint8)
MONO16 = RNG.integers(0, 65536, (H, W), dtype=np.uint16)
DEPTH = RNG.uniform(0.2, 3.0, (H, W)).astype(np.float32)
DEPTH[1, 2] = np.nan
DEPTH[3, 4] = np.inf


def grey_stretch(values: np.ndarray) -> np.ndarray:
    v = values.astype(np.float64)
    ok = np.isfinite(v)
    lo, hi = v[ok].min(), v[ok].max()
    g = np.clip(np.round((np.where(ok, v, lo) - lo) * 255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    g[~ok] = 0
    return np.repeat(g[:, :, None], 3, axis=2)


# (array in message, encoding, expected image_to_array, expected image_to_rgb)
CASES = {
    "rgb8": (RGB, "rgb8", RGB, RGB),
    "bgr8": (RGB[:, :, ::-1], "bgr8", RGB[:, :, ::-1], RGB),
    "rgba8": (np.concatenate([RGB, ALPHA], 2), "rgba8", np.concatenate([RGB, ALPHA], 2), RGB),
    "bgra8": (np.concatenate([RGB[:, :, ::-1], ALPHA], 2), "bgra8", None, RGB),
    "8UC3": (RGB[:, :, ::-1], "8UC3", RGB[:, :, ::-1], RGB),
    "mono8": (MONO8, "mono8", MONO8, np.repeat(MONO8[:, :, None], 3, 2)),
    "8UC1": (MONO8, "8UC1", MONO8, np.repeat(MONO8[:, :, None], 3, 2)),
    "mono16": (MONO16, "mono16", MONO16, grey_stretch(MONO16)),
    "16UC1": (MONO16, "16UC1", MONO16, grey_stretch(MONO16)),
    "32FC1": (DEPTH, "32FC1", DEPTH, grey_stretch(DEPTH)),
    "rgb16": (RGB.astype(np.uint16) * 257, "rgb16", RGB.astype(np.uint16) * 257, RGB),
}


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("pad", [0, 7])
@pytest.mark.parametrize("name", sorted(CASES))
def test_known_arrays(name: str, pad: int, flavor: str) -> None:
    arr, enc, want_arr, want_rgb = CASES[name]
    msg = image_msg(fields(arr, enc, pad=pad), stamp_ns=5, flavor=flavor)
    got = image_to_array(msg)
    if want_arr is not None:
        assert got.dtype == want_arr.dtype and got.shape == want_arr.shape
        np.testing.assert_array_equal(got, want_arr)  # NaN == NaN here
    rgb = image_to_rgb(msg)
    assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3) and rgb.flags.c_contiguous
    np.testing.assert_array_equal(rgb, want_rgb)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("enc,arr", [("mono16", MONO16), ("16UC1", MONO16), ("32FC1", DEPTH)])
def test_big_endian(enc: str, arr: np.ndarray, flavor: str) -> None:
    be = image_msg(fields(arr, enc, pad=3, bigendian=True), flavor=flavor)
    le = image_msg(fields(arr, enc), flavor=flavor)
    got = image_to_array(be)
    assert got.dtype.isnative
    np.testing.assert_array_equal(got, arr)
    np.testing.assert_array_equal(image_to_rgb(be), image_to_rgb(le))


@requires_ros
@pytest.mark.parametrize("name", sorted(CASES))
def test_rclpy_and_rosbags_agree(name: str) -> None:
    arr, enc, _, _ = CASES[name]
    f = fields(arr, enc, pad=2)
    a, b = image_msg(f, flavor="rclpy"), image_msg(f, flavor="rosbags")
    np.testing.assert_array_equal(image_to_array(a), image_to_array(b))
    np.testing.assert_array_equal(image_to_rgb(a), image_to_rgb(b))


def yuv_reference(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """BT.601 limited-range YUV -> RGB, computed by hand (per pixel, chroma shared by pixel pairs)."""
    y, u, v = (c.astype(np.float64) for c in (y, u, v))
    r = 1.164 * (y - 16) + 1.596 * (v - 128)
    g = 1.164 * (y - 16) - 0.813 * (v - 128) - 0.391 * (u - 128)
    b = 1.164 * (y - 16) + 2.018 * (u - 128)
    return np.clip(np.stack([r, g, b], -1), 0, 255)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("enc", ["yuv422", "uyvy", "yuv422_yuy2", "yuyv"])
def test_yuv422(enc: str, flavor: str) -> None:
    h, w = 4, 6
    y = RNG.integers(16, 236, (h, w), dtype=np.uint8)
    u = RNG.integers(16, 241, (h, w // 2), dtype=np.uint8)
    v = RNG.integers(16, 241, (h, w // 2), dtype=np.uint8)
    packed = np.zeros((h, w, 2), np.uint8)
    # UYVY bytes: U0 Y0 V0 Y1; YUYV bytes: Y0 U0 Y1 V0
    luma, chroma = (1, 0) if enc in ("yuv422", "uyvy") else (0, 1)
    packed[:, :, luma] = y
    packed[:, 0::2, chroma], packed[:, 1::2, chroma] = u, v
    msg = image_msg(fields(packed, enc, pad=4), flavor=flavor)
    assert image_to_array(msg).shape == (h, w, 2)
    want = yuv_reference(y, np.repeat(u, 2, 1), np.repeat(v, 2, 1))
    got = image_to_rgb(msg).astype(np.float64)
    assert np.abs(got - want).max() <= 1.0


def test_bayer_red_scene() -> None:
    # A pure red scene through an RGGB mosaic: only the R sites see light.
    mosaic = np.zeros((8, 8), np.uint8)
    mosaic[0::2, 0::2] = 200
    rgb = image_to_rgb(image_msg(fields(mosaic, "bayer_rggb8"), flavor="rosbags"))
    inner = rgb[2:-2, 2:-2].reshape(-1, 3)
    assert (inner[:, 0] > 150).all() and (inner[:, 1] < 30).all() and (inner[:, 2] < 30).all()


def test_depth_all_nan_is_black() -> None:
    depth = np.full((3, 4), np.nan, np.float32)
    rgb = image_to_rgb(image_msg(fields(depth, "32FC1"), flavor="rosbags"))
    assert (rgb == 0).all()
    np.testing.assert_array_equal(
        np.isnan(image_to_array(image_msg(fields(depth, "32FC1"), flavor="rosbags"))), True
    )


def test_result_does_not_alias_message() -> None:
    f = fields(RGB, "rgb8")
    msg = image_msg(f, flavor="rosbags")
    out = image_to_rgb(msg)
    msg.data[:] = 0
    np.testing.assert_array_equal(out, RGB)


# ---------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("flavor", FLAVORS)
def test_wrong_data_length(flavor: str) -> None:
    f = fields(RGB, "rgb8")
    f["data"] = f["data"][:-1]
    with pytest.raises(DataLengthError) as err:
        image_to_rgb(image_msg(f, flavor=flavor))
    assert err.value.reason == "data_length"
    assert f"{W}x{H} rgb8 step {W * 3} needs {W * H * 3} bytes, got {W * H * 3 - 1}" in str(err.value)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_step_too_small(flavor: str) -> None:
    f = fields(RGB, "rgb8")
    f["step"] = W * 3 - 1
    f["data"] = f["data"][: f["step"] * H]
    with pytest.raises(DataLengthError) as err:
        image_to_array(image_msg(f, flavor=flavor))
    assert err.value.reason == "bad_step"


def test_absurd_header_does_not_allocate() -> None:
    f = {"height": 20000, "width": 20000, "encoding": "rgb8", "step": 60000, "data": b"\x00" * 1000}
    msg = image_msg(f, flavor="rosbags")
    tracemalloc.start()
    try:
        with pytest.raises(DataLengthError, match="needs 1200000000 bytes, got 1000"):
            image_to_rgb(msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


@pytest.mark.parametrize("flavor", FLAVORS)
def test_unknown_encoding(flavor: str) -> None:
    f = fields(RGB, "rgb8")
    f["encoding"] = "hsv8"
    with pytest.raises(UnknownEncodingError) as err:
        image_to_rgb(image_msg(f, flavor=flavor))
    assert err.value.reason == "unknown_encoding" and "hsv8" in str(err.value)


def test_generic_two_channel_has_no_rgb() -> None:
    msg = image_msg(fields(np.zeros((2, 2, 2), np.uint8), "8UC2"), flavor="rosbags")
    assert image_to_array(msg).shape == (2, 2, 2)
    with pytest.raises(UnknownEncodingError):
        image_to_rgb(msg)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("h,w", [(0, 4), (4, 0), (0, 0)])
def test_empty_image(h: int, w: int, flavor: str) -> None:
    f = {"height": h, "width": w, "encoding": "rgb8", "step": w * 3, "data": b""}
    with pytest.raises(EmptyImageError) as err:
        image_to_rgb(image_msg(f, flavor=flavor))
    assert err.value.reason == "empty_image"


def test_odd_width_yuv() -> None:
    f = fields(np.zeros((2, 3, 2), np.uint8), "yuv422")
    with pytest.raises(ShapeError):
        image_to_rgb(image_msg(f, flavor="rosbags"))


def test_errors_are_value_errors() -> None:
    assert issubclass(SensingError, ValueError)
    for cls in (DataLengthError, EmptyImageError, ShapeError, UnknownEncodingError, CompressedImageError):
        assert issubclass(cls, SensingError) and cls("x").reason == cls.default_reason
    assert SensingError("x", "custom").reason == "custom"


# ---------------------------------------------------------------------------------------- compressed
SMOOTH = np.stack(
    [*np.meshgrid(np.linspace(0, 255, 32), np.linspace(0, 255, 24), indexing="xy"), np.full((24, 32), 90.0)],
    -1,
).astype(np.uint8)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize(
    "fmt", ["png", "bgr8; png compressed bgr8", "rgb8; jpeg compressed bgr8", "jpeg", ""]
)
def test_compressed_round_trip(fmt: str, flavor: str) -> None:
    ext = ".png" if "png" in fmt or not fmt else ".jpg"
    ok, buf = cv2.imencode(ext, SMOOTH[:, :, ::-1])
    assert ok
    rgb = compressed_to_rgb(compressed_image_msg(buf.tobytes(), fmt, flavor=flavor))
    assert rgb.shape == SMOOTH.shape and rgb.dtype == np.uint8
    if ext == ".png":
        np.testing.assert_array_equal(rgb, SMOOTH)
    else:
        assert np.abs(rgb.astype(int) - SMOOTH).mean() < 3.0


def test_compressed_grey_and_16bit_png() -> None:
    ok, buf = cv2.imencode(".png", MONO16)
    assert ok
    rgb = compressed_to_rgb(compressed_image_msg(buf.tobytes(), "16UC1; png", flavor="rosbags"))
    np.testing.assert_array_equal(rgb, grey_stretch(MONO16))
    depth_payload = b"\x00" * 12 + buf.tobytes()
    rgb = compressed_to_rgb(
        compressed_image_msg(depth_payload, "16UC1; compressedDepth png", flavor="rosbags")
    )
    np.testing.assert_array_equal(rgb, grey_stretch(MONO16))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_compressed_corrupt(flavor: str) -> None:
    _ok, buf = cv2.imencode(".jpg", SMOOTH)
    corrupt = b"\x00\x11garbage" + buf.tobytes()[40:80]
    with pytest.raises(CompressedImageError) as err:
        compressed_to_rgb(compressed_image_msg(corrupt, "jpeg", flavor=flavor))
    assert err.value.reason == "bad_compressed"
    with pytest.raises(EmptyImageError):
        compressed_to_rgb(compressed_image_msg(b"", "png", flavor=flavor))
    with pytest.raises(UnknownEncodingError):
        compressed_to_rgb(compressed_image_msg(buf.tobytes(), "h264", flavor=flavor))


# ---------------------------------------------------------------------------------------- helpers
def test_resize_rgb() -> None:
    img = RNG.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = resize_rgb(img, (24, 32))
    assert out.shape == (24, 32, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, cv2.resize(img, (32, 24), interpolation=cv2.INTER_AREA))
    # exact 2x2 block means for an integer factor
    np.testing.assert_allclose(out.astype(float), img.reshape(24, 2, 32, 2, 3).mean((1, 3)), atol=1.0)
    assert resize_rgb(img, (48, 64)) is img
    assert resize_rgb(img[:, :, :1], (24, 32)).shape == (24, 32, 1)
    with pytest.raises(ShapeError):
        resize_rgb(img, (0, 10))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_rgb_to_image_fields_round_trip(flavor: str) -> None:
    f = rgb_to_image_fields(RGB)
    assert f["encoding"] == "rgb8" and f["step"] == W * 3 and isinstance(f["data"], bytes)
    np.testing.assert_array_equal(image_to_rgb(image_msg(f, flavor=flavor)), RGB)
    with pytest.raises(ShapeError):
        rgb_to_image_fields(RGB[:, :, 0])
