"""Pass-through node: the transport floor for the end-to-end benchmark.

It subscribes to the camera image and republishes it unchanged on another topic, both reliable. A receiver
that compares the image's stamp (the sensor's publish time) with its own receipt time measures what two
DDS hops through a minimal rclpy node cost on this machine: the least any Python node that consumes the
camera and publishes a result can add. perception_node's latency is judged against that floor.

Modes:
  typed (default): take the ``sensor_msgs/Image`` as a Python message and publish the same object, i.e. the
    deserialize + serialize work every rclpy node that looks at pixels pays;
  raw: take and republish the serialized bytes (no Python message at all): the pure DDS floor.

Run: ``python -m embodied_wm.ros.passthrough_node [--in /camera/image_raw] [--out /passthrough/image_raw]``.
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import Image

DEFAULT_IN = "/camera/image_raw"
DEFAULT_OUT = "/passthrough/image_raw"


class PassThrough:
    """Wires one subscription to one publisher on ``node``; counts what went through."""

    def __init__(
        self,
        node: Any,
        in_topic: str = DEFAULT_IN,
        out_topic: str = DEFAULT_OUT,
        raw: bool = False,
        depth: int = 5,
    ) -> None:
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST, depth=int(depth), reliability=ReliabilityPolicy.RELIABLE
        )
        self.count = 0
        self._pub = node.create_publisher(Image, out_topic, qos)
        # Publisher.publish takes either an Image or the serialized bytes, so one callback serves both modes.
        self._sub = node.create_subscription(Image, in_topic, self._on_msg, qos, raw=raw)

    def _on_msg(self, msg: Any) -> None:
        self._pub.publish(msg)
        self.count += 1


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv if argv is None else ["passthrough_node", *argv])
    p = argparse.ArgumentParser(prog="passthrough_node", description=__doc__.splitlines()[0])
    p.add_argument("--in", dest="in_topic", default=DEFAULT_IN)
    p.add_argument("--out", dest="out_topic", default=DEFAULT_OUT)
    p.add_argument("--raw", action="store_true", help="republish serialized bytes (no Python message)")
    p.add_argument("--depth", type=int, default=5)
    args = p.parse_args(remove_ros_args(raw_argv)[1:])

    rclpy.init(args=raw_argv)
    node = rclpy.create_node("passthrough_node")
    relay = PassThrough(node, args.in_topic, args.out_topic, args.raw, args.depth)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    # rclpy's default handler turns SIGINT into shutdown; treat SIGTERM (what the benchmarks send) the same.
    signal.signal(signal.SIGTERM, lambda *_: rclpy.try_shutdown())
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.get_logger().info(f"relayed {relay.count} images")
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
