"""The online evaluator (evaluator_node, over DDS) and the offline replay agree on the same bag.

The offline run scores a stand-in "model" (linear extrapolation at its own geometry, so no torch is
needed) plus the baselines. The test process then publishes the bag's camera frames and the very
PredictedFrames the offline run produced; evaluator_node, started as a subprocess, must write the same
per-prediction metrics for the model and for the baselines it computes online."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import requires_ros

from embodied_wm.eval import replay
from embodied_wm.eval.synthetic import CAMERA_TOPIC, SceneConfig, write_bag
from embodied_wm.observation import NS_PER_S

pytestmark = [pytest.mark.ros]

MODEL_SIZE = (40, 40)
MODEL_K = 4


class _RecordingModel:
    """A LinearBackend posing as the model, keeping every Prediction so the test can publish them."""

    def __init__(self) -> None:
        from embodied_wm.runtime.baselines import LinearBackend

        self.inner = LinearBackend(image_size=MODEL_SIZE, horizon=MODEL_K, dt_ns=NS_PER_S // 10)
        self.preds: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def predict(self, obs: Any, actions: Any = None) -> Any:
        pred = self.inner.predict(obs, actions)
        self.preds.append(pred)
        return pred


def _offline(bag: Path, out: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[dict], list[Any]]:
    model = _RecordingModel()
    real = replay.create_method_backend

    def fake(method: str, opts: replay.EvalOptions, ref: Any = None) -> Any:
        return model if method == "model" else real(method, opts, ref)

    monkeypatch.setattr(replay, "create_method_backend", fake)
    ref = replay.ModelInfo(
        methods=["model", *replay.BASELINES],
        model_id="stand-in",
        backend="linear",
        horizon=MODEL_K,
        dt_ns=NS_PER_S // 10,
        image_size=MODEL_SIZE,
        affordance_channels=(),
    )
    res = replay.evaluate_bag(bag, replay.EvalOptions(samples_per_bag=0), ref, out)
    assert res.frames > 0
    return [json.loads(x) for x in out.read_text().splitlines()], model.preds


class _Probe:
    def __init__(self) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("evaluator_test_probe", context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)

    def spin_until(self, cond: Callable[[], bool], timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
            if cond():
                return True
        return False

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        self.ctx.try_shutdown()


@pytest.fixture()
def probe() -> Iterator[_Probe]:
    p = _Probe()
    yield p
    p.close()


def _key(rec: dict) -> tuple[str, int]:
    return rec["method"], rec["stamp_ns"]


@requires_ros
def test_online_and_offline_evaluators_agree(
    tmp_path: Path, spawn: Callable, probe: _Probe, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embodied_wm.msg import PredictedFrames
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from embodied_wm.io.bag import iter_bag_messages
    from embodied_wm.ros import conversions as conv
    from embodied_wm.ros.qos import make_qos
    from embodied_wm.sensing.image import image_to_rgb

    bag = write_bag(tmp_path / "bag", SceneConfig(frames=14, res=48))
    offline, preds = _offline(bag, tmp_path / "offline.jsonl", monkeypatch)
    online_path = tmp_path / "online.jsonl"
    proc = spawn(
        [
            "python",
            "-m",
            "embodied_wm.ros.evaluator_node",
            "--ros-args",
            "--params-file",
            "config/evaluator.yaml",
            "-p",
            f"results_path:={online_path}",
            "-p",
            f"source:={bag}",
            "-p",
            "summary_period_s:=0.3",
            "-p",
            "affordance_topic:=''",
            "-p",
            "ground_truth_topic:=''",
            "-p",
            "qos.camera.reliability:=reliable",
            "-p",
            "qos.camera.depth:=100",
            "-p",
            "qos.predictions.depth:=100",
        ],
        "evaluator_node",
    )
    qos = make_qos("reliable", 100)
    cam_pub = probe.node.create_publisher(Image, CAMERA_TOPIC, qos)
    pred_pub = probe.node.create_publisher(PredictedFrames, "/perception_node/predicted_frames", qos)
    summaries: list[dict] = []
    probe.node.create_subscription(
        String,
        "/evaluator_node/summary",
        lambda m: summaries.append(json.loads(m.data)),
        make_qos("reliable", 10),
    )
    assert probe.spin_until(
        lambda: (
            cam_pub.get_subscription_count() > 0 and pred_pub.get_subscription_count() > 0 and bool(summaries)
        ),
        30.0,
    ), "evaluator_node did not come up"

    by_stamp = {int(p.stamp_ns): p for p in preds}
    for bm in iter_bag_messages(bag, topics=[CAMERA_TOPIC]):
        stamp = int(bm.msg.header.stamp.sec) * NS_PER_S + int(bm.msg.header.stamp.nanosec)
        cam_pub.publish(
            conv.rgb_to_image_msg(np.asarray(image_to_rgb(bm.msg)), stamp, "camera_optical_frame")
        )
        if stamp in by_stamp:  # as the perception node would: the prediction follows its frame
            pred_pub.publish(conv.prediction_to_frames_msg(by_stamp[stamp]))
        probe.spin_until(lambda: False, 0.02)

    n_model = sum(1 for r in offline if r["method"] == "model")
    # A prediction settles once a frame newer than its last target + dt/2 arrives: the last K + 1 only
    # settle at shutdown (flush).
    settled = n_model - MODEL_K - 1
    assert probe.spin_until(
        lambda: (
            bool(summaries) and summaries[-1]["methods"].get("model", {}).get("predictions", 0) >= settled
        ),
        30.0,
    ), summaries[-1] if summaries else "no summary"
    proc.send_signal(signal.SIGINT)  # graceful: the node flushes pending predictions and closes the file
    assert proc.wait(timeout=20) == 0

    online = {_key(r): r for r in map(json.loads, online_path.read_text().splitlines())}
    off = {_key(r): r for r in offline}
    model_keys = [k for k in off if k[0] == "model"]
    assert model_keys and all(k in online for k in model_keys)
    first_baseline = min(k[1] for k in online if k[0] == "copy_last")
    compared = 0
    for key, rec in off.items():
        method, stamp = key
        if method != "model" and (stamp <= first_baseline + (NS_PER_S // 10 if method == "linear" else 0)):
            continue  # online baselines start with the first model prediction (they need its geometry)
        assert key in online, key
        got = online[key]
        assert got["bag"] == str(bag)
        for m in ("psnr", "psnr_moving", "ssim", "target_stamp_ns"):
            assert got[m] == rec[m], (key, m, got[m], rec[m])
        compared += 1
    # Every model prediction, and the baselines once they started (a few frames in, depending on DDS order).
    assert compared >= n_model + 2 * (n_model - 6)
    last = summaries[-1]
    assert set(last["methods"]) == {"model", "copy_last", "linear"} and last["frames"] == 14
    assert "e2e" in last["latency_ms"]


@requires_ros
def test_config_file_mirrors_parameter_table() -> None:
    import yaml

    from embodied_wm.ros.evaluator_node import EVALUATOR_PARAMS
    from embodied_wm.ros.params import flatten

    doc = yaml.safe_load((Path(__file__).resolve().parents[1] / "config" / "evaluator.yaml").read_text())
    values = flatten(doc["/**/evaluator_node"]["ros__parameters"])
    assert values == {p.name: p.default for p in EVALUATOR_PARAMS}
