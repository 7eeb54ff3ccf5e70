"""Building the simulator's ROS messages once, for two back ends: rosbags (offline bags) and rclpy.

Builders take a :class:`MessageKit` that turns (type name, fields) into a message object. The
rosbags kit uses our typestore's dataclasses (numpy arrays for primitive arrays); the rclpy kit
converts numpy arrays to the ``array.array`` types rclpy's generated classes expect.
"""

from __future__ import annotations

import array
import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from embodied_wm.io.stamps import split_ns
from embodied_wm.io.typestore import typestore
from embodied_wm.sim.audio import SAMPLE_RATE, to_s16le
from embodied_wm.sim.episode import FrameData
from embodied_wm.sim.ground_truth import CHANNELS, HORIZON
from embodied_wm.sim.scene import JOINT_NAMES, TAXEL_COLS, TAXEL_ROWS

#: Default topic names (the sim node can remap them through parameters).
TOPICS: dict[str, str] = {
    "image": "/camera/image_raw",
    "camera_info": "/camera/camera_info",
    "audio": "/audio",
    "tactile": "/tactile",
    "joint_states": "/joint_states",
    "cmd_vel": "/cmd_vel_ee",
    "wrench": "/wrist_wrench",
    "segmentation": "/ground_truth/segmentation",
    "depth": "/ground_truth/depth",
    "affordance": "/ground_truth/affordance",
    "contact_points": "/ground_truth/contact_points",
    "tf_static": "/tf_static",
}
MSGTYPES: dict[str, str] = {
    "image": "sensor_msgs/msg/Image",
    "camera_info": "sensor_msgs/msg/CameraInfo",
    "audio": "embodied_wm/msg/AudioFrame",
    "tactile": "embodied_wm/msg/TactileArray",
    "joint_states": "sensor_msgs/msg/JointState",
    "cmd_vel": "geometry_msgs/msg/TwistStamped",
    "wrench": "geometry_msgs/msg/WrenchStamped",
    "segmentation": "sensor_msgs/msg/Image",
    "depth": "sensor_msgs/msg/Image",
    "affordance": "embodied_wm/msg/AffordanceMap",
    "contact_points": "geometry_msgs/msg/PolygonStamped",
    "tf_static": "tf2_msgs/msg/TFMessage",
}
GROUND_TRUTH_KEYS = ("segmentation", "depth", "affordance", "contact_points")


@dataclass(frozen=True)
class FrameIds:
    world: str = "world"
    camera: str = "camera_optical_frame"
    fingertip: str = "fingertip"


class MessageKit(Protocol):
    def make(self, msgtype: str, **fields: Any) -> Any: ...


class RosbagsKit:
    """Messages as rosbags dataclasses from our typestore (serialize with ``store.serialize_cdr``)."""

    def __init__(self) -> None:
        self.store = typestore()

    def make(self, msgtype: str, **fields: Any) -> Any:
        return self.store.types[msgtype](**fields)


_RCLPY_SEQ = {"sequence<uint8>": "B", "sequence<float>": "f", "sequence<double>": "d", "sequence<octet>": "B"}


class RclpyKit:
    """Messages as rclpy (rosidl-generated) objects."""

    def __init__(self) -> None:
        self._cls: dict[str, Any] = {}

    def _class(self, msgtype: str) -> Any:
        if msgtype not in self._cls:
            pkg, _, name = msgtype.split("/")
            self._cls[msgtype] = getattr(importlib.import_module(f"{pkg}.msg"), name)
        return self._cls[msgtype]

    def make(self, msgtype: str, **fields: Any) -> Any:
        cls = self._class(msgtype)
        types = cls.get_fields_and_field_types()
        for key, val in fields.items():
            if isinstance(val, np.ndarray):
                code = _RCLPY_SEQ.get(types[key])
                if code is not None:
                    fields[key] = array.array(
                        code,
                        val.astype(
                            {"B": np.uint8, "f": np.float32, "d": np.float64}[code], copy=False
                        ).tobytes(),
                    )
        return cls(**fields)


def stamp(kit: MessageKit, ns: int) -> Any:
    sec, nanosec = split_ns(ns)
    return kit.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def header(kit: MessageKit, ns: int, frame_id: str) -> Any:
    return kit.make("std_msgs/msg/Header", stamp=stamp(kit, ns), frame_id=frame_id)


def vec3(kit: MessageKit, v: Sequence[float] | np.ndarray) -> Any:
    return kit.make("geometry_msgs/msg/Vector3", x=float(v[0]), y=float(v[1]), z=float(v[2]))


def image(kit: MessageKit, ns: int, frame_id: str, arr: np.ndarray, encoding: str) -> Any:
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return kit.make(
        "sensor_msgs/msg/Image",
        header=header(kit, ns, frame_id),
        height=h,
        width=w,
        encoding=encoding,
        is_bigendian=0,
        step=arr.strides[0],
        data=np.frombuffer(arr.tobytes(), np.uint8),
    )


def camera_info(
    kit: MessageKit, ns: int, frame_id: str, res: int, intr: tuple[float, float, float, float]
) -> Any:
    fx, fy, cx, cy = intr
    roi = kit.make(
        "sensor_msgs/msg/RegionOfInterest", x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return kit.make(
        "sensor_msgs/msg/CameraInfo",
        header=header(kit, ns, frame_id),
        height=res,
        width=res,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=np.array([fx, 0, cx, 0, fy, cy, 0, 0, 1], float),
        r=np.eye(3).ravel(),
        p=np.array([fx, 0, cx, 0, 0, fy, cy, 0, 0, 0, 1, 0], float),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def audio(kit: MessageKit, ns: int, frame_id: str, samples: np.ndarray) -> Any:
    return kit.make(
        "embodied_wm/msg/AudioFrame",
        header=header(kit, ns, frame_id),
        sample_rate=SAMPLE_RATE,
        channels=1,
        encoding="S16LE",
        data=np.frombuffer(to_s16le(samples), np.uint8),
    )


def tactile(kit: MessageKit, ns: int, frame_id: str, values: np.ndarray) -> Any:
    return kit.make(
        "embodied_wm/msg/TactileArray",
        header=header(kit, ns, frame_id),
        sensor_model="mujoco_touch_5x5",
        rows=TAXEL_ROWS,
        cols=TAXEL_COLS,
        values=np.asarray(values, np.float32).ravel(),
        unit="N",
    )


def joint_state(kit: MessageKit, ns: int, f: FrameData) -> Any:
    return kit.make(
        "sensor_msgs/msg/JointState",
        header=header(kit, ns, ""),
        name=list(JOINT_NAMES),
        position=np.asarray(f.joint_pos, float),
        velocity=np.asarray(f.joint_vel, float),
        effort=np.asarray(f.joint_effort, float),
    )


def twist(kit: MessageKit, ns: int, frame_id: str, action: np.ndarray) -> Any:
    tw = kit.make("geometry_msgs/msg/Twist", linear=vec3(kit, action[:3]), angular=vec3(kit, action[3:6]))
    return kit.make("geometry_msgs/msg/TwistStamped", header=header(kit, ns, frame_id), twist=tw)


def wrench(kit: MessageKit, ns: int, frame_id: str, force: np.ndarray, torque: np.ndarray) -> Any:
    w = kit.make("geometry_msgs/msg/Wrench", force=vec3(kit, force), torque=vec3(kit, torque))
    return kit.make("geometry_msgs/msg/WrenchStamped", header=header(kit, ns, frame_id), wrench=w)


def affordance(kit: MessageKit, ns: int, frame_id: str, maps: np.ndarray, dt_ns: int) -> Any:
    horizon_ns = HORIZON * dt_ns
    sec, nanosec = split_ns(horizon_ns)
    dur = kit.make("builtin_interfaces/msg/Duration", sec=sec, nanosec=nanosec)
    return kit.make(
        "embodied_wm/msg/AffordanceMap",
        header=header(kit, ns, frame_id),
        channels=list(CHANNELS),
        height=maps.shape[1],
        width=maps.shape[2],
        data=np.asarray(maps, np.float32).ravel(),
        horizon=dur,
        model_id="ground_truth",
    )


def contact_points(kit: MessageKit, ns: int, frame_id: str, uv: np.ndarray, forces: np.ndarray) -> Any:
    """Fingertip contacts at this instant projected into the image: x = u, y = v (pixels), z = normal
    force (N). A PolygonStamped is used as a plain point list; it is not a closed polygon."""
    pts = [
        kit.make("geometry_msgs/msg/Point32", x=float(u), y=float(v), z=float(fn))
        for (u, v), fn in zip(uv, forces)
        if np.isfinite(u) and np.isfinite(v)
    ]
    return kit.make(
        "geometry_msgs/msg/PolygonStamped",
        header=header(kit, ns, frame_id),
        polygon=kit.make("geometry_msgs/msg/Polygon", points=pts),
    )


def tf_static(kit: MessageKit, ns: int, ids: FrameIds, cam_pos: np.ndarray, cam_rot: np.ndarray) -> Any:
    """world -> camera optical frame (the camera is fixed during an episode)."""
    q = _rot_to_quat(cam_rot)
    tr = kit.make(
        "geometry_msgs/msg/Transform",
        translation=vec3(kit, cam_pos),
        rotation=kit.make("geometry_msgs/msg/Quaternion", x=q[1], y=q[2], z=q[3], w=q[0]),
    )
    ts = kit.make(
        "geometry_msgs/msg/TransformStamped",
        header=header(kit, ns, ids.world),
        child_frame_id=ids.camera,
        transform=tr,
    )
    return kit.make("tf2_msgs/msg/TFMessage", transforms=[ts])


def _rot_to_quat(rot: np.ndarray) -> tuple[float, float, float, float]:
    """3x3 rotation -> (w, x, y, z), robust branch choice (Shepperd)."""
    m = np.asarray(rot, float)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = (0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s)
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = ((m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s)
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = ((m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = ((m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s)
    w, x, y, z = (float(v) for v in q)
    return (w, x, y, z) if w >= 0 else (-w, -x, -y, -z)


def sensor_messages(
    kit: MessageKit, f: FrameData, ids: FrameIds, res: int, intr: tuple[float, float, float, float]
) -> list[tuple[str, Any, int]]:
    """(key, message, log time ns) for frame ``f``'s sensor and action topics.
    The audio chunk [t - dt, t) is stamped with its first sample but logged at t (when complete)."""
    t = f.stamp_ns
    return [
        ("image", image(kit, t, ids.camera, f.rgb, "rgb8"), t),
        ("camera_info", camera_info(kit, t, ids.camera, res, intr), t),
        ("audio", audio(kit, f.audio_stamp_ns, ids.fingertip, f.audio), t),
        ("tactile", tactile(kit, t, ids.fingertip, f.tactile), t),
        ("joint_states", joint_state(kit, t, f), t),
        ("cmd_vel", twist(kit, t, ids.world, f.action), t),
        ("wrench", wrench(kit, t, ids.fingertip, f.wrist_force, f.wrist_torque), t),
    ]


def ground_truth_messages(
    kit: MessageKit, f: FrameData, ids: FrameIds, maps: np.ndarray, dt_ns: int, contact_uv: np.ndarray
) -> list[tuple[str, Any, int]]:
    t = f.stamp_ns
    assert f.seg is not None and f.depth is not None, "frame rendered without ground truth"
    return [
        ("segmentation", image(kit, t, ids.camera, f.seg, "mono8"), t),
        ("depth", image(kit, t, ids.camera, f.depth.astype("<f4"), "32FC1"), t),
        ("affordance", affordance(kit, t, ids.camera, maps, dt_ns), t),
        ("contact_points", contact_points(kit, t, ids.camera, contact_uv, f.tip_forces), t),
    ]
