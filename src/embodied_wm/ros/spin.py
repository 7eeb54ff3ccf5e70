"""The common `main()` body of our simple (non-lifecycle) nodes: init, spin, clean shutdown, and a
one-line error with exit status 2 for bad parameters instead of a traceback."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException


def spin_node(make_node: Callable[[], Any], name: str, argv: Sequence[str] | None = None) -> int:
    rclpy.init(args=list(sys.argv if argv is None else argv))
    node = None
    try:
        node = make_node()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except ValueError as exc:  # parameter validation
        print(f"{name}: {exc}", file=sys.stderr)
        return 2
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
