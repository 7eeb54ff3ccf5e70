"""Per-pixel ground truth that looks into the future: the affordance targets.

- contact: pixels the fingertip will touch within the horizon: the union of small disks (about the
  fingertip's footprint, at least 1.5 px) around the projected fingertip contact points sampled
  during frames t+1..t+K. Disks instead of single pixels make the target learnable at low resolution.
- movable: pixels (at frame t) of the objects that move more than ``MOVE_THRESHOLD_M`` (centre
  displacement plus rotation times the object's radius) at any of frames t+1..t+K.

Because both need the next K frames, producers buffer K frames before emitting frame t's ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from embodied_wm.sim.scene import FIRST_OBJECT_LABEL, TIP_RADIUS, ObjectSpec

HORIZON = 8
CHANNELS: tuple[str, ...] = ("contact", "movable")
MOVE_THRESHOLD_M = 0.002
#: World radius of the contact disk (m) and its minimum size in pixels.
CONTACT_DISK_M = 0.75 * TIP_RADIUS
MIN_DISK_PX = 1.5
_SHIFT = 4  # cv2 sub-pixel bits for circle centres


def contact_map(
    points: np.ndarray, project: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], fx: float, res: int
) -> np.ndarray:
    """res x res float32 in {0, 1}: disks around the projections of world ``points`` (n x 3)."""
    canvas = np.zeros((res, res), np.uint8)
    if len(points) == 0:
        return canvas.astype(np.float32)
    uv, z = project(points)
    ok = (z > 1e-3) & np.all(np.isfinite(uv), axis=1)
    uv, z = uv[ok], z[ok]
    radius = np.maximum(fx * CONTACT_DISK_M / z, MIN_DISK_PX)
    # Identical disks (a finger resting on a spot) are drawn once.
    keys = np.unique(np.round(np.column_stack([uv * 4, radius * 4])).astype(np.int64), axis=0)
    scale = 1 << _SHIFT
    for qu, qv, qr in keys:
        # cv2 pixel centres are at integer coordinates, as in our projection.
        cv2.circle(
            canvas,
            (int(qu * scale / 4), int(qv * scale / 4)),
            int(qr * scale / 4),
            1,
            -1,
            lineType=cv2.LINE_8,
            shift=_SHIFT,
        )
    return canvas.astype(np.float32)


def _quat_angle(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    dot = np.abs(np.sum(q1 * q2, axis=-1)).clip(0.0, 1.0)
    return 2.0 * np.arccos(dot)


def moved_objects(
    poses_t: np.ndarray, future: Sequence[np.ndarray], objects: Sequence[ObjectSpec]
) -> np.ndarray:
    """Boolean per object: did it move more than MOVE_THRESHOLD_M at any future frame?"""
    if len(objects) == 0 or not future:
        return np.zeros(len(objects), bool)
    radius = np.array([o.footprint_radius for o in objects])
    fut = np.stack(future)  # K x n x 7
    disp = np.linalg.norm(fut[..., :3] - poses_t[None, :, :3], axis=-1)
    disp = disp + _quat_angle(fut[..., 3:], poses_t[None, :, 3:]) * radius[None]
    return np.asarray((disp > MOVE_THRESHOLD_M).any(axis=0))


def movable_map(seg: np.ndarray, moved: np.ndarray) -> np.ndarray:
    labels = FIRST_OBJECT_LABEL + np.nonzero(moved)[0]
    return np.isin(seg, labels).astype(np.float32)


def affordance(
    seg: np.ndarray,
    poses_t: np.ndarray,
    future_poses: Sequence[np.ndarray],
    future_contacts: Sequence[np.ndarray],
    objects: Sequence[ObjectSpec],
    project: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    fx: float,
) -> np.ndarray:
    """C x H x W float32 (CHANNELS order) for frame t given frames t+1..t+K's poses and the fingertip
    contact points sampled during (t, t+K]."""
    res = seg.shape[0]
    pts = (
        np.concatenate([c for c in future_contacts if len(c)])
        if any(len(c) for c in future_contacts)
        else np.zeros((0, 3))
    )
    contact = contact_map(pts, project, fx, res)
    movable = movable_map(seg, moved_objects(poses_t, future_poses, objects))
    return np.stack([contact, movable])
