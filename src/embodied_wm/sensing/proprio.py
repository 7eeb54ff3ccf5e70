"""Robot state and command messages to float32 vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from embodied_wm.sensing.common import as_float32, check_finite, stamp_ns
from embodied_wm.sensing.errors import ShapeError


def decode_joint_state(msg: Any, joint_names: Sequence[str] | None = None) -> tuple[int, np.ndarray]:
    """sensor_msgs/JointState to (stamp_ns, float32 [positions..., velocities...]).

    ``velocity`` must be empty or as long as ``position``. An empty velocity (many drivers publish
    positions only) is returned as zeros, so a consumer cannot tell "still" from "unknown": set the
    driver to publish velocities where that matters. ``joint_names`` selects and orders joints by
    name (drivers may publish subsets or change order); without it the message order is kept.
    """
    pos = as_float32(msg.position)
    vel = as_float32(msg.velocity)
    if pos.size == 0:
        raise ShapeError("JointState: expected joint positions, got none")
    if vel.size not in (0, pos.size):
        raise ShapeError(f"JointState: velocity must be empty or match {pos.size} positions, got {vel.size}")
    if vel.size == 0:
        vel = np.zeros_like(pos)
    if joint_names is not None:
        names = [str(n) for n in msg.name]
        if len(names) != pos.size:
            raise ShapeError(f"JointState: {len(names)} names for {pos.size} positions")
        index = {n: i for i, n in enumerate(names)}
        missing = [n for n in joint_names if n not in index]
        if missing:
            raise ShapeError(f"JointState: expected joints {list(joint_names)}, missing {missing}")
        order = np.array([index[n] for n in joint_names], dtype=np.intp)
        pos, vel = pos[order], vel[order]
    out = np.concatenate([pos, vel]).astype(np.float32)
    check_finite(out, "JointState")
    return stamp_ns(msg.header), out


def decode_twist(msg: Any) -> tuple[int, np.ndarray]:
    """geometry_msgs/TwistStamped to (stamp_ns, float32[6] = linear xyz, angular xyz)."""
    lin, ang = msg.twist.linear, msg.twist.angular
    out = np.array([lin.x, lin.y, lin.z, ang.x, ang.y, ang.z], dtype=np.float32)
    check_finite(out, "TwistStamped")
    return stamp_ns(msg.header), out
