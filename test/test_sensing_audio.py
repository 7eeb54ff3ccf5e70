"""Audio decoding: encodings, channel mixing, resampling, validation; rclpy and rosbags messages."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from conftest import requires_ros

from embodied_wm.io.messages import audio_frame_msg, header
from embodied_wm.sensing.audio import AudioChunk, decode_audio, encode_audio_frame_fields
from embodied_wm.sensing.errors import AudioFormatError, NonFiniteError, UnknownEncodingError

FLAVORS = [pytest.param("rclpy", marks=requires_ros), "rosbags"]
RATE = 16000
T0 = 12 * 10**9 + 345


def tone(n: int, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / rate)).astype(np.float32)


@pytest.mark.parametrize("flavor", FLAVORS)
@pytest.mark.parametrize("encoding,atol", [("S16LE", 1.0 / 32000), ("F32LE", 0.0)])
def test_mono_round_trip(encoding: str, atol: float, flavor: str) -> None:
    x = tone(800, RATE)
    chunk = decode_audio(
        audio_frame_msg(encode_audio_frame_fields(x, RATE, encoding), T0, flavor=flavor), RATE
    )
    assert isinstance(chunk, AudioChunk)
    assert chunk.stamp_ns == T0 and chunk.sample_rate == RATE
    assert chunk.samples.dtype == np.float32 and chunk.samples.shape == (800,)
    np.testing.assert_allclose(chunk.samples, x, atol=atol)
    assert chunk.duration_ns == pytest.approx(0.05e9)


def test_s16_known_values() -> None:
    raw = np.array([0, 16384, -32768, 32767], "<i2").tobytes()
    fields = {"sample_rate": RATE, "channels": 1, "encoding": "S16LE", "data": raw}
    chunk = decode_audio(audio_frame_msg(fields, flavor="rosbags"), RATE)
    np.testing.assert_array_equal(chunk.samples, np.array([0, 0.5, -1.0, 32767 / 32768], np.float32))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_stereo_is_averaged(flavor: str) -> None:
    left, right = tone(400, RATE, 300), tone(400, RATE, 700, 0.25)
    fields = encode_audio_frame_fields(np.stack([left, right], 1), RATE, "F32LE")
    assert fields["channels"] == 2
    chunk = decode_audio(audio_frame_msg(fields, flavor=flavor), RATE)
    np.testing.assert_allclose(chunk.samples, (left + right) / 2, atol=1e-7)


@pytest.mark.parametrize("src_rate", [8000, 44100, 48000])
def test_resampling_keeps_tone_and_duration(src_rate: int) -> None:
    n = src_rate // 10  # 0.1 s
    fields = encode_audio_frame_fields(tone(n, src_rate, 500.0), src_rate, "F32LE")
    chunk = decode_audio(audio_frame_msg(fields, flavor="rosbags"), RATE)
    assert chunk.sample_rate == RATE and chunk.samples.size == 1600
    want = tone(1600, RATE, 500.0)
    # away from the chunk edges the resampled tone matches the tone sampled at the target rate
    np.testing.assert_allclose(chunk.samples[100:-100], want[100:-100], atol=0.02)
    assert np.abs(chunk.samples).max() <= 1.0


@requires_ros
def test_rclpy_and_rosbags_agree() -> None:
    fields = encode_audio_frame_fields(np.stack([tone(441, 44100), tone(441, 44100, 90)], 1), 44100)
    a = decode_audio(audio_frame_msg(fields, T0, flavor="rclpy"), RATE)
    b = decode_audio(audio_frame_msg(fields, T0, flavor="rosbags"), RATE)
    assert a.stamp_ns == b.stamp_ns
    np.testing.assert_array_equal(a.samples, b.samples)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_validation(flavor: str) -> None:
    good = encode_audio_frame_fields(tone(10, RATE), RATE)
    with pytest.raises(AudioFormatError, match="multiple of 2, got 19") as err:
        decode_audio(audio_frame_msg(dict(good, data=good["data"][:-1]), flavor=flavor), RATE)
    assert err.value.reason == "bad_audio"
    with pytest.raises(AudioFormatError, match="multiple of 4"):
        decode_audio(audio_frame_msg(dict(good, channels=2, data=good["data"][:-2]), flavor=flavor), RATE)
    with pytest.raises(UnknownEncodingError):
        decode_audio(audio_frame_msg(dict(good, encoding="MP3"), flavor=flavor), RATE)
    with pytest.raises(AudioFormatError, match="sample_rate"):
        decode_audio(audio_frame_msg(dict(good, sample_rate=0), flavor=flavor), RATE)
    with pytest.raises(AudioFormatError, match="channels"):
        decode_audio(audio_frame_msg(dict(good, channels=0), flavor=flavor), RATE)
    with pytest.raises(AudioFormatError, match="no samples"):
        decode_audio(audio_frame_msg(dict(good, data=b""), flavor=flavor), RATE)
    bad = encode_audio_frame_fields(np.array([0.1, np.nan, 0.2], np.float32), RATE, "F32LE")
    with pytest.raises(NonFiniteError) as nerr:
        decode_audio(audio_frame_msg(bad, flavor=flavor), RATE)
    assert nerr.value.reason == "non_finite"


def test_f32_is_clipped() -> None:
    fields = encode_audio_frame_fields(np.array([2.0, -3.0, 0.5], np.float32), RATE, "F32LE")
    chunk = decode_audio(audio_frame_msg(fields, flavor="rosbags"), RATE)
    np.testing.assert_array_equal(chunk.samples, [1.0, -1.0, 0.5])


def test_audio_stamped_duck_type() -> None:
    # audio_common 4.x layout (AudioStamped.audio.{info,audio_data}); paInt16 = 8
    data = np.array([0, 16384, -16384, 32767], np.int16)
    msg = SimpleNamespace(
        header=header(T0, "mic", "rosbags"),
        audio=SimpleNamespace(
            info=SimpleNamespace(format=8, channels=2, rate=RATE, chunk=2),
            audio_data=SimpleNamespace(int16_data=data),
        ),
    )
    chunk = decode_audio(msg, RATE)
    assert chunk.stamp_ns == T0
    np.testing.assert_allclose(chunk.samples, [0.25, 0.25 * 32767 / 32768 - 0.25 + 0.25], atol=1e-4)
    msg.audio.info.format = 99
    with pytest.raises(UnknownEncodingError):
        decode_audio(msg, RATE)


def test_encode_rejects_unknown() -> None:
    with pytest.raises(UnknownEncodingError):
        encode_audio_frame_fields(np.zeros(3), RATE, "U8")
