"""perception_node's inputs: which Pipeline kind and ROS message type each input topic carries."""

from __future__ import annotations

from typing import Any

from geometry_msgs.msg import TwistStamped
from sensor_msgs.msg import CompressedImage, Image, JointState
from std_msgs.msg import Float32MultiArray

from embodied_wm.errors import ConfigError
from embodied_wm.msg import AudioFrame, TactileArray
from embodied_wm.ros import conversions as conv


# Pipeline kinds per input (see embodied_wm.pipeline.KINDS).
def kind_and_type(inp: str, camera_transport: str, tactile_type: str) -> tuple[str, Any]:
    """(Pipeline kind, message class) of node input ``inp`` under the transport/type parameters."""
    if inp == "camera":
        if camera_transport == "compressed":
            return "compressed_image", CompressedImage

        return "image", Image
    if inp == "audio":
        return "audio", AudioFrame
    if inp == "tactile":
        if tactile_type == "float32_multiarray":
            return "tactile_f32", Float32MultiArray

        return "tactile", TactileArray
    if inp == "joint_states":
        return "joint_state", JointState
    if inp == "action":
        return "twist", TwistStamped
    raise ConfigError(f"unknown input {inp!r}")


def header_stamp_ns(msg: Any) -> int | None:
    header = getattr(msg, "header", None)
    if header is None:
        return None
    return conv.time_to_ns(header.stamp)
