"""Audio messages to mono float32 at the model's sample rate.

Sources: embodied_wm/AudioFrame (S16LE / F32LE, interleaved channels) and, duck-typed without
depending on the package, audio_common_msgs/AudioStamped (ROS 2 audio_common 4.x: audio.info.{format,
channels,rate}, audio.audio_data.{float32,int32,int16,int8,uint8}_data with PortAudio format codes).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from scipy.signal import resample_poly

from embodied_wm.sensing.common import as_uint8, check_finite, stamp_ns
from embodied_wm.sensing.errors import AudioFormatError, TooLargeError, UnknownEncodingError

#: AudioFrame encodings: numpy dtype and the scale that maps full range to [-1, 1].
AUDIO_ENCODINGS: dict[str, tuple[str, float]] = {"S16LE": ("<i2", 1.0 / 32768.0), "F32LE": ("<f4", 1.0)}

# PortAudio sample formats used by audio_common's AudioInfo.format.
_PA_FORMATS: dict[int, tuple[str, float]] = {
    1: ("float32_data", 1.0),
    2: ("int32_data", 1.0 / 2147483648.0),
    8: ("int16_data", 1.0 / 32768.0),
    16: ("int8_data", 1.0 / 128.0),
    32: ("uint8_data", 1.0 / 128.0),
}

#: Sample rates outside this range are no microphone's (telephony starts at 8 kHz, studio ADCs end at
#: 384 kHz): rejected, whatever the rest of the message says.
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
_MAX_CHANNELS = 64
#: Largest up/down factor of the polyphase resampler. resample_poly builds a filter of about
#: 20 * max(up, down) taps: an exact ratio for a prime rate like 999983 Hz would be 20 M taps (seconds
#: and a gigabyte per message), so the ratio is approximated within this bound instead (44.1 and
#: 48 kHz and every common rate to 16 kHz stay exact; the approximation error is below 1e-4).
MAX_RESAMPLE_FACTOR = 1000
#: Longest audio message decoded (seconds of samples): keeps one message's work and memory bounded.
MAX_CHUNK_S = 10.0


@dataclass
class AudioChunk:
    """Mono samples in [-1, 1] at ``sample_rate``; ``stamp_ns`` is the time of the first sample."""

    stamp_ns: int
    samples: np.ndarray
    sample_rate: int

    @property
    def duration_ns(self) -> float:
        return self.samples.size * 1e9 / self.sample_rate


def _check_rate_channels(rate: int, channels: int) -> None:
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise AudioFormatError(
            f"audio sample_rate must be in {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {rate}"
        )
    if not 0 < channels <= _MAX_CHANNELS:
        raise AudioFormatError(f"audio channels must be in 1..{_MAX_CHANNELS}, got {channels}")


def _check_duration(what: str, frames: int, rate: int) -> None:
    if frames > MAX_CHUNK_S * rate:
        raise TooLargeError(
            f"{what}: {frames} samples per channel at {rate} Hz is {frames / rate:.1f} s, "
            f"more than the {MAX_CHUNK_S:g} s one message may carry"
        )


def _to_mono(interleaved: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1:
        return interleaved
    return interleaved.reshape(-1, channels).mean(axis=1, dtype=np.float32)


def resample_factors(rate: int, target_rate: int, max_factor: int = MAX_RESAMPLE_FACTOR) -> tuple[int, int]:
    """(up, down), both <= ``max_factor``, with up / down the closest such fraction to target / rate
    (exact whenever the reduced ratio fits)."""
    if rate <= 0 or target_rate <= 0:
        raise AudioFormatError(f"resampling needs positive rates, got {rate} -> {target_rate}")
    ratio = Fraction(target_rate, rate)
    # limit_denominator bounds ``down``; bounding it by max_factor / ratio bounds ``up`` too.
    approx = ratio.limit_denominator(max(1, int(max_factor / max(ratio, Fraction(1)))))
    if approx == 0:  # ratio below 1 / max_factor: the closest representable ratio
        approx = Fraction(1, max_factor)
    up, down = approx.numerator, approx.denominator
    if up > max_factor:
        raise AudioFormatError(f"cannot resample {rate} Hz to {target_rate} Hz within factor {max_factor}")
    return up, down


def resample(samples: np.ndarray, rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling with a bounded filter (see MAX_RESAMPLE_FACTOR). Each chunk is resampled on
    its own (no state between messages) so the live node and a replay produce the same samples; linear
    edge padding keeps chunk borders from dipping."""
    if rate == target_rate or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    up, down = resample_factors(rate, target_rate)
    if up == down:
        return samples.astype(np.float32, copy=False)
    out = resample_poly(samples.astype(np.float64), up, down, padtype="line")
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _decode_audio_frame(msg: Any) -> tuple[np.ndarray, int]:
    rate, channels = int(msg.sample_rate), int(msg.channels)
    _check_rate_channels(rate, channels)
    encoding = str(msg.encoding).upper()
    if encoding not in AUDIO_ENCODINGS:
        raise UnknownEncodingError(
            f"AudioFrame encoding {msg.encoding!r} is not supported (expected {', '.join(AUDIO_ENCODINGS)})"
        )
    dtype_str, scale = AUDIO_ENCODINGS[encoding]
    dtype = np.dtype(dtype_str)
    nbytes = len(msg.data)
    frame_bytes = dtype.itemsize * channels
    if nbytes == 0:
        raise AudioFormatError(f"AudioFrame {encoding} x{channels} @ {rate} Hz: no samples")
    if nbytes % frame_bytes:
        raise AudioFormatError(
            f"AudioFrame {encoding} x{channels}: byte count must be a multiple of {frame_bytes}, got {nbytes}"
        )
    _check_duration(f"AudioFrame {encoding} x{channels}", nbytes // frame_bytes, rate)
    raw = as_uint8(msg.data).view(dtype)
    if dtype.kind == "f":
        samples = raw.astype(np.float32)
        check_finite(samples, f"AudioFrame {encoding}")
        samples = np.clip(samples, -1.0, 1.0)
    else:
        samples = raw.astype(np.float32) * np.float32(scale)
    return _to_mono(samples, channels), rate


def _decode_audio_stamped(msg: Any) -> tuple[np.ndarray, int]:
    info = msg.audio.info
    rate, channels, fmt = int(info.rate), int(info.channels), int(info.format)
    _check_rate_channels(rate, channels)
    if fmt not in _PA_FORMATS:
        raise UnknownEncodingError(
            f"AudioStamped format {fmt} is not supported (expected PortAudio codes {sorted(_PA_FORMATS)})"
        )
    field, scale = _PA_FORMATS[fmt]
    raw = np.asarray(getattr(msg.audio.audio_data, field))
    if raw.size == 0:
        raise AudioFormatError(f"AudioStamped {field} x{channels} @ {rate} Hz: no samples")
    if raw.size % channels:
        raise AudioFormatError(
            f"AudioStamped {field}: sample count must be a multiple of {channels} channels, got {raw.size}"
        )
    _check_duration(f"AudioStamped {field} x{channels}", raw.size // channels, rate)
    if fmt == 32:  # unsigned 8-bit is offset binary
        samples = (raw.astype(np.float32) - 128.0) * np.float32(scale)
    else:
        samples = raw.astype(np.float32) * np.float32(scale)
    if fmt == 1:
        check_finite(samples, "AudioStamped float32")
    return _to_mono(np.clip(samples, -1.0, 1.0), channels), rate


def decode_audio(msg: Any, target_rate: int) -> AudioChunk:
    """AudioFrame (or an AudioStamped-like message) to an AudioChunk of mono float32 at ``target_rate``."""
    if hasattr(msg, "audio") and hasattr(msg.audio, "info"):
        samples, rate = _decode_audio_stamped(msg)
    else:
        samples, rate = _decode_audio_frame(msg)
    return AudioChunk(stamp_ns(msg.header), resample(samples, rate, int(target_rate)), int(target_rate))


def encode_audio_frame_fields(samples: np.ndarray, rate: int, encoding: str = "S16LE") -> dict[str, Any]:
    """AudioFrame fields (sample_rate, channels, encoding, data) for samples in [-1, 1]: a 1-D array is
    mono, an N x C array is C interleaved channels. The header is left to the caller."""
    arr = np.asarray(samples, dtype=np.float32)
    channels = 1 if arr.ndim == 1 else int(arr.shape[1])
    if arr.ndim not in (1, 2) or channels < 1:
        raise AudioFormatError(f"expected samples shaped (N,) or (N, C), got {arr.shape}")
    encoding = encoding.upper()
    if encoding == "S16LE":
        data = np.round(np.clip(arr, -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
    elif encoding == "F32LE":
        data = arr.astype("<f4").tobytes()
    else:
        raise UnknownEncodingError(f"AudioFrame encoding {encoding!r}: expected S16LE or F32LE")
    return {"sample_rate": int(rate), "channels": channels, "encoding": encoding, "data": data}
