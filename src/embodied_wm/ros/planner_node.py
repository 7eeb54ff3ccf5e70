"""planner_node: an example model-predictive controller over perception_node's ~/predict_rollout.

Each control step (one per PredictedFrames message, i.e. at the camera rate) it samples candidate
end-effector velocity sequences, asks the world model to score them (``embodied_wm/srv/PredictRollout``),
and publishes the first action of the best sequence on ``action_topic`` (geometry_msgs/TwistStamped).

* ``method: cem`` (default): the cross-entropy method. ``iterations`` rounds per step, each refitting a
  diagonal Gaussian over the K x |active_dims| sequence to the best ``elite_fraction`` of the candidates;
  the mean is shifted one step forward to warm-start the next control step (receding horizon).
* ``method: random``: random shooting, one round of uniform samples.

Candidates vary only ``active_dims`` (default vx, vy: a planar push); the other dimensions stay 0, and
every linear component is clipped to +-``max_speed``. While a query is in flight the controller keeps
executing the previous plan, step by step, so commands keep coming at the camera rate.

Scoring happens in the perception node. With ``objective: pixel`` (default) the request carries
``designated_pixels`` (on the object), ``goal_pixels`` (one each) and optionally ``effector_pixel``, and
the service scores the designated pixels' expected distance to their goals through the model's predicted
motion (``planning.pixel_goal``; ``pixel_weight``, ``approach_weight``) on its scores-only path. Without
designated pixels, or with ``objective: image``, the goal image (``goal_image`` file or the latest message
on ``goal_topic``) enters as -MSE of the last predicted frame, weighted by ``goal_weight``
(``perception_node.score_rollout``). The predicted ``contact`` affordance adds ``contact_weight`` (0 by
default: nonzero makes every query decode full frames). The model horizon
K and step dt are read from the PredictedFrames messages, so the planner always asks with the right K.

Run: ``planner_node --ros-args --params-file config/planner.yaml -p goal_image:=goal.png``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from geometry_msgs.msg import TwistStamped
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import Image

from embodied_wm.msg import PredictedFrames
from embodied_wm.observation import ACTION_DIM
from embodied_wm.planning.cem import CemSampler
from embodied_wm.ros import conversions as conv
from embodied_wm.ros import params as P
from embodied_wm.ros import spin
from embodied_wm.ros.qos import output_qos
from embodied_wm.sensing.errors import SensingError
from embodied_wm.sensing.image import compressed_to_rgb
from embodied_wm.srv import PredictRollout


def load_goal_image(path: str | Path) -> np.ndarray:
    """An image file (JPEG, PNG, BMP, WebP) -> H x W x 3 uint8 RGB, through the camera's compressed-image
    decoder: the size its header declares is checked against the pixel limit before decoding
    (SensingError). A missing or unreadable file is FileNotFoundError."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise FileNotFoundError(f"cannot read goal image {path}: {exc}") from exc
    try:
        return np.ascontiguousarray(compressed_to_rgb(SimpleNamespace(format="", data=data)))
    except SensingError as exc:  # a ValueError: decompression bomb, TIFF, corrupt data
        raise SensingError(f"goal image {path}: {exc}", exc.reason) from exc


class PlannerNode(Node):
    def __init__(self, node_name: str = "planner_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._specs = P.spec_table(P.PLANNER_PARAMS)
        self.add_on_set_parameters_callback(P.make_set_callback(self._specs, self._on_param_change))
        P.declare_all(self, P.PLANNER_PARAMS)
        self.cfg = P.read_all(self, P.PLANNER_PARAMS)

        self._srv_type = PredictRollout
        self._client = self.create_client(PredictRollout, self.cfg["service"])
        self._cmd_pub = self.create_publisher(TwistStamped, self.cfg["action_topic"], output_qos(10))
        self.create_subscription(
            PredictedFrames, self.cfg["predictions_topic"], self._on_prediction, output_qos(5)
        )
        self._goal: Image | None = None
        if self.cfg["goal_image"]:
            rgb = load_goal_image(self.cfg["goal_image"])
            self._goal = conv.rgb_to_image_msg(rgb, 0, "")
            self.get_logger().info(f"goal image {self.cfg['goal_image']} ({rgb.shape[1]}x{rgb.shape[0]})")
        if not P.topic_disabled(self.cfg["goal_topic"]):
            self.create_subscription(Image, self.cfg["goal_topic"], self._on_goal, output_qos(1))
        self._sampler: CemSampler | None = None
        self._plan: np.ndarray | None = None  # K x action_dim, the best sequence of the last query
        self._plan_step = 0
        self._in_flight = False
        self._iteration = 0
        self._samples: np.ndarray | None = None
        self._steps = 0
        self._stamp_ns = 0
        self._log = open(self.cfg["log_path"], "a") if self.cfg["log_path"] else None
        self._last_message = ""
        self._future: Any = None
        self._closing = False
        self._warned_pixels = False
        self._objective = ""
        self.done = False

    # ------------------------------------------------------------------------------------ inputs
    def _on_goal(self, msg: Image) -> None:
        self._goal = msg

    def _on_prediction(self, msg: PredictedFrames) -> None:
        if self.done:
            return
        k = len(msg.offsets)
        if k == 0:
            return
        if self._sampler is None or self._sampler.horizon != k:
            c = self.cfg
            self._sampler = CemSampler(
                k, c["active_dims"], c["max_speed"], c["init_std"], c["elite_fraction"], int(c["seed"])
            )
            self._plan = None
            self.get_logger().info(f"model horizon {k}; planning over dims {c['active_dims']}")
        self._stamp_ns = conv.time_to_ns(msg.header.stamp)
        self._execute_step()
        if not self._in_flight and self._client.service_is_ready():
            self._iteration = 0
            self._query()

    # ---------------------------------------------------------------------------------- planning
    def _query(self) -> None:
        assert self._sampler is not None
        c = self.cfg
        uniform = c["method"] == "random"
        self._samples = self._sampler.sample(int(c["num_candidates"]), uniform=uniform)
        full = self._sampler.full(self._samples)
        req = self._srv_type.Request()
        req.num_candidates, req.horizon, req.action_dim = full.shape[0], full.shape[1], full.shape[2]
        req.actions = full.reshape(-1).tolist()
        channels = {"contact": float(c["contact_weight"])}
        pixels = self._pixel_request(req)
        self._objective = "pixel" if pixels else "image"
        if pixels:
            channels.update(pixel=float(c["pixel_weight"]), approach=float(c["approach_weight"]))
        elif self._goal is not None:
            req.goal = self._goal
            channels["goal"] = float(c["goal_weight"])
        req.score_channels = list(channels)
        req.score_weights = list(channels.values())
        req.return_predictions = False
        self._in_flight = True
        self._future = self._client.call_async(req)
        self._future.add_done_callback(self._on_response)

    def _pixel_request(self, req: Any) -> bool:
        """Fill the request's pixel-goal fields from the parameters; False when the pixel objective is
        off or has no designated pixels (then the goal image, if any, is used: said once in the log)."""
        c = self.cfg
        if c["objective"] != "pixel":
            return False
        designated, goals = list(c["designated_pixels"] or []), list(c["goal_pixels"] or [])
        if not designated or len(designated) != len(goals):
            if not self._warned_pixels:
                self.get_logger().warning(
                    "objective 'pixel' needs designated_pixels and as many goal_pixels "
                    f"(got {len(designated)} and {len(goals)} values); using the goal image instead"
                )
                self._warned_pixels = True
            return False
        req.designated_pixels = [float(x) for x in designated]
        req.goal_pixels = [float(x) for x in goals]
        req.effector_pixel = [float(x) for x in c["effector_pixel"] or []]
        return True

    def _on_param_change(self, name: str, value: Any) -> None:
        # Also called while the parameters are declared, before self.cfg exists.
        if self._specs[name].live and hasattr(self, "cfg"):
            self.cfg[name] = [float(x) for x in value or []]
            self._warned_pixels = False

    def _on_response(self, future: Any) -> None:
        self._in_flight = False
        if self._closing or future.cancelled():
            return  # cancelled by close() at shutdown: there is no response
        try:
            resp = future.result()
        except Exception as exc:  # a vanished service: try again next step
            self.get_logger().warning(f"predict_rollout failed: {exc}", throttle_duration_sec=5.0)
            return
        if resp is None:
            return
        if not resp.success:
            self.get_logger().warning(f"predict_rollout rejected: {resp.message}", throttle_duration_sec=5.0)
            return
        if resp.message != self._last_message and "ignored" in resp.message:
            self.get_logger().info(resp.message)
        self._last_message = resp.message
        assert self._sampler is not None and self._samples is not None
        scores = np.asarray(resp.scores, np.float32)
        self._iteration += 1
        if self.cfg["method"] == "cem":
            self._sampler.refit(self._samples, scores)
            if self._iteration < int(self.cfg["iterations"]):
                self._query()
                return
        best = self._samples[int(resp.best_index)]
        self._plan = self._sampler.full(best[None])[0]
        self._plan_step = 0
        if self._log is not None:
            self._log.write(
                json.dumps(
                    {
                        "step": self._steps,
                        "stamp_ns": self._stamp_ns,
                        "best_score": float(scores.max()),
                        "score_spread": float(scores.max() - scores.min()),
                        "first_action": self._plan[0].round(5).tolist(),
                        "model_id": resp.model_id,
                        "objective": self._objective,
                    }
                )
                + "\n"
            )
            self._log.flush()
        self._sampler.shift()

    def _execute_step(self) -> None:
        """Publish the next action of the current plan (zero twist until there is a plan)."""
        action = np.zeros(ACTION_DIM, np.float32)
        if self._plan is not None and self._plan_step < len(self._plan):
            action = self._plan[self._plan_step]
            self._plan_step += 1
        self.publish_twist(action)
        self._steps += 1
        max_steps = int(self.cfg["max_steps"])
        if max_steps and self._steps >= max_steps:
            self.publish_twist(np.zeros(ACTION_DIM, np.float32))
            self.done = True
            self.get_logger().info(f"max_steps {max_steps} reached; stopped")

    def publish_twist(self, action: np.ndarray) -> None:
        msg = TwistStamped()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.header.frame_id = self.cfg["command_frame"]
        a = [float(x) for x in action]
        msg.twist.linear.x, msg.twist.linear.y, msg.twist.linear.z = a[0], a[1], a[2]
        msg.twist.angular.x, msg.twist.angular.y, msg.twist.angular.z = a[3], a[4], a[5]
        self._cmd_pub.publish(msg)

    def close(self) -> None:
        self._closing = True
        if self._future is not None and not self._future.done():
            # A query still in flight at shutdown: cancel it so rclpy does not report it as unretrieved.
            self._future.cancel()
        if self._log is not None:
            self._log.close()
            self._log = None


def main(argv: Sequence[str] | None = None) -> int:
    spin.init(sys.argv if argv is None else ["planner_node", *argv])
    node: PlannerNode | None = None
    executor = SingleThreadedExecutor()
    rc = 0
    try:
        node = PlannerNode()
        executor.add_node(node)
        planner = node
        spin.spin_until_shutdown(executor, until=lambda: planner.done)
    except ExternalShutdownException:
        pass
    except Exception as exc:  # bad parameters or goal file: one line, exit 1
        print(f"planner_node: {type(exc).__name__}: {exc}", file=sys.stderr)
        rc = 1
    finally:
        if node is not None:
            stopping = node
            # Leave the robot standing still; the context is still valid here (it goes down last).
            spin.quietly("planner_node", "zero twist", lambda: stopping.publish_twist(np.zeros(ACTION_DIM)))
            spin.quietly("planner_node", "close", stopping.close)
            spin.quietly("planner_node", "destroy node", stopping.destroy_node)
        spin.quietly("planner_node", "executor", lambda: executor.shutdown(timeout_sec=1.0))
        spin.shutdown_context()
    return rc


if __name__ == "__main__":
    sys.exit(main())
