"""evaluator_node: scores a running world model online against the camera frames that actually come.

Subscribes to the perception node's PredictedFrames (``predictions_topic``), optionally its AffordanceMap
(``affordance_topic``) and the simulator's ground truth (``ground_truth_topic``), and the camera. Camera
frames are buffered by stamp; a prediction made at t is scored once the frames for t + k·dt (nearest
within dt/2) have arrived, with the same code as the offline evaluator (eval/scoring.py, eval/metrics.py):
PSNR, PSNR on moving pixels, SSIM per horizon step, affordance AUROC/AP.

The baselines (copy-last, linear extrapolation) run here on the same camera stream at the model's
geometry, which the first PredictedFrames fixes (or the ``baseline.*`` parameters), so every online
figure has its baseline next to it, as DESIGN.md asks.

Outputs: one JSON line per scored prediction in ``results_path`` (the offline results.jsonl format;
latency is ``e2e``: node-clock arrival time minus the observation stamp, so it follows use_sim_time), a
running summary as JSON on ``~/summary`` (std_msgs/String) every ``summary_period_s`` of steady time, and
the same summary in ``summary_path`` at shutdown.

Run: ``evaluator_node --ros-args --params-file config/evaluator.yaml``.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import String

from embodied_wm.errors import ConfigError
from embodied_wm.eval.scoring import (
    FRAME_METRICS,
    HorizonScorer,
    PendingPrediction,
    ScoredPrediction,
    StatsTable,
)
from embodied_wm.io.stamps import to_ns
from embodied_wm.msg import AffordanceMap, PredictedFrames
from embodied_wm.observation import NS_PER_S, Observation
from embodied_wm.ros import params as P
from embodied_wm.ros import spin
from embodied_wm.ros.conversions import frames_msg_to_numpy
from embodied_wm.ros.qos import make_qos, output_qos
from embodied_wm.runtime.baselines import CopyLastBackend, LinearBackend
from embodied_wm.sensing.errors import SensingError
from embodied_wm.sensing.image import compressed_to_rgb, image_to_rgb

EVALUATOR_PARAMS: tuple[P.ParamSpec, ...] = (
    P.ParamSpec(
        "predictions_topic",
        "/perception_node/predicted_frames",
        "PredictedFrames topic to score",
        P.topic_name(allow_empty=False),
    ),
    P.ParamSpec(
        "affordance_topic",
        "/perception_node/affordance",
        "predicted AffordanceMap topic (none = do not score affordances)",
        P.topic_name(),
    ),
    P.ParamSpec(
        "ground_truth_topic",
        "/ground_truth/affordance",
        "ground-truth AffordanceMap topic (none = no ground truth)",
        P.topic_name(),
    ),
    P.ParamSpec("camera_topic", "/camera/image_raw", "camera topic", P.topic_name(allow_empty=False)),
    P.ParamSpec(
        "camera_transport",
        "raw",
        "raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage",
        P.one_of(P.CAMERA_TRANSPORTS),
    ),
    P.ParamSpec("baselines", True, "also score copy_last and linear on the camera stream", P.any_bool),
    P.ParamSpec(
        "baseline.image_size",
        0,
        "baseline frame size (square); 0 = the size of the model's predicted frames",
        P.integer(0, 4096),
    ),
    P.ParamSpec("baseline.horizon", 0, "baseline horizon K; 0 = the model's", P.integer(0, 1000)),
    P.ParamSpec(
        "baseline.dt_s",
        0.0,
        "baseline frame interval (s); 0 = the model's",
        P.number(0.0),
        number=True,
    ),
    P.ParamSpec(
        "results_path", "", "append one JSON line per scored prediction here ('' = none)", P.any_string
    ),
    P.ParamSpec(
        "summary_path", "", "write the final summary JSON here at shutdown ('' = none)", P.any_string
    ),
    P.ParamSpec("source", "", "value of the 'bag' field of result lines (e.g. a run name)", P.any_string),
    P.ParamSpec(
        "summary_period_s",
        1.0,
        "~/summary period (steady time, s)",
        P.number(0.0, 3600.0, strict_min=True),
        number=True,
    ),
    P.ParamSpec(
        "history_s",
        2.0,
        "camera history kept for predictions that arrive late (s)",
        P.number(0.0, 60.0, strict_min=True),
        number=True,
    ),
    P.ParamSpec(
        "max_pending",
        1000,
        "predictions waiting for targets at most (the oldest is scored early beyond this)",
        P.integer(1, 100000),
    ),
    P.ParamSpec(
        "qos.camera.reliability",
        "best_effort",
        "camera subscription reliability",
        P.one_of(P.RELIABILITY_NAMES),
    ),
    P.ParamSpec("qos.camera.depth", 10, "camera subscription depth", P.integer(1, 10000)),
    P.ParamSpec(
        "qos.predictions.reliability",
        "reliable",
        "predictions/affordance/ground-truth subscription reliability",
        P.one_of(P.RELIABILITY_NAMES),
    ),
    P.ParamSpec("qos.predictions.depth", 10, "predictions subscription depth", P.integer(1, 10000)),
)


def _stamp_ns(stamp: Any) -> int:
    return to_ns(stamp)


def _rgb_of(msg: Any) -> np.ndarray:
    """An rgb8/bgr8/mono8... sensor_msgs/Image as H x W x 3 uint8 RGB, through sensing/ (the decoder the
    Pipeline uses, so online targets equal offline ones)."""

    return np.asarray(image_to_rgb(msg))


class EvaluatorNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__("evaluator_node", **kwargs)
        P.declare_all(self, EVALUATOR_PARAMS)
        specs = P.spec_table(EVALUATOR_PARAMS)
        self.add_on_set_parameters_callback(P.make_set_callback(specs))
        cfg = P.read_all(self, EVALUATOR_PARAMS)
        bad = [r for name, v in cfg.items() if (r := P.validate(specs, name, v))]
        if bad:
            raise ConfigError("; ".join(bad))
        self.cfg = cfg
        self.lock = threading.Lock()
        self.scorer = HorizonScorer(history_ns=round(cfg["history_s"] * NS_PER_S))
        self.stats: StatsTable | None = None
        self.horizon: int | None = None
        self.dt_ns: int | None = None
        self.model_id = ""
        self.frames = 0
        self.invalid = 0
        self.scored = 0
        self.affordances: dict[int, tuple[tuple[str, ...], np.ndarray]] = {}
        self.baselines: dict[str, Any] = {}
        self.results: TextIO | None = None
        if cfg["results_path"]:
            path = Path(cfg["results_path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            self.results = open(path, "a")

        cam_qos = make_qos(cfg["qos.camera.reliability"], cfg["qos.camera.depth"])
        pred_qos = make_qos(cfg["qos.predictions.reliability"], cfg["qos.predictions.depth"])
        cam_type = CompressedImage if cfg["camera_transport"] == "compressed" else Image
        self.create_subscription(cam_type, cfg["camera_topic"], self._on_camera, cam_qos)
        self.create_subscription(PredictedFrames, cfg["predictions_topic"], self._on_prediction, pred_qos)
        if not P.topic_disabled(cfg["affordance_topic"]):
            self.create_subscription(AffordanceMap, cfg["affordance_topic"], self._on_affordance, pred_qos)
        if not P.topic_disabled(cfg["ground_truth_topic"]):
            self.create_subscription(
                AffordanceMap, cfg["ground_truth_topic"], self._on_ground_truth, pred_qos
            )
        self.summary_pub = self.create_publisher(String, "~/summary", output_qos())
        # Steady clock: the summary keeps coming while simulated time is paused.
        self.create_timer(
            cfg["summary_period_s"], self._publish_summary, clock=Clock(clock_type=ClockType.STEADY_TIME)
        )
        self.get_logger().info(
            f"scoring {cfg['predictions_topic']} against {cfg['camera_topic']}"
            + (f"; results -> {cfg['results_path']}" if cfg["results_path"] else "")
        )

    # ------------------------------------------------------------------------------ callbacks
    def _on_camera(self, msg: Any) -> None:
        try:
            if self.cfg["camera_transport"] == "compressed":
                rgb = np.asarray(compressed_to_rgb(msg))
            else:
                rgb = _rgb_of(msg)
        except SensingError as exc:
            self.invalid += 1
            self.get_logger().warning(f"dropping camera frame: {exc}", throttle_duration_sec=5.0)
            return
        stamp = _stamp_ns(msg.header.stamp)
        with self.lock:
            self.frames += 1
            self.scorer.add_frame(stamp, rgb)
            self._run_baselines(stamp, rgb)
            self._drain(self.scorer.poll())

    def _on_prediction(self, msg: Any) -> None:
        stamp = _stamp_ns(msg.header.stamp)
        try:
            stamps, frames = frames_msg_to_numpy(msg)
        except ValueError as exc:
            self.get_logger().warning(
                f"dropping PredictedFrames at {stamp}: {exc}", throttle_duration_sec=5.0
            )
            return
        if frames.shape[0] == 0 or frames.shape[0] != stamps.shape[0]:
            return
        recv_ns = self.get_clock().now().nanoseconds
        with self.lock:
            self._set_geometry(frames, stamps, stamp, msg.model_id)
            aff = self.affordances.pop(stamp, None)
            self.scorer.add_prediction(
                PendingPrediction(
                    method="model",
                    stamp_ns=stamp,
                    frame_stamps_ns=stamps,
                    frames=frames,
                    affordance=aff[1] if aff else None,
                    affordance_channels=aff[0] if aff else (),
                    timings_ms={"e2e": (recv_ns - stamp) / 1e6},
                    tags={"bag": self.cfg["source"]},
                )
            )
            self._limit_pending()
            self._drain(self.scorer.poll())

    def _on_affordance(self, msg: Any) -> None:
        stamp = _stamp_ns(msg.header.stamp)
        c, h, w = len(msg.channels), int(msg.height), int(msg.width)
        data = np.asarray(msg.data, np.float32)
        if c == 0 or data.size != c * h * w:
            return
        item = (tuple(str(x) for x in msg.channels), data.reshape(c, h, w))
        with self.lock:
            # The map may come before or after its PredictedFrames: attach to a pending one, else keep.
            for p in self.scorer.pending:
                if p.method == "model" and p.stamp_ns == stamp and p.affordance is None:
                    p.affordance, p.affordance_channels = item[1], item[0]
                    return
            self.affordances[stamp] = item
            if len(self.affordances) > 64:
                self.affordances.pop(min(self.affordances))

    def _on_ground_truth(self, msg: Any) -> None:
        c, h, w = len(msg.channels), int(msg.height), int(msg.width)
        data = np.asarray(msg.data, np.float32)
        if c == 0 or data.size != c * h * w:
            return
        with self.lock:
            self.scorer.add_ground_truth(_stamp_ns(msg.header.stamp), msg.channels, data.reshape(c, h, w))

    # ------------------------------------------------------------------------------ internals
    def _set_geometry(self, frames: np.ndarray, stamps: np.ndarray, stamp: int, model_id: str) -> None:
        """The first prediction fixes the horizon, dt and frame size the baselines use."""
        if self.stats is not None:
            return
        self.horizon = int(frames.shape[0])
        self.dt_ns = int(stamps[0] - stamp) if len(stamps) else NS_PER_S // 10
        self.model_id = str(model_id)
        self.stats = StatsTable(self.horizon)
        if self.cfg["baselines"]:
            size = int(self.cfg["baseline.image_size"])
            hw = (size, size) if size else (int(frames.shape[1]), int(frames.shape[2]))
            k = int(self.cfg["baseline.horizon"]) or self.horizon
            dt = round(self.cfg["baseline.dt_s"] * NS_PER_S) or self.dt_ns
            self.baselines = {
                "copy_last": CopyLastBackend(image_size=hw, horizon=k, dt_ns=dt),
                "linear": LinearBackend(image_size=hw, horizon=k, dt_ns=dt),
            }
            if k != self.horizon:
                self.get_logger().warning(
                    f"baseline horizon {k} differs from the model's {self.horizon}: baseline steps beyond "
                    "the model's are not reported"
                )

    def _run_baselines(self, stamp: int, rgb: np.ndarray) -> None:
        for name, backend in self.baselines.items():
            pred = backend.predict(Observation(stamp_ns=stamp, image=rgb))
            self.scorer.add_prediction(
                PendingPrediction(
                    method=name,
                    stamp_ns=stamp,
                    frame_stamps_ns=np.asarray(pred.frame_stamps_ns, np.int64),
                    frames=pred.frames,
                    timings_ms=dict(pred.timings_ms),
                    tags={"bag": self.cfg["source"]},
                )
            )

    def _limit_pending(self) -> None:
        excess = len(self.scorer.pending) - int(self.cfg["max_pending"])
        if excess > 0:
            # Targets that never come (camera stopped): score the oldest with what there is.
            old, self.scorer.pending = self.scorer.pending[:excess], self.scorer.pending[excess:]
            self._drain([self.scorer.score(p) for p in old])

    def _drain(self, scored: list[ScoredPrediction]) -> None:
        for s in scored:
            if self.stats is None:
                self.stats = StatsTable(len(s.psnr))
            if len(s.psnr) != self.stats.horizon:
                continue  # a model switch mid-run: only the first geometry is summarised
            self.stats.add(s)
            self.scored += 1
            if self.results is not None:
                self.results.write(json.dumps(s.record(), allow_nan=False) + "\n")
                self.results.flush()

    def summary(self) -> dict[str, Any]:
        with self.lock:
            out: dict[str, Any] = {
                "frames": self.frames,
                "invalid_frames": self.invalid,
                "scored": self.scored,
                "pending": len(self.scorer.pending),
                "model_id": self.model_id,
                "horizon_s": [
                    round((k + 1) * (self.dt_ns or 0) / NS_PER_S, 9) for k in range(self.horizon or 0)
                ],
                "methods": {},
            }
            if self.stats is None:
                return out
            for method in self.stats.methods():
                s = self.stats.get("clean", method).summary()
                out["methods"][method] = {m: s[m] for m in FRAME_METRICS}
                out["methods"][method]["predictions"] = s["predictions"]
                if method == "model":
                    if s.get("affordance"):
                        out["affordance"] = {
                            ch: {"auroc": v["auroc"], "ap": v["ap"]} for ch, v in s["affordance"].items()
                        }
                    out["latency_ms"] = s.get("latency_ms", {})
            return out

    def _publish_summary(self) -> None:
        self.summary_pub.publish(String(data=json.dumps(self.summary(), allow_nan=False)))

    def close(self) -> None:
        """Score what is still pending with the frames there are, write the summary, close files."""
        with self.lock:
            self._drain(self.scorer.flush())
        if self.cfg["summary_path"]:
            path = Path(self.cfg["summary_path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(self.summary(), indent=2, allow_nan=False))
        if self.results is not None:
            self.results.close()
            self.results = None


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else ["evaluator_node", *argv])
    try:
        spin.init(args)
    except RuntimeError as exc:  # rcl's RCLError: malformed --ros-args
        print(f"evaluator_node: error: {exc}", file=sys.stderr)
        return 1
    node: EvaluatorNode | None = None
    executor = SingleThreadedExecutor()
    rc = 0
    try:
        node = EvaluatorNode()
        executor.add_node(node)
        spin.spin_until_shutdown(executor)
    except ExternalShutdownException:
        pass
    except (ValueError, OSError, ParameterException) as exc:  # bad parameters or an unwritable results path
        print(f"evaluator_node: error: {exc}", file=sys.stderr)
        rc = 1
    finally:
        if node is not None:
            # close() scores what is pending and writes the summary: a SIGINT must not lose it.
            spin.quietly("evaluator_node", "close", node.close)
            executor.remove_node(node)
            spin.quietly("evaluator_node", "destroy node", node.destroy_node)
        spin.quietly("evaluator_node", "executor", lambda: executor.shutdown(timeout_sec=1.0))
        spin.shutdown_context()
    return rc


if __name__ == "__main__":
    sys.exit(main())
