"""Gazebo adapter: fingertip contacts (ros_gz_interfaces/Contacts) -> embodied_wm/TactileArray, and
optionally the end-effector twist command -> per-joint velocity commands for the Gazebo finger.

Gazebo has no taxel sensor, so the taxels are computed here from the contact sensor of the fingertip
link, with the same 5x5 layout as the MuJoCo scene: the grid tiles the fingertip sphere's xy footprint,
row 0 nearest +y, column 0 nearest -x, and a contact counts when it lies between 1.3 radii below the
tip centre and 0.3 radii above it. Contact positions are in the world frame; the tip centre comes from
the finger's joint states (finger_x/y/z prismatic joints) plus ``base_offset``, as in worlds/tabletop.sdf.

Per contact point the normal force is |F . n| from the wrench Gazebo reports for that point (either
body; they are equal and opposite); physics engines that report no wrench (all zero) fall back to
``depth_stiffness`` x penetration depth. Gazebo's contact sensor only publishes while touching, so
the adapter publishes at ``rate_hz``: the mean of the grids received in the last period, zeros if none.

``ros_gz_interfaces`` is imported only when the node starts; the conversion is a pure function on
duck-typed messages so it is testable without Gazebo.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64

from embodied_wm.errors import ConfigError
from embodied_wm.msg import TactileArray
from embodied_wm.ros.params import topic_disabled
from embodied_wm.ros.spin import spin_node

JOINT_NAMES = ("finger_x", "finger_y", "finger_z")


@dataclass(frozen=True)
class TaxelLayout:
    rows: int = 5
    cols: int = 5
    tip_radius: float = 0.012
    #: Fallback normal force per metre of penetration (N/m) when no wrench is reported.
    depth_stiffness: float = 2000.0

    def __post_init__(self) -> None:
        if self.rows < 1 or self.cols < 1:
            raise ConfigError(f"taxel grid must be at least 1x1, got {self.rows}x{self.cols}")
        if not self.tip_radius > 0:
            raise ConfigError(f"tip_radius must be > 0, got {self.tip_radius}")


def _vec(v: Any) -> np.ndarray:
    return np.array([float(v.x), float(v.y), float(v.z)])


def _point_force(contact: Any, k: int, layout: TaxelLayout) -> float:
    normal = _vec(contact.normals[k]) if k < len(contact.normals) else None
    if k < len(contact.wrenches):
        w = contact.wrenches[k]
        f = _vec(w.body_1_wrench.force)
        if not np.any(f):
            f = _vec(w.body_2_wrench.force)
        if np.any(f):
            if normal is not None and np.linalg.norm(normal) > 0:
                return abs(float(f @ normal)) / float(np.linalg.norm(normal))
            return float(np.linalg.norm(f))
    if k < len(contact.depths):
        return max(float(contact.depths[k]), 0.0) * layout.depth_stiffness
    return 0.0


def contacts_to_tactile(
    contacts: Iterable[Any], tip_center: np.ndarray, layout: TaxelLayout = TaxelLayout()
) -> np.ndarray:
    """rows x cols float32 normal force (N) per taxel from Gazebo contacts.

    ``contacts``: objects with ``positions`` / ``normals`` (Vector3-like: x, y, z), ``depths`` (floats)
    and ``wrenches`` (JointWrench-like: body_1_wrench.force, body_2_wrench.force) — the fields of
    ros_gz_interfaces/msg/Contact. Non-finite values are ignored.
    """
    grid = np.zeros((layout.rows, layout.cols), np.float32)
    half = layout.tip_radius * 1.05
    cell_x = 2.0 * half / layout.cols
    cell_y = 2.0 * half / layout.rows
    zlo, zhi = -1.3 * layout.tip_radius, 0.3 * layout.tip_radius
    center = np.asarray(tip_center, float)
    for contact in contacts:
        for k, pos in enumerate(contact.positions):
            d = _vec(pos) - center
            if not np.all(np.isfinite(d)) or not zlo <= d[2] <= zhi:
                continue
            j = math.floor((d[0] + half) / cell_x)
            i = math.floor((half - d[1]) / cell_y)
            if not (0 <= i < layout.rows and 0 <= j < layout.cols):
                continue
            f = _point_force(contact, k, layout)
            if math.isfinite(f):
                grid[i, j] += f
    return grid


def tip_center_from_joints(
    names: list[str], positions: list[float], base_offset: np.ndarray
) -> np.ndarray | None:
    """Fingertip centre in world from the prismatic finger joints; None if a joint is missing."""
    index = {n: i for i, n in enumerate(names)}
    if not all(n in index and index[n] < len(positions) for n in JOINT_NAMES):
        return None
    return np.asarray(base_offset, float) + np.array([float(positions[index[n]]) for n in JOINT_NAMES])


def main(argv: list[str] | None = None) -> int:
    try:
        # lazy: optional: absent here is handled below
        from ros_gz_interfaces.msg import Contacts
    except ImportError:
        print(
            "gz_tactile_adapter: ros_gz_interfaces is not installed; install ros-<distro>-ros-gz-interfaces "
            "(it comes with ros_gz) to use the Gazebo adapter",
            file=sys.stderr,
        )
        return 3

    class Adapter(Node):
        def __init__(self) -> None:
            super().__init__("gz_tactile_adapter")
            d = self.declare_parameter
            self.contacts_topic = d("contacts_topic", "/fingertip/contacts").value
            self.frame_id = d("frame_id", "fingertip").value
            self.layout = TaxelLayout(
                d("rows", 5).value,
                d("cols", 5).value,
                float(d("tip_radius", 0.012).value),
                float(d("depth_stiffness", 2000.0).value),
            )
            self.base_offset = np.asarray(d("base_offset", [0.0, 0.0, 0.0]).value, float)
            rate = float(d("rate_hz", 10.0).value)
            if rate <= 0:
                raise ConfigError(f"rate_hz must be > 0, got {rate}")
            tactile_topic = d("tactile_topic", "/tactile").value
            # contacts_topic none: no tactile output, only the command split below.
            self.tactile = not (topic_disabled(self.contacts_topic) or topic_disabled(tactile_topic))
            if self.tactile:
                self.pub = self.create_publisher(TactileArray, tactile_topic, qos_profile_sensor_data)
                self.create_subscription(
                    Contacts, self.contacts_topic, self._on_contacts, qos_profile_sensor_data
                )
            self.create_subscription(
                JointState,
                d("joint_states_topic", "/joint_states").value,
                self._on_joints,
                qos_profile_sensor_data,
            )
            self.tip: np.ndarray | None = None
            self.acc = np.zeros((self.layout.rows, self.layout.cols), np.float32)
            self.n = 0
            self.max_speed = float(d("max_speed", 0.3).value)
            self.joint_pubs = []
            if d("forward_commands", True).value:
                # Gazebo's JointController (velocity mode) takes one gz.msgs.Double per joint; the bridge
                # maps these std_msgs/Float64 topics onto them (config/gz_bridge.yaml).
                prefix = d("joint_command_prefix", "/finger").value
                self.joint_pubs = [
                    self.create_publisher(Float64, f"{prefix}/{n}/cmd_vel", 10) for n in JOINT_NAMES
                ]
                self.create_subscription(
                    TwistStamped,
                    d("cmd_vel_topic", "/cmd_vel_ee").value,
                    self._on_cmd,
                    qos_profile_sensor_data,
                )
            if self.tactile:
                self.create_timer(1.0 / rate, self._publish)

        def _on_joints(self, msg: Any) -> None:
            tip = tip_center_from_joints(list(msg.name), list(msg.position), self.base_offset)
            if tip is not None:
                self.tip = tip

        def _on_contacts(self, msg: Any) -> None:
            if self.tip is None:
                self.get_logger().warning(
                    "no finger joint states yet; cannot place contacts on taxels", throttle_duration_sec=5.0
                )
                return
            self.acc += contacts_to_tactile(msg.contacts, self.tip, self.layout)
            self.n += 1

        def _on_cmd(self, msg: Any) -> None:
            v = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z], float)
            if not np.all(np.isfinite(v)):
                self.get_logger().warning("rejected non-finite command", throttle_duration_sec=2.0)
                v = np.zeros(3)
            speed = float(np.linalg.norm(v))
            if speed > self.max_speed:
                v *= self.max_speed / speed
            for pub, vi in zip(self.joint_pubs, v):
                pub.publish(Float64(data=float(vi)))

        def _publish(self) -> None:
            out = TactileArray()
            out.header.stamp = self.get_clock().now().to_msg()
            out.header.frame_id = self.frame_id
            out.sensor_model = "gazebo_contact_5x5"
            out.rows, out.cols, out.unit = self.layout.rows, self.layout.cols, "N"
            grid = self.acc / self.n if self.n else self.acc
            out.values = [float(x) for x in grid.ravel()]
            self.pub.publish(out)
            self.acc[:] = 0.0
            self.n = 0

    return spin_node(Adapter, "gz_tactile_adapter", argv)


if __name__ == "__main__":
    sys.exit(main())
