"""Build the input messages the pipeline consumes, as rclpy objects or as rosbags objects.

The two flavours carry the same data in different containers (array.array/bytes vs. numpy), which is
what the decoders must treat alike; tests, the simulator bridge and bag writers use these builders.
rclpy flavour needs ROS (and the colcon-built interfaces for our own messages); rosbags flavour only
needs the ``rosbags`` package.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from embodied_wm.io.stamps import split_ns
from embodied_wm.io.typestore import typestore

Flavor = Literal["rclpy", "rosbags"]
FLAVORS: tuple[Flavor, ...] = ("rclpy", "rosbags")


def _rb(name: str) -> Any:
    return typestore().types[name]


def header(stamp_ns: int, frame_id: str = "", flavor: Flavor = "rclpy") -> Any:
    sec, nanosec = split_ns(stamp_ns)
    if flavor == "rosbags":
        time_t = _rb("builtin_interfaces/msg/Time")
        return _rb("std_msgs/msg/Header")(stamp=time_t(sec=sec, nanosec=nanosec), frame_id=frame_id)
    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from builtin_interfaces.msg import Time

    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from std_msgs.msg import Header

    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(
    fields: dict[str, Any], stamp_ns: int = 0, frame_id: str = "camera", flavor: Flavor = "rclpy"
) -> Any:
    """sensor_msgs/Image from fields height, width, encoding, step, data (bytes), is_bigendian."""
    h = header(stamp_ns, frame_id, flavor)
    kw = {
        "height": int(fields["height"]),
        "width": int(fields["width"]),
        "encoding": str(fields["encoding"]),
        "is_bigendian": int(fields.get("is_bigendian", 0)),
        "step": int(fields["step"]),
    }
    data = bytes(fields["data"])
    if flavor == "rosbags":
        return _rb("sensor_msgs/msg/Image")(header=h, data=np.frombuffer(data, np.uint8).copy(), **kw)
    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from sensor_msgs.msg import Image

    return Image(header=h, data=data, **kw)


def compressed_image_msg(
    data: bytes, fmt: str, stamp_ns: int = 0, frame_id: str = "camera", flavor: Flavor = "rclpy"
) -> Any:
    h = header(stamp_ns, frame_id, flavor)
    if flavor == "rosbags":
        return _rb("sensor_msgs/msg/CompressedImage")(
            header=h, format=fmt, data=np.frombuffer(data, np.uint8).copy()
        )
    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from sensor_msgs.msg import CompressedImage

    return CompressedImage(header=h, format=fmt, data=bytes(data))


def audio_frame_msg(
    fields: dict[str, Any], stamp_ns: int = 0, frame_id: str = "mic", flavor: Flavor = "rclpy"
) -> Any:
    """embodied_wm/AudioFrame from ``encode_audio_frame_fields`` output."""
    h = header(stamp_ns, frame_id, flavor)
    kw = {
        "sample_rate": int(fields["sample_rate"]),
        "channels": int(fields["channels"]),
        "encoding": str(fields["encoding"]),
    }
    data = bytes(fields["data"])
    if flavor == "rosbags":
        return _rb("embodied_wm/msg/AudioFrame")(header=h, data=np.frombuffer(data, np.uint8).copy(), **kw)
    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from embodied_wm.msg import AudioFrame

    return AudioFrame(header=h, data=data, **kw)


def tactile_msg(
    values: np.ndarray,
    stamp_ns: int = 0,
    frame_id: str = "fingertip",
    flavor: Flavor = "rclpy",
    rows: int | None = None,
    cols: int | None = None,
) -> Any:
    """embodied_wm/TactileArray; rows/cols default to ``values``' 2-D shape (override to build bad ones)."""
    arr = np.asarray(values, dtype=np.float32)
    r = int(rows if rows is not None else arr.shape[0])
    c = int(cols if cols is not None else (arr.shape[1] if arr.ndim > 1 else 1))
    h = header(stamp_ns, frame_id, flavor)
    if flavor == "rosbags":
        return _rb("embodied_wm/msg/TactileArray")(
            header=h, sensor_model="test", rows=r, cols=c, values=arr.reshape(-1).copy(), unit="N"
        )
    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from embodied_wm.msg import TactileArray

    return TactileArray(
        header=h, sensor_model="test", rows=r, cols=c, values=arr.reshape(-1).tolist(), unit="N"
    )


def float32_multiarray_msg(
    values: np.ndarray, flavor: Flavor = "rclpy", layout: bool = True, data_offset: int = 0
) -> Any:
    """std_msgs/Float32MultiArray; with ``layout`` the dims describe ``values``' shape."""
    arr = np.asarray(values, dtype=np.float32)
    shape = arr.shape if layout else ()
    strides = [int(np.prod(shape[i:])) for i in range(len(shape))]
    flat = np.concatenate([np.zeros(data_offset, np.float32), arr.reshape(-1)])
    if flavor == "rosbags":
        dim_t = _rb("std_msgs/msg/MultiArrayDimension")
        dims = [dim_t(label=f"d{i}", size=int(s), stride=strides[i]) for i, s in enumerate(shape)]
        lay = _rb("std_msgs/msg/MultiArrayLayout")(dim=dims, data_offset=data_offset)
        return _rb("std_msgs/msg/Float32MultiArray")(layout=lay, data=flat)
    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from std_msgs.msg import Float32MultiArray, MultiArrayDimension, MultiArrayLayout

    dims_r = [MultiArrayDimension(label=f"d{i}", size=int(s), stride=strides[i]) for i, s in enumerate(shape)]
    return Float32MultiArray(layout=MultiArrayLayout(dim=dims_r, data_offset=data_offset), data=flat.tolist())


def joint_state_msg(
    position: Sequence[float],
    velocity: Sequence[float] = (),
    stamp_ns: int = 0,
    names: Sequence[str] | None = None,
    flavor: Flavor = "rclpy",
) -> Any:
    pos = [float(v) for v in position]
    vel = [float(v) for v in velocity]
    names_l = list(names) if names is not None else [f"joint{i}" for i in range(len(pos))]
    h = header(stamp_ns, "", flavor)
    if flavor == "rosbags":
        return _rb("sensor_msgs/msg/JointState")(
            header=h,
            name=names_l,
            position=np.array(pos, np.float64),
            velocity=np.array(vel, np.float64),
            effort=np.zeros(0, np.float64),
        )
    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from sensor_msgs.msg import JointState

    return JointState(header=h, name=names_l, position=pos, velocity=vel)


def twist_msg(
    values: Sequence[float], stamp_ns: int = 0, frame_id: str = "tool", flavor: Flavor = "rclpy"
) -> Any:
    """geometry_msgs/TwistStamped from [vx, vy, vz, wx, wy, wz]."""
    v = [float(x) for x in values]
    h = header(stamp_ns, frame_id, flavor)
    if flavor == "rosbags":
        vec = _rb("geometry_msgs/msg/Vector3")
        twist = _rb("geometry_msgs/msg/Twist")(
            linear=vec(x=v[0], y=v[1], z=v[2]), angular=vec(x=v[3], y=v[4], z=v[5])
        )
        return _rb("geometry_msgs/msg/TwistStamped")(header=h, twist=twist)
    # lazy: ROS is optional outside ros/ and tools/: imported only where a ROS message is built
    from geometry_msgs.msg import Twist, TwistStamped, Vector3

    twist_r = Twist(linear=Vector3(x=v[0], y=v[1], z=v[2]), angular=Vector3(x=v[3], y=v[4], z=v[5]))
    return TwistStamped(header=h, twist=twist_r)
