"""The one conversion between ROS time (builtin_interfaces/Time and Duration, from rclpy or rosbags)
and integer nanoseconds, which is how every stamp is held inside the package."""

from __future__ import annotations

from typing import Any

NS_PER_S = 1_000_000_000


def to_ns(stamp: Any) -> int:
    """A Time or Duration (``sec`` + ``nanosec``; ROS 1's ``nsec`` too) as integer nanoseconds."""
    nanosec: Any = getattr(stamp, "nanosec", None)
    if nanosec is None:
        nanosec = getattr(stamp, "nsec", 0)
    return int(stamp.sec) * NS_PER_S + int(nanosec)


def split_ns(ns: int) -> tuple[int, int]:
    """Integer nanoseconds -> (sec, nanosec) with nanosec in [0, 1e9), as builtin_interfaces wants
    (for a negative Duration, sec carries the sign)."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec
