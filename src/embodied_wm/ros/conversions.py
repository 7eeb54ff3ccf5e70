"""Prediction / Rollout <-> embodied_wm messages and sensor_msgs/Image, plus the human previews.

Stamps always come from the data: a PredictedFrames header carries the stamp of the observation predicted
from and frame k's offset is (k+1)*dt, so a planner can line predictions up with future camera frames
without trusting anyone's wall clock.

Arrays go into message fields as ``array.array`` built from the numpy buffer: rclpy then skips its
per-element checks, which is ~20x faster than assigning a numpy array for a C x H x W float map.
"""

from __future__ import annotations

import array
from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Duration, Time
from sensor_msgs.msg import Image

from embodied_wm.errors import InvalidDataError
from embodied_wm.io.stamps import split_ns, to_ns
from embodied_wm.msg import AffordanceMap, PredictedFrames, WorldState
from embodied_wm.observation import Prediction, Rollout
from embodied_wm.sensing.image import image_to_rgb
from embodied_wm.sensing.resize import resize_area, resize_nearest
from embodied_wm.viz import probability_bar, probability_overlay, upscale

# ------------------------------------------------------------------------------------------ time
#: builtin_interfaces Time/Duration.sec is an int32; rclpy accepts larger Python ints and the C
#: conversion then wraps them negative, so out-of-range stamps are refused here instead.
_INT32_MAX = 2**31 - 1


def ns_to_time(ns: int) -> Time:
    ns = int(ns)
    if ns < 0:
        raise InvalidDataError(f"negative stamp {ns} ns")
    sec, nanosec = split_ns(ns)
    if sec > _INT32_MAX:
        raise InvalidDataError(f"stamp {ns} ns is past the int32 seconds of builtin_interfaces/Time")
    return Time(sec=sec, nanosec=nanosec)


def time_to_ns(t: Time) -> int:
    return to_ns(t)


def ns_to_duration(ns: int) -> Duration:
    ns = int(ns)
    # Duration.sec is signed; keep nanosec in [0, 1e9) as builtin_interfaces requires.
    sec, nanosec = split_ns(ns)
    if not -_INT32_MAX - 1 <= sec <= _INT32_MAX:
        raise InvalidDataError(f"duration {ns} ns does not fit builtin_interfaces/Duration")
    return Duration(sec=sec, nanosec=nanosec)


def duration_to_ns(d: Duration) -> int:
    return to_ns(d)


# ----------------------------------------------------------------------------------------- images
def rgb_to_image_msg(rgb: np.ndarray, stamp_ns: int, frame_id: str) -> Image:
    """H x W x 3 uint8 RGB -> sensor_msgs/Image (rgb8, tightly packed)."""
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise InvalidDataError(f"expected H x W x 3 RGB, got shape {rgb.shape}")
    msg = Image()
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = 3 * msg.width
    msg.data = array.array("B", rgb.tobytes())
    return msg


def image_msg_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image (any encoding sensing/ understands) -> H x W x 3 uint8 RGB. Goal images and our
    own outputs go through the same decoder as the camera (raises SensingError, a ValueError)."""

    return np.ascontiguousarray(image_to_rgb(msg))


# ---------------------------------------------------------------------------------- predictions
def prediction_to_frames_msg(pred: Prediction, frame_id: str | None = None) -> PredictedFrames:
    """K predicted frames; header = observation stamp, offsets (k+1)*dt; each frame stamped absolutely."""
    fid = pred.frame_id if frame_id is None or frame_id == "" else frame_id
    msg = PredictedFrames()
    msg.header.stamp = ns_to_time(pred.stamp_ns)
    msg.header.frame_id = fid
    stamps = pred.frame_stamps_ns
    msg.offsets = [ns_to_duration(int(s) - pred.stamp_ns) for s in stamps]
    msg.frames = [rgb_to_image_msg(pred.frames[k], int(stamps[k]), fid) for k in range(pred.horizon)]
    if pred.confidence is not None:
        msg.confidence = array.array("f", np.asarray(pred.confidence, np.float32).tobytes())
    msg.model_id = pred.model_id
    return msg


def affordance_to_msg(
    affordance: np.ndarray,
    channels: Sequence[str],
    stamp_ns: int,
    frame_id: str,
    horizon_ns: int,
    model_id: str,
) -> AffordanceMap:
    aff = np.ascontiguousarray(affordance, dtype=np.float32)
    if aff.ndim != 3:
        raise InvalidDataError(f"affordance must be C x H x W, got {aff.shape}")
    if aff.shape[0] != len(channels):
        raise InvalidDataError(f"{aff.shape[0]} affordance planes but {len(channels)} channel names")
    msg = AffordanceMap()
    msg.header.stamp = ns_to_time(stamp_ns)
    msg.header.frame_id = frame_id
    msg.channels = list(channels)
    msg.height, msg.width = int(aff.shape[1]), int(aff.shape[2])
    msg.data = array.array("f", aff.tobytes())
    msg.horizon = ns_to_duration(horizon_ns)
    msg.model_id = model_id
    return msg


def prediction_to_affordance_msg(pred: Prediction, frame_id: str | None = None) -> AffordanceMap:
    """Affordance channels of ``pred`` (an empty map, 0 channels at the frame size, for baselines)."""
    fid = pred.frame_id if frame_id is None or frame_id == "" else frame_id
    aff = pred.affordance
    if aff.size == 0:
        h, w = pred.frames.shape[1:3]
        aff = np.zeros((0, h, w), np.float32)
    return affordance_to_msg(
        aff, pred.affordance_channels, pred.stamp_ns, fid, pred.dt_ns * pred.horizon, pred.model_id
    )


def prediction_to_world_state_msg(pred: Prediction, frame_id: str | None = None) -> WorldState:
    fid = pred.frame_id if frame_id is None or frame_id == "" else frame_id
    latent = np.ascontiguousarray(pred.latent, dtype=np.float32)
    msg = WorldState()
    msg.header.stamp = ns_to_time(pred.stamp_ns)
    msg.header.frame_id = fid
    msg.latent = array.array("f", latent.tobytes())
    msg.shape = array.array("I", np.asarray(latent.shape, np.uint32).tobytes())
    msg.model_id = pred.model_id
    return msg


def rollout_to_msgs(rollout: Rollout, frame_id: str) -> tuple[list[PredictedFrames], list[AffordanceMap]]:
    """Per candidate: PredictedFrames (K frames) and AffordanceMap, all stamped from ``rollout.stamp_ns``."""
    frames_out: list[PredictedFrames] = []
    aff_out: list[AffordanceMap] = []
    n = int(rollout.frames.shape[0])
    for i in range(n):
        pred = Prediction(
            stamp_ns=rollout.stamp_ns,
            dt_ns=rollout.dt_ns,
            frames=rollout.frames[i],
            affordance=(
                rollout.affordance[i]
                if rollout.affordance.size
                else np.zeros((0, *rollout.frames.shape[2:4]), np.float32)
            ),
            affordance_channels=rollout.affordance_channels,
            model_id=rollout.model_id,
            frame_id=frame_id,
        )
        frames_out.append(prediction_to_frames_msg(pred, frame_id))
        aff_out.append(prediction_to_affordance_msg(pred, frame_id))
    return frames_out, aff_out


def frames_msg_to_numpy(msg: PredictedFrames) -> tuple[np.ndarray, np.ndarray]:
    """(K absolute stamps in ns, K x H x W x 3 uint8) from a PredictedFrames message."""
    base = time_to_ns(msg.header.stamp)
    stamps = np.array([base + duration_to_ns(o) for o in msg.offsets], dtype=np.int64)
    if not msg.frames:
        return stamps, np.zeros((0, 0, 0, 3), np.uint8)
    return stamps, np.stack([image_msg_to_rgb(f) for f in msg.frames])


def affordance_msg_to_numpy(msg: AffordanceMap) -> tuple[list[str], np.ndarray]:
    c, h, w = len(msg.channels), int(msg.height), int(msg.width)
    data = np.frombuffer(array.array("f", msg.data).tobytes(), dtype=np.float32)
    if data.size != c * h * w:
        raise InvalidDataError(f"AffordanceMap has {data.size} values, expected {c}x{h}x{w}")
    return list(msg.channels), data.reshape(c, h, w).copy()


# -------------------------------------------------------------------------------------- previews
def pick_indices(k: int, max_frames: int) -> list[int]:
    """Up to ``max_frames`` evenly spaced indices of 0..k-1, always including the last."""
    if k <= max_frames:
        return list(range(k))
    idx = np.round(np.linspace(0, k - 1, max_frames)).astype(int)
    return sorted(set(int(i) for i in idx))


def tile_preview(
    current: np.ndarray | None,
    predicted: np.ndarray,
    max_frames: int = 4,
    scale: int = 1,
    gap: int = 2,
) -> np.ndarray:
    """One row: [current frame | predicted frames ...] at the model resolution, separated by white gaps
    (the current frame is resized to the prediction size)."""
    k, h, w = predicted.shape[:3]
    tiles: list[np.ndarray] = []
    if current is not None:
        tiles.append(resize_nearest(np.asarray(current, np.uint8), h, w))
    tiles.extend(predicted[i] for i in pick_indices(k, max_frames))
    sep = np.full((h, gap, 3), 255, np.uint8)
    parts: list[np.ndarray] = []
    for i, t in enumerate(tiles):
        if i:
            parts.append(sep)
        parts.append(t)
    row = np.concatenate(parts, axis=1)
    if scale > 1:
        row = np.repeat(np.repeat(row, scale, axis=0), scale, axis=1)
    return np.ascontiguousarray(row)


def affordance_preview(
    base: np.ndarray,
    affordance: np.ndarray,
    channels: Sequence[str],
    channel: str = "contact",
    scale: int = 1,
) -> np.ndarray:
    """One affordance channel (``channel`` or the first) over ``base`` with its colour bar, the renderer
    of the reports (viz.probability_overlay: turbo, opacity proportional to p, nearest-neighbour
    upscaling by ``scale``); ``base`` alone, upscaled, when the backend has no affordance output."""
    img = np.asarray(base, np.uint8)
    if not (affordance.size and len(channels)):
        return upscale(img, scale)
    c = list(channels).index(channel) if channel in channels else 0
    over = probability_overlay(img, affordance[c], scale)
    bar = probability_bar(over.shape[0], f"p({channels[c]})")
    gap = np.full((over.shape[0], 2, 3), 255, np.uint8)
    return np.ascontiguousarray(np.concatenate([over, gap, bar], axis=1))


__all__ = [
    "affordance_msg_to_numpy",
    "affordance_preview",
    "affordance_to_msg",
    "duration_to_ns",
    "frames_msg_to_numpy",
    "image_msg_to_rgb",
    "ns_to_duration",
    "ns_to_time",
    "pick_indices",
    "prediction_to_affordance_msg",
    "prediction_to_frames_msg",
    "prediction_to_world_state_msg",
    "resize_area",
    "resize_nearest",
    "rgb_to_image_msg",
    "rollout_to_msgs",
    "tile_preview",
    "time_to_ns",
]
