"""ROS 2 node running the MuJoCo tabletop scene in closed loop.

Publishes the same topics as the recorded bags (camera image + info, contact audio, tactile, joint
states, wrist wrench, the applied end-effector command, optionally ground truth) once per camera frame
and executes end-effector velocity commands (geometry_msgs/TwistStamped, frame "world") from
``/cmd_vel_ee`` (``policy: external``) or from its own scripted policy (``policy: scripted``, which
also publishes the commands it applies on ``/cmd_vel_ee``).

Timing
- ``use_sim_time: false``: a wall-clock timer at ``rate_hz``; stamps are the node's (system) clock.
- ``use_sim_time: true``: the node owns simulated time: it publishes ``/clock`` itself and steps on a
  steady-clock timer ``realtime_factor`` times faster than real time (``realtime_factor <= 0``: as fast
  as it can). Sim time starts at the bag epoch (1_700_000_000 s), not 0, because a zero stamp means
  "latest" to tf2 and "unset" to many tools.

Ground truth (``publish_ground_truth: true``) looks 8 frames ahead, so the node publishes frame t's
segmentation, depth, affordance and contact points when frame t+8 has been simulated, i.e. 0.8 s late,
stamped with t. Consumers match them by stamp.

Commands: a command older than ``command_timeout_s`` (wall time) is dropped and the finger holds
still. Non-finite commands and speeds above ``reject_speed`` are rejected (finger holds still), speeds
above ``max_speed`` are scaled down; each with a throttled warning. Angular velocity is ignored (the
finger only translates). The subscription is best effort, so it matches any publisher.

Run: ``python -m embodied_wm.ros.sim_node --ros-args --params-file config/sim.yaml``.
Services: ``~/reset`` (std_srvs/Trigger) starts the next episode (new scene for the next index).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from typing import Any

import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy._rclpy_pybind11 import RCLError
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock as ClockMsg
from std_srvs.srv import Trigger

from embodied_wm.errors import ConfigError
from embodied_wm.ros.spin import spin_node

os.environ.setdefault("MUJOCO_GL", "egl")

#: Parameter defaults (config/sim.yaml mirrors them).
DEFAULTS: dict[str, Any] = {
    "rate_hz": 10.0,
    "resolution": 64,
    "seed": 0,
    "episode": 0,
    "randomize": True,
    "policy": "scripted",
    "max_speed": 0.3,
    "reject_speed": 5.0,
    "command_timeout_s": 0.5,
    "realtime_factor": 1.0,
    "publish_ground_truth": False,
    "world_frame": "world",
    "camera_frame": "camera_optical_frame",
    "fingertip_frame": "fingertip",
    "topics.image": "/camera/image_raw",
    "topics.camera_info": "/camera/camera_info",
    "topics.audio": "/audio",
    "topics.tactile": "/tactile",
    "topics.joint_states": "/joint_states",
    "topics.cmd_vel": "/cmd_vel_ee",
    "topics.wrench": "/wrist_wrench",
    "topics.segmentation": "/ground_truth/segmentation",
    "topics.depth": "/ground_truth/depth",
    "topics.affordance": "/ground_truth/affordance",
    "topics.contact_points": "/ground_truth/contact_points",
    "topics.clock": "/clock",
}
POLICIES = ("external", "scripted")
_FLOATS = {"rate_hz", "max_speed", "reject_speed", "command_timeout_s", "realtime_factor"}
WARN_PERIOD_S = 2.0


def validate_command(
    lin: np.ndarray, ang: np.ndarray, frame_id: str, world_frame: str, max_speed: float, reject_speed: float
) -> tuple[np.ndarray | None, str | None]:
    """Check a twist command. Returns (linear velocity to apply or None if rejected, warning or None)."""
    if not (np.all(np.isfinite(lin)) and np.all(np.isfinite(ang))):
        return None, "rejected non-finite command (NaN/inf)"
    if frame_id not in ("", world_frame):
        return None, f"rejected command in frame {frame_id!r}; only {world_frame!r} is supported"
    speed = float(np.linalg.norm(lin))
    if speed > reject_speed:
        return None, f"rejected absurd speed {speed:.3g} m/s (> reject_speed {reject_speed:g})"
    warn = None
    if speed > max_speed:
        lin = lin * (max_speed / speed)
        warn = f"clamped speed {speed:.3g} m/s to max_speed {max_speed:g}"
    if np.any(ang != 0.0):
        warn = (warn + "; " if warn else "") + "ignored angular velocity (finger only translates)"
    return lin, warn


def main(argv: list[str] | None = None) -> int:
    # lazy: MuJoCo is optional (the simulator extra)
    from embodied_wm.sim import ground_truth as gt

    # lazy: MuJoCo is optional (the simulator extra)
    from embodied_wm.sim import messages as mk

    # lazy: MuJoCo is optional (the simulator extra)
    from embodied_wm.sim.episode import EPOCH_NS, Episode, FrameData

    class SimNode(Node):
        def __init__(self) -> None:
            super().__init__("sim_node")
            for name, default in DEFAULTS.items():
                desc = ParameterDescriptor(name=name, dynamic_typing=name in _FLOATS)
                self.declare_parameter(name, default, desc)
            p = {name: self.get_parameter(name).value for name in DEFAULTS}
            for name in _FLOATS:
                try:
                    p[name] = float(p[name])
                except (TypeError, ValueError) as exc:
                    raise ConfigError(f"parameter {name} must be a number, got {p[name]!r}") from exc
            if p["policy"] not in POLICIES:
                raise ConfigError(f"parameter policy must be one of {POLICIES}, got {p['policy']!r}")
            if p["rate_hz"] <= 0 or not math.isfinite(p["rate_hz"]):
                raise ConfigError(f"parameter rate_hz must be > 0, got {p['rate_hz']}")
            if not 0 < p["max_speed"] <= p["reject_speed"]:
                raise ConfigError("parameters must satisfy 0 < max_speed <= reject_speed")
            self.p = p
            self.sim_time = bool(self.get_parameter("use_sim_time").value)
            self.dt = 1.0 / p["rate_hz"]
            self.ids = mk.FrameIds(p["world_frame"], p["camera_frame"], p["fingertip_frame"])
            self.kit = mk.RclpyKit()
            sensor = qos_profile_sensor_data
            reliable = QoSProfile(
                history=HistoryPolicy.KEEP_LAST,
                depth=10,
                reliability=ReliabilityPolicy.RELIABLE,
                durability=DurabilityPolicy.VOLATILE,
            )
            qos = {
                "image": sensor,
                "audio": sensor,
                "tactile": sensor,
                "joint_states": sensor,
                "wrench": sensor,
                "camera_info": reliable,
                "cmd_vel": reliable,
            }
            keys = list(qos) + (list(mk.GROUND_TRUTH_KEYS) if p["publish_ground_truth"] else [])
            self.pubs = {
                k: self.create_publisher(
                    self.kit._class(mk.MSGTYPES[k]), p[f"topics.{k}"], qos.get(k, reliable)
                )
                for k in keys
            }
            if p["policy"] == "scripted":
                self.pubs_cmd = True
            else:
                self.pubs_cmd = False
                self.pubs.pop("cmd_vel")
                # Best effort matches both reliable and best-effort command publishers.
                self.create_subscription(
                    self.kit._class(mk.MSGTYPES["cmd_vel"]),
                    p["topics.cmd_vel"],
                    self._on_cmd,
                    qos_profile_sensor_data,
                )
            self.clock_pub = (
                self.create_publisher(ClockMsg, p["topics.clock"], reliable) if self.sim_time else None
            )
            self.create_service(Trigger, "~/reset", self._on_reset)
            # world -> camera optical frame on /tf_static (latched) when tf2_msgs is installed; the
            # camera pose is randomized per episode, so it is re-sent on every reset.
            self.tf_pub: Any = None
            try:
                self.tf_pub = self.create_publisher(
                    self.kit._class(mk.MSGTYPES["tf_static"]),
                    "/tf_static",
                    QoSProfile(
                        history=HistoryPolicy.KEEP_LAST,
                        depth=1,
                        reliability=ReliabilityPolicy.RELIABLE,
                        durability=DurabilityPolicy.TRANSIENT_LOCAL,
                    ),
                )
            except ImportError:
                self.get_logger().info("tf2_msgs not installed: not publishing the camera pose on /tf_static")
            self.cmd: np.ndarray | None = None
            self.cmd_wall = 0.0
            self.episode_index = int(p["episode"])
            self._new_episode()
            factor = p["realtime_factor"]
            period = self.dt if not self.sim_time else (self.dt / factor if factor > 0 else 0.0)
            # A steady clock drives stepping in both modes: with use_sim_time the node's own clock
            # follows the /clock we publish, which would never tick a timer on it.
            self.timer = self.create_timer(period, self._tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
            self.get_logger().info(
                f"sim_node: {p['resolution']}px at {p['rate_hz']:g} Hz, policy={p['policy']}, "
                f"{'sim time x' + format(factor, 'g') if self.sim_time else 'real time'}, "
                f"ground truth {'on (published 8 frames late)' if p['publish_ground_truth'] else 'off'}"
            )

        def _new_episode(self) -> None:
            old: Episode | None = getattr(self, "ep", None)
            start = EPOCH_NS if self.sim_time else self.get_clock().now().nanoseconds
            if old is not None:
                old.close()
                if self.sim_time:
                    start = old.stamp_ns  # sim time keeps running across resets
            self.ep: Episode = Episode(
                int(self.p["seed"]),
                self.episode_index,
                int(self.p["resolution"]),
                bool(self.p["randomize"]),
                self.dt,
                self.p["max_speed"],
                ground_truth=bool(self.p["publish_ground_truth"]),
                start_ns=start,
            )
            self.gt_buf: deque[FrameData] = deque()
            self.intr = self.ep.sim.intrinsics()
            if getattr(self, "tf_pub", None) is not None:
                cam_pos, cam_rot = self.ep.sim.camera_pose()
                self.tf_pub.publish(mk.tf_static(self.kit, self.ep.stamp_ns, self.ids, cam_pos, cam_rot))

        def _on_reset(self, _req: Any, resp: Any) -> Any:
            self.episode_index += 1
            self._new_episode()
            self.cmd = None
            resp.success = True
            resp.message = f"episode {self.episode_index} started"
            self.get_logger().info(resp.message)
            return resp

        def _on_cmd(self, msg: Any) -> None:
            lin = np.array([msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z], float)
            ang = np.array([msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z], float)
            v, warn = validate_command(
                lin, ang, msg.header.frame_id, self.ids.world, self.p["max_speed"], self.p["reject_speed"]
            )
            if warn:
                self.get_logger().warning(warn, throttle_duration_sec=WARN_PERIOD_S)
            # A rejected command stops the finger rather than keep executing an older one.
            self.cmd = v if v is not None else np.zeros(3)
            self.cmd_wall = time.monotonic()

        def _stamp_ns(self) -> int:
            if self.sim_time:
                return self.ep.stamp_ns
            return self.get_clock().now().nanoseconds

        def _tick(self) -> None:
            try:
                self._step_and_publish()
            except RCLError:
                # SIGINT/SIGTERM shut the context down while a tick was publishing: a normal exit.
                if self.context.ok():
                    raise

        def _step_and_publish(self) -> None:
            ep = self.ep
            if not self.sim_time:
                # Real time: frame stamps follow the wall clock the node's clock reports.
                ep.start_ns = self._stamp_ns() - ep.frame_index * ep.dt_ns
            frame = ep.observe()
            if self.clock_pub is not None:
                self.clock_pub.publish(ClockMsg(clock=mk.stamp(self.kit, frame.stamp_ns)))
            if self.p["policy"] == "scripted":
                action = ep.scripted_action()
            elif self.cmd is not None and time.monotonic() - self.cmd_wall <= self.p["command_timeout_s"]:
                action = np.concatenate([self.cmd, np.zeros(3)])
            else:
                action = np.zeros(6)
            frame.action = ep.step(action)
            for key, msg, _ in mk.sensor_messages(
                self.kit, frame, self.ids, int(self.p["resolution"]), self.intr
            ):
                if key in self.pubs:
                    self.pubs[key].publish(msg)
            if self.p["publish_ground_truth"]:
                self._publish_ground_truth(frame)

        def _publish_ground_truth(self, frame: FrameData) -> None:
            self.gt_buf.append(frame)
            if len(self.gt_buf) <= gt.HORIZON:
                return
            f = self.gt_buf.popleft()
            future = list(self.gt_buf)
            assert f.seg is not None
            maps = gt.affordance(
                f.seg,
                f.object_poses,
                [x.object_poses for x in future],
                [x.interval_contacts for x in future],
                self.ep.spec.objects,
                self.ep.sim.project,
                self.intr[0],
            )
            uv = self.ep.sim.project(f.tip_contacts)[0] if len(f.tip_contacts) else np.zeros((0, 2))
            for key, msg, _ in mk.ground_truth_messages(self.kit, f, self.ids, maps, self.ep.dt_ns, uv):
                self.pubs[key].publish(msg)

        def destroy_node(self) -> None:
            self.ep.close()
            super().destroy_node()

    return spin_node(SimNode, "sim_node", argv)


if __name__ == "__main__":
    sys.exit(main())
