"""Hostile input against the Pipeline in-process: breadth (hypothesis) that a process test cannot afford.

Real rclpy messages (no mocks) go through ``Pipeline.feed``/``process`` with the copy-last baseline. The
properties: nothing raises, every rejected message is counted under "kind:reason" with a known reason,
absurd headers allocate nothing, memory stays bounded under a 10x flood, and predictions resume on the
next good frames whatever came before. The same cases over DDS against the real node process are in
test_hostile_node.py.
"""

from __future__ import annotations

import array
import math
import tracemalloc
from typing import Any

import numpy as np
import pytest
from conftest import requires_ros
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = requires_ros

NS = 1_000_000_000
PERIOD = 33_333_333
#: A realistic wall-clock epoch (2026) for "now".
NOW = 1_780_000_000 * NS
#: Every reason a decoder may give (embodied_wm.sensing.errors) plus the stamp check.
KNOWN_REASONS = {
    "data_length", "bad_step", "unknown_encoding", "non_finite", "empty_image", "bad_audio", "bad_shape",
    "bad_compressed", "bad_stamp", "invalid", "too_large",
}  # fmt: skip
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _pipeline() -> Any:
    from embodied_wm.pipeline import Pipeline
    from embodied_wm.runtime.select import create_backend

    return Pipeline(create_backend("copy_last"))


def _sensors() -> Any:
    from embodied_wm.tools.sensor_publisher import SyntheticSensors

    return SyntheticSensors(width=64, height=48, rate_hz=30.0)


_KINDS = (("audio", "audio"), ("tactile", "tactile"), ("joint_state", "joints"), ("twist", "twist"),
          ("image", "image"))  # fmt: skip


def good_tick(pipe: Any, sensors: Any, stamp: int, streams: tuple[str, ...] | None = None) -> list[Any]:
    """Feed one synchronized tick of good messages; return the predictions it completed."""
    preds: list[Any] = []
    for kind, name in _KINDS:
        if streams is not None and name not in streams:
            continue
        msg = getattr(sensors, name)(stamp)
        if msg is not None:
            preds += pipe.process(kind, msg)
    return preds


def _image(height: int, width: int, step: int, encoding: str, data: bytes, stamp: int = NOW) -> Any:
    from sensor_msgs.msg import Image

    msg = Image()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, NS)
    msg.height, msg.width, msg.step, msg.encoding = height, width, step, encoding
    msg.data = array.array("B", data)
    return msg


def _total_invalid(pipe: Any) -> int:
    return sum(pipe.stats.invalid.values())


def _assert_reasons_known(pipe: Any) -> None:
    for key in pipe.stats.invalid:
        _, _, reason = key.partition(":")
        assert reason in KNOWN_REASONS, key


# ------------------------------------------------------------------------------------------ images
@FAST
@given(
    height=st.one_of(st.integers(0, 64), st.sampled_from([20000, 2**31 - 1, 2**32 - 1])),
    width=st.one_of(st.integers(0, 64), st.sampled_from([20000, 2**31 - 1, 2**32 - 1])),
    step=st.one_of(st.integers(0, 256), st.sampled_from([60000, 2**32 - 1])),
    encoding=st.one_of(
        st.sampled_from(
            ["rgb8", "bgr8", "mono8", "mono16", "rgba8", "yuv422", "bayer_rggb8", "32FC1", "16UC3"]
        ),
        st.text(max_size=12),
    ),
    n_bytes=st.integers(0, 4096),
)
def test_any_image_header_is_decoded_or_counted(height: int, width: int, step: int, encoding: str,
                                                n_bytes: int) -> None:  # fmt: skip
    pipe = _pipeline()
    msg = _image(height, width, step, encoding, b"\x05" * n_bytes)
    tracemalloc.start()
    try:
        pipe.feed("image", msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Whatever the header claims, decoding must not allocate much more than the data it was given.
    assert peak < 16 * n_bytes + 2_000_000, (height, width, step, encoding, n_bytes, peak)
    if _total_invalid(pipe):
        _assert_reasons_known(pipe)
        assert all(k.startswith("image:") for k in pipe.stats.invalid)
    else:
        # Accepted only if the header is self-consistent.
        assert height > 0 and width > 0 and step * height == n_bytes


@pytest.mark.parametrize(
    ("height", "width", "step", "encoding", "n_bytes", "reason"),
    [
        (48, 64, 192, "rgb8", 192 * 48 - 1, "data_length"),  # data length disagrees with step*height
        (48, 64, 191, "rgb8", 191 * 48, "bad_step"),  # step < width*channels
        (48, 64, 192, "rgb9000", 192 * 48, "unknown_encoding"),
        (0, 0, 0, "rgb8", 0, "empty_image"),
        (20000, 20000, 60000, "rgb8", 16, "data_length"),  # absurd header, tiny data
    ],
)
def test_each_bad_image_counted_with_its_reason_then_predictions_resume(
    height: int, width: int, step: int, encoding: str, n_bytes: int, reason: str
) -> None:
    pipe, sensors = _pipeline(), _sensors()
    for k in range(10):
        good_tick(pipe, sensors, NOW + k * PERIOD)
    for j in range(3):
        assert (
            pipe.feed(
                "image", _image(height, width, step, encoding, b"\x07" * n_bytes, NOW + (10 + j) * PERIOD)
            )
            == []
        )
    assert pipe.stats.invalid == {f"image:{reason}": 3}
    preds = []
    for k in range(13, 20):
        preds += good_tick(pipe, sensors, NOW + k * PERIOD)
    assert preds and preds[0].stamp_ns == NOW + 13 * PERIOD, "the next good frame must be predicted from"


# ----------------------------------------------------------------------------------- tactile, audio
@FAST
@given(
    values=st.lists(st.floats(allow_nan=True, allow_infinity=True, width=32), min_size=0, max_size=40),
    rows=st.integers(0, 8),
    cols=st.integers(0, 8),
)
def test_any_tactile_is_decoded_or_counted(values: list[float], rows: int, cols: int) -> None:
    from embodied_wm.msg import TactileArray

    pipe = _pipeline()
    msg = TactileArray()
    msg.header.stamp.sec = NOW // NS
    msg.rows, msg.cols = rows, cols
    msg.values = array.array("f", values)
    pipe.feed("tactile", msg)
    arr = np.asarray(values, np.float32)
    if rows * cols != len(values) or rows == 0 or cols == 0 or (rows, cols) != (5, 5):
        assert sum(pipe.stats.invalid.values()) == 1
        _assert_reasons_known(pipe)
    elif not np.isfinite(arr).all():
        assert pipe.stats.invalid == {"tactile:non_finite": 1}
    else:
        assert not pipe.stats.invalid


@FAST
@given(
    rate=st.one_of(
        st.sampled_from([0, 999, 1000, 8000, 16000, 44100, 48000, 383987, 384001, 999983, 2**32 - 1]),
        st.integers(0, 400000),
    ),
    channels=st.integers(0, 255),
    encoding=st.one_of(st.sampled_from(["S16LE", "F32LE", "s16le", "U8", ""]), st.text(max_size=6)),
    n_bytes=st.integers(0, 4001),
    nan=st.booleans(),
)
def test_any_audio_is_decoded_or_counted(
    rate: int, channels: int, encoding: str, n_bytes: int, nan: bool
) -> None:
    from embodied_wm.msg import AudioFrame

    pipe = _pipeline()
    msg = AudioFrame()
    msg.header.stamp.sec = NOW // NS
    msg.sample_rate, msg.channels, msg.encoding = rate, channels, encoding
    data = bytearray(n_bytes)
    if nan and n_bytes >= 4:
        data[0:4] = np.float32(math.nan).tobytes()
    msg.data = array.array("B", bytes(data))
    pipe.feed("audio", msg)
    _assert_reasons_known(pipe)
    ok_format = 1000 <= rate <= 384_000 and 0 < channels <= 64 and encoding.upper() in ("S16LE", "F32LE")
    width = 2 if encoding.upper() == "S16LE" else 4
    if not ok_format or n_bytes == 0 or n_bytes % (width * channels):
        assert sum(pipe.stats.invalid.values()) == 1, (rate, channels, encoding, n_bytes)
    elif encoding.upper() == "F32LE" and nan:
        assert pipe.stats.invalid == {"audio:non_finite": 1}
    else:
        assert not pipe.stats.invalid


def test_odd_byte_count_and_wrong_rates_counted_good_other_rate_resampled() -> None:
    from embodied_wm.msg import AudioFrame

    pipe, sensors = _pipeline(), _sensors()
    for k in range(10):
        good_tick(pipe, sensors, NOW + k * PERIOD)
    bad = []
    for rate, n_bytes in ((16000, 1067), (0, 1066), (2_000_000, 1066)):
        msg = AudioFrame()
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(NOW + 10 * PERIOD, NS)
        msg.sample_rate, msg.channels, msg.encoding = rate, 1, "S16LE"
        msg.data = array.array("B", bytes(n_bytes))
        bad.append(msg)
        pipe.feed("audio", msg)
    assert pipe.stats.invalid == {"audio:bad_audio": 3}
    # A 44.1 kHz microphone is not an error: it is resampled to the model's rate.
    msg = AudioFrame()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(NOW + 10 * PERIOD + PERIOD // 2, NS)
    msg.sample_rate, msg.channels, msg.encoding = 44100, 1, "S16LE"
    msg.data = array.array("B", bytes(2 * 441))
    pipe.feed("audio", msg)
    assert sum(pipe.stats.invalid.values()) == 3


# ------------------------------------------------------------------------------------------ stamps
OFFSETS = {
    "future_1h": 3600 * NS,
    "future_half_s": NS // 2,
    "backwards_5s": -5 * NS,
    "backwards_half_s": -NS // 2,
    "past_epoch": None,  # 1 s after the epoch
    "duplicate": 0,
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seq=st.lists(
        st.tuples(
            st.sampled_from(sorted(OFFSETS)),
            st.sampled_from(["image", "audio", "tactile", "joints", "twist"]),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_hostile_stamps_never_raise_and_predictions_resume(seq: list[tuple[str, str]]) -> None:
    pipe, sensors = _pipeline(), _sensors()
    k = 0
    for _ in range(10):
        good_tick(pipe, sensors, NOW + k * PERIOD)
        k += 1
    for offset_name, stream in seq:
        off = OFFSETS[offset_name]
        stamp = NS if off is None else NOW + k * PERIOD + off
        good_tick(pipe, sensors, stamp, streams=(stream,))
    # The sensor goes on at the wall clock. Within about a second of good frames (a future stamp of
    # half a second legitimately hides frames until it is passed) predictions must be flowing again.
    preds = []
    for _ in range(60):
        k += 1
        preds += good_tick(pipe, sensors, NOW + k * PERIOD)
    late = [p for p in preds if p.stamp_ns >= NOW + (k - 20) * PERIOD]
    assert late, f"no predictions in the last 20 good frames after {seq}"


@pytest.mark.parametrize("stream", ["tactile", "audio", "joints", "twist"])
def test_one_future_stamp_does_not_blind_other_modalities(stream: str) -> None:
    """One message stamped an hour ahead (a sensor with a bad clock) is dropped and counted
    "future:<modality>" (reported under dropped/ in /diagnostics); it moves no Aligner clock, so no later
    reading is 'too_old' and every modality, its own included, stays in the observations."""
    pipe, sensors = _pipeline(), _sensors()
    k = 0
    for _ in range(20):
        good_tick(pipe, sensors, NOW + k * PERIOD)
        k += 1
    # Its own SyntheticSensors: the good audio's sample clock must not jump an hour with it.
    good_tick(pipe, _sensors(), NOW + 3600 * NS, streams=(stream,))
    obs = []
    for _ in range(60):
        k += 1
        for kind, name in _KINDS:
            msg = getattr(sensors, name)(NOW + k * PERIOD)
            if msg is not None:
                obs += pipe.feed(kind, msg)
    assert [pipe.predict(o) for o in obs]
    modality = {"joints": "proprio", "twist": "action"}.get(stream, stream)
    assert pipe.stats.as_dict()["dropped"] == {f"future:{modality}": 1}
    assert len(obs) >= 59 and all(not o.missing for o in obs), [o.missing for o in obs if o.missing]


# ------------------------------------------------------------------------------------------- flood
def test_flood_10x_keeps_buffers_and_memory_bounded() -> None:
    """Ten times the camera rate in data time (30 Hz stream at 300 Hz) for 4 s of data, plus absurd
    headers: buffers stay at their caps and traced memory stays flat once they are full (the Aligner
    keeps 2 s of history, so after the first 2 s of data)."""
    pipe, sensors = _pipeline(), _sensors()
    fast = PERIOD // 10
    tracemalloc.start()
    try:
        peaks = []
        for k in range(1200):
            good_tick(pipe, sensors, NOW + k * fast)
            pipe.feed("image", _image(20000, 20000, 60000, "rgb8", b"\x00" * 16, NOW + k * fast + 1))
            if k % 300 == 299:
                peaks.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    sizes = pipe.aligner.buffer_sizes()
    assert sizes["pending_images"] <= pipe.aligner.config.max_pending
    assert all(
        v <= pipe.aligner.config.max_items
        for k, v in sizes.items()
        if k not in ("audio_samples", "pending_image_bytes")
    )
    assert pipe.stats.invalid == {"image:data_length": 1200}
    # Memory after 2 s of data vs. after 4 s: no growth beyond noise (1 MB).
    assert peaks[-1] - peaks[1] < 1_000_000, peaks
    assert pipe.stats.predictions > 1000


# ---------------------------------------------------------------- declared sizes (issue 16): images
def _compressed(data: bytes, fmt: str = "jpeg", stamp: int = NOW) -> Any:
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, NS)
    msg.format = fmt
    msg.data = array.array("B", data)
    return msg


def _encoded(ext: str, height: int, width: int, params: list[int] | None = None) -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, np.full((height, width, 3), 90, np.uint8), params or [])
    assert ok
    return buf.tobytes()


def _bmp_declaring(width: int, height: int) -> bytes:
    """A BMP whose info header declares width x height (no pixel data follows)."""
    import struct

    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 14 + len(info), 0, 0, 14 + len(info)) + info


def _webp_vp8x_declaring(width: int, height: int) -> bytes:
    body = b"VP8X" + (10).to_bytes(4, "little") + bytes(4)
    body += (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    return b"RIFF" + (4 + len(body)).to_bytes(4, "little") + b"WEBP" + body


def _bombs() -> dict[str, tuple[bytes, str]]:
    from embodied_wm.tools.hostile import jpeg_bomb, png_bomb

    return {
        "jpeg_32760": (jpeg_bomb(32760, 32760), "jpeg"),
        "png_1bit_20000": (png_bomb(20000, 20000), "png"),
        "bmp_30000": (_bmp_declaring(30000, -30000), "bmp"),
        "webp_16384": (_webp_vp8x_declaring(16384, 16384), "webp"),
    }


@pytest.mark.parametrize("name", ["jpeg_32760", "png_1bit_20000", "bmp_30000", "webp_16384"])
def test_decompression_bombs_refused_before_decoding(name: str) -> None:
    """Before: the 631-byte JPEG cost 6.6 GB and 18.5 s, the 48 KB PNG 2 GB. Now the declared size is read
    from the header and refused: nothing near the declared size is allocated."""
    data, fmt = _bombs()[name]
    pipe, sensors = _pipeline(), _sensors()
    for k in range(10):
        good_tick(pipe, sensors, NOW + k * PERIOD)
    msg = _compressed(data, fmt, NOW + 10 * PERIOD)
    tracemalloc.start()
    try:
        assert pipe.feed("compressed_image", msg) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pipe.stats.invalid == {"compressed_image:too_large": 1}
    assert peak < 2 * len(data) + 1_000_000, peak
    preds = []
    for k in range(11, 20):
        preds += good_tick(pipe, sensors, NOW + k * PERIOD)
    assert preds, "predictions must resume after the bomb"


def test_pixel_limit_is_configurable_for_raw_and_compressed() -> None:
    from embodied_wm.pipeline import Pipeline
    from embodied_wm.runtime.select import create_backend
    from embodied_wm.sensing.image import DEFAULT_MAX_PIXELS

    assert DEFAULT_MAX_PIXELS == 4096 * 4096
    pipe = Pipeline(create_backend("copy_last"), max_image_pixels=64 * 48)
    for ext in (".jpg", ".png", ".bmp", ".webp"):
        pipe.feed("compressed_image", _compressed(_encoded(ext, 48, 64), ext[1:]))  # exactly at the limit
        pipe.feed("compressed_image", _compressed(_encoded(ext, 48, 65), ext[1:], NOW + 1))
    pipe.feed("image", _image(48, 64, 192, "rgb8", bytes(192 * 48)))
    pipe.feed("image", _image(49, 64, 192, "rgb8", bytes(192 * 49), NOW + 1))
    assert pipe.stats.invalid == {"compressed_image:too_large": 4, "image:too_large": 1}
    assert pipe.stats.received["compressed_image"] == 8


def test_compressed_formats_without_a_checkable_size_are_refused() -> None:
    pipe = _pipeline()
    tiff = b"II*\x00" + bytes(64)
    jpeg_no_sof = b"\xff\xd8\xff\xd9"
    jpeg_zero_height = bytearray(_encoded(".jpg", 8, 8))
    sof = jpeg_zero_height.find(b"\xff\xc0")
    jpeg_zero_height[sof + 5 : sof + 7] = b"\x00\x00"
    for data in (tiff, jpeg_no_sof, bytes(jpeg_zero_height), b"P6 4 4 255\n" + bytes(48)):
        pipe.feed("compressed_image", _compressed(data))
    assert pipe.stats.invalid == {"compressed_image:bad_compressed": 4}


# ----------------------------------------------------------------- declared sizes (issue 16): audio
def _audio(rate: int, n_bytes: int, stamp: int = NOW) -> Any:
    from embodied_wm.msg import AudioFrame

    msg = AudioFrame()
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, NS)
    msg.sample_rate, msg.channels, msg.encoding = rate, 1, "S16LE"
    msg.data = array.array("B", bytes(n_bytes))
    return msg


def test_audio_rates_outside_1k_384k_rejected_and_resampling_filter_bounded() -> None:
    """Before: 4 bytes at 999983 Hz built a ~20 M-tap filter (7.5 s, +0.9 GB). Rates outside
    [1 kHz, 384 kHz] are rejected; any rate inside resamples with up, down <= 1000 (filter ~20 k taps)."""
    from embodied_wm.sensing.audio import MAX_RESAMPLE_FACTOR, resample_factors

    pipe = _pipeline()
    for rate in (999983, 384001, 999, 0):
        pipe.feed("audio", _audio(rate, 4))
    assert pipe.stats.invalid == {"audio:bad_audio": 4}
    for rate in (383987, 383999, 1009, 1000, 22050, 44100, 48000, 96000, 192000, 384000):
        up, down = resample_factors(rate, 16000)
        assert max(up, down) <= MAX_RESAMPLE_FACTOR
        assert abs(up / down - 16000 / rate) <= 1e-4 * 16000 / rate, rate
    assert resample_factors(44100, 16000) == (160, 441) and resample_factors(48000, 16000) == (1, 3)
    # A whole second at a prime-ish rate: decoded, with memory proportional to the message.
    msg = _audio(383987, 2 * 383987)
    tracemalloc.start()
    try:
        pipe.feed("audio", msg)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert pipe.stats.invalid == {"audio:bad_audio": 4}
    assert peak < 16 * 2 * 383987 + 4_000_000, peak


def test_audio_longer_than_ten_seconds_per_message_is_too_large() -> None:
    pipe = _pipeline()
    pipe.feed("audio", _audio(16000, 2 * 16000 * 10))  # exactly 10 s: fine
    pipe.feed("audio", _audio(16000, 2 * (16000 * 10 + 1), NOW + 11 * NS))
    assert pipe.stats.invalid == {"audio:too_large": 1}


# ------------------------------------------------------------------------- stamps (issue 16)
def test_stamps_with_nanosec_over_1e9_or_near_int32_end_rejected_outputs_never_wrap() -> None:
    from embodied_wm.ros import conversions as conv
    from embodied_wm.sensing.common import MAX_STAMP_SEC

    pipe, sensors = _pipeline(), _sensors()
    msg = sensors.tactile(NOW)
    msg.header.stamp.nanosec = 1_500_000_000
    pipe.feed("tactile", msg)
    msg = sensors.joints(NOW)
    msg.header.stamp.sec, msg.header.stamp.nanosec = 2**31 - 1, 0
    pipe.feed("joint_state", msg)
    assert pipe.stats.invalid == {"tactile:bad_stamp": 1, "joint_state:bad_stamp": 1}
    # The last accepted second: every output stamp (observation + horizon) still fits builtin Time.
    last = MAX_STAMP_SEC * NS
    preds = []
    for k in range(12):
        preds += good_tick(pipe, sensors, last - (11 - k) * PERIOD)
    preds += [pipe.predict(o) for o in pipe.flush()]
    assert preds
    for p in preds:
        assert conv.prediction_to_frames_msg(p).frames[-1].header.stamp.sec > 0
    with pytest.raises(ValueError, match="int32"):
        conv.ns_to_time(2**31 * NS)


def test_held_frames_bounded_in_bytes() -> None:
    """Before: 64 PNGs of 4000 x 4000 were held by the Aligner (+2.3 GB). Held frames now have a byte
    budget (AlignerConfig.max_pending_bytes): over it the oldest is emitted early, counted forced."""
    from embodied_wm.pipeline import Pipeline
    from embodied_wm.runtime.select import create_backend
    from embodied_wm.sensing.aligner import AlignerConfig

    budget = 100_000  # ~10 frames of 64 x 48 RGB
    pipe = Pipeline(create_backend("copy_last"), aligner=AlignerConfig(max_pending_bytes=budget))
    sensors = _sensors()
    for k in range(30):  # tactile is active, but has nothing at or after the frames yet: they are held
        pipe.feed("tactile", sensors.tactile(NOW - NS + k * PERIOD // 2))
    for k in range(40):
        pipe.feed("image", sensors.image(NOW + k * PERIOD // 100))
        assert pipe.aligner.buffer_sizes()["pending_image_bytes"] <= budget + 64 * 48 * 3
    assert pipe.aligner.counters["forced:image"] > 0
