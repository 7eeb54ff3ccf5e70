"""Helpers shared by the decoders: header stamps and zero-copy views of message sequences.

Decoders take rclpy messages (sequences arrive as array.array / bytes / lists) and rosbags messages
(numpy arrays) alike, so everything here duck-types on the value it is given.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embodied_wm.io.stamps import NS_PER_S, to_ns
from embodied_wm.sensing.errors import NonFiniteError, SensingError

#: builtin_interfaces/Time.sec is an int32. Outputs are stamped up to the prediction horizon after their
#: input, so inputs within a day of the int32 end (2038-01-18) are refused: an output stamp must never
#: wrap (a day covers any horizon a model may have, see model.config).
MAX_STAMP_SEC = 2**31 - 1 - 86_400


def stamp_ns(header: Any) -> int:
    """``header.stamp`` (builtin_interfaces/Time) as integer nanoseconds; SensingError "bad_stamp" for a
    negative stamp, nanosec outside [0, 1e9) or a stamp too close to the end of int32 seconds."""
    stamp = header.stamp
    sec, nanosec = int(stamp.sec), int(getattr(stamp, "nanosec", getattr(stamp, "nsec", 0)))
    if not 0 <= nanosec < NS_PER_S:
        raise SensingError(f"header stamp nanosec must be in [0, 1e9), got {nanosec}", "bad_stamp")
    if sec > MAX_STAMP_SEC:
        raise SensingError(
            f"header stamp sec {sec} is past {MAX_STAMP_SEC} (outputs stamped after it would wrap int32)",
            "bad_stamp",
        )
    ns = to_ns(stamp)
    if ns < 0:
        raise SensingError(f"header stamp must be >= 0, got {sec}s {nanosec}ns", "bad_stamp")
    return ns


def frame_id(header: Any) -> str:
    return str(getattr(header, "frame_id", ""))


def as_uint8(data: Any) -> np.ndarray:
    """A 1-D uint8 view of a uint8[] field without copying when the object exposes a buffer."""
    if isinstance(data, np.ndarray):
        if data.dtype == np.uint8:
            return data.reshape(-1)
        return np.ascontiguousarray(data).reshape(-1).view(np.uint8)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    try:
        # array.array('B') and anything else with the buffer protocol.
        return np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def as_float32(data: Any) -> np.ndarray:
    """A 1-D float32 array of a float32[]/float64[] field (copy only when the dtype differs)."""
    return np.asarray(data, dtype=np.float32).reshape(-1)


def check_finite(values: np.ndarray, what: str) -> None:
    if values.size and not np.isfinite(values).all():
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        raise NonFiniteError(f"{what}: expected finite values, got {bad} NaN/inf of {values.size}")
