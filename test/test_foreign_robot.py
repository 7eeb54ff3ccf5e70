"""Bring your own robot: bags of a robot that is not the simulator's go through train -> eval ->
perception_node over DDS, and every stage honours the data's rate, sensor shapes and topics.

The robot: camera on /front_cam/image_raw at 20 Hz, a 1x25 taxel strip on /finger/taxels, four joints
(proprio 8) on /arm/joint_states, TwistStamped on /arm/cmd_twist, no microphone. Training derives the
config from the bags (``--config tiny --dt auto``); eval and the node then accept every modality the
model was trained with (no ``bad_shape``), stamp predictions t + k·dt of the data (dt = 50 ms), and the
trainer's validation and eval score the same predictions identically (one scorer).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import requires_ros

pytestmark = pytest.mark.slow

FPS = 20.0
DT_NS = 50_000_000
TOPICS = {
    "camera": "/front_cam/image_raw",
    "tactile": "/finger/taxels",
    "joint_states": "/arm/joint_states",
    "action": "/arm/cmd_twist",
}


def _scene(seed: int):
    from embodied_wm.eval.synthetic import SceneConfig

    return SceneConfig(
        frames=40, fps=FPS, seed=seed, velocity=(1.5, 0.5), audio=False, tactile_shape=(1, 25),
        joint_count=4, camera_topic=TOPICS["camera"], tactile_topic=TOPICS["tactile"],
        joint_topic=TOPICS["joint_states"], action_topic=TOPICS["action"],
    )


@pytest.fixture(scope="module")
def robot(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two foreign bags, a model trained on them (a few steps) and its eval output."""
    from embodied_wm.eval.synthetic import write_bag

    root = tmp_path_factory.mktemp("foreign")
    bags = root / "bags"
    for i in range(2):
        write_bag(bags / f"ep{i}", _scene(i))
    model, cache, ev = root / "model", root / "cache", root / "eval"
    train = subprocess.run(
        [sys.executable, "-m", "embodied_wm.cli", "train", "--data", str(bags), "--config", "tiny",
         "--dt", "auto", "--out", str(model), "--steps", "4", "--batch", "4", "--val-every", "4",
         "--val-fraction", "0.5", "--cache-dir", str(cache), "--threads", "1", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    (root / "train.log").write_text(train.stderr)
    evaluation = subprocess.run(
        [sys.executable, "-m", "embodied_wm.cli", "eval", "--model", str(model), "--backend", "pytorch",
         str(bags), "--out", str(ev), "--no-report"],
        capture_output=True, text=True, timeout=300,
    )
    assert evaluation.returncode == 0, evaluation.stderr[-3000:]
    (root / "eval.log").write_text(evaluation.stdout + evaluation.stderr)
    return {"bags": bags, "model": model, "cache": cache, "eval": ev, "root": root}


def test_training_derives_the_config_and_dt_from_the_bags(robot: dict[str, Path]) -> None:
    cfg = json.loads((robot["model"] / "config.json").read_text())["config"]
    assert cfg["tactile_shape"] == [1, 25] and cfg["proprio_dim"] == 8 and cfg["action_dim"] == 6
    assert cfg["dt_s"] == pytest.approx(0.05)  # --dt auto: the camera's median period
    metrics = json.loads((robot["model"] / "metrics.json").read_text())
    data = metrics["data"]
    assert data["config_source"] == "derived from the bags"
    assert data["changes"]["tactile_shape"] == {"template": [5, 5], "data": [1, 25]}
    assert data["changes"]["proprio_dim"] == {"template": 6, "data": 8}
    assert data["absent"] == ["audio"]
    assert data["data_spec"]["topics"] == {
        "camera": TOPICS["camera"], "tactile": TOPICS["tactile"], "proprio": TOPICS["joint_states"],
        "action": TOPICS["action"],
    }
    assert data["dt"]["source"].startswith("auto") and set(data["dt"]["camera_hz"].values()) == {FPS}
    assert data["rejected_messages"]["counts"] == {}  # every taxel array fits the derived shape
    # The derived config is printed before training starts.
    log = (robot["root"] / "train.log").read_text()
    assert "tactile_shape 5x5 -> 1x25" in log and "proprio_dim 6 -> 8" in log and "dt 0.05 s" in log
    # 40 frames at 20 Hz, windows of K=8 steps of 50 ms: starts 0..31 in each bag.
    assert metrics["train_windows"] == 32 and metrics["final_val"]["dt_s"] == pytest.approx(0.05)


def test_eval_accepts_every_modality_and_reports_the_camera_rate(robot: dict[str, Path]) -> None:
    summary = json.loads((robot["eval"] / "summary.json").read_text())
    assert summary["dt_s"] == pytest.approx(0.05)
    assert summary["camera_rate_hz"] == pytest.approx(FPS) and summary["camera_periods_per_dt"] == 1.0
    assert summary["warnings"] == []
    for bag in summary["bags"]:
        assert bag["pipeline"]["invalid"] == {}, bag["pipeline"]
        received = bag["pipeline"]["received"]
        assert received["image"] == received["tactile"] == received["joint_state"] == received["twist"] == 40
        assert "audio" not in received
    log = (robot["root"] / "eval.log").read_text()
    assert "camera 20 Hz, model dt 0.05 s (20 Hz)" in log
    recs = [json.loads(line) for line in (robot["eval"] / "results.jsonl").read_text().splitlines()]
    for r in recs[:50]:
        # Targets are the data's frames at t + k·dt: 50 ms apart, none beyond the bag.
        got = [t for t in r["target_stamp_ns"] if t is not None]
        assert all(t == r["stamp_ns"] + (k + 1) * DT_NS for k, t in enumerate(got))


def test_trainer_validation_and_eval_score_alike(robot: dict[str, Path]) -> None:
    """The trainer's validation (command held, as the node runs) and `embodied-wm eval` give the same
    per-step moving-pixel PSNR on the same predictions: one scorer, one dt."""
    from embodied_wm.model.checkpoint import load_checkpoint
    from embodied_wm.train.dataset import WindowDataset, load_episodes
    from embodied_wm.train.evaluate import evaluate_model

    torch.set_num_threads(1)
    loaded = load_checkpoint(robot["model"])
    eps = load_episodes([robot["bags"]], loaded.cfg, robot["cache"])
    ds = WindowDataset(eps, loaded.cfg, with_future_inputs=False)
    anchors = {(eps[ei].source, int(eps[ei].stamps_ns[t])) for ei, t in ds.index}
    res = evaluate_model(loaded.model, eps, actions="held", baselines=True)
    recs = [json.loads(line) for line in (robot["eval"] / "results.jsonl").read_text().splitlines()]
    for method in ("model", "copy_last", "linear"):
        rows = [
            r["psnr_moving"] for r in recs if r["method"] == method and (r["bag"], r["stamp_ns"]) in anchors
        ]
        assert len(rows) == len(ds)
        ev = np.nanmean(np.asarray(rows, dtype=float), axis=0)
        np.testing.assert_allclose(res["psnr_moving_per_step"][method], ev, atol=0.05, err_msg=method)


@requires_ros
@pytest.mark.ros
def test_perception_node_runs_the_foreign_model_over_dds(
    robot: dict[str, Path], spawn: Callable
) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from embodied_wm.msg import PredictedFrames
    from test_ros_perception import NODE, Probe, _node_cmd

    from embodied_wm.io.bag import iter_bag_messages
    from embodied_wm.ros.conversions import duration_to_ns, time_to_ns

    bag = robot["bags"] / "ep0"
    camera_stamps = {
        time_to_ns(m.msg.header.stamp) for m in iter_bag_messages(bag, topics=[TOPICS["camera"]])
    }
    inputs = ["camera", "tactile", "joint_states", "action"]
    params = [f"topics.{i}:={TOPICS[i]}" for i in inputs] + ["topics.audio:=''"]
    params += [p for i in inputs for p in (f"qos.{i}.reliability:=reliable", f"qos.{i}.depth:=100")]
    probe = Probe("test_probe_foreign_robot")
    try:
        probe.collect(PredictedFrames, f"/{NODE}/predicted_frames", "frames")
        probe.collect(DiagnosticArray, "/diagnostics", "diag", depth=20)
        node = spawn(
            _node_cmd(
                f"model:={robot['model']}", "backend:=pytorch", "autostart:=true", "use_sim_time:=true",
                "diagnostics.period_s:=0.5", *params, params_file=True,
            ),
            "perception_foreign",
        )
        probe.wait_connected(outputs={"frames": 1}, timeout=90)
        player = spawn(
            ["python", "-m", "embodied_wm.tools.bag_player", str(bag), "--clock", "--rate", "1.0",
             "--wait-for", *TOPICS.values(), "--delay", "0.3"],
            "bag_player_foreign",
        )
        assert player.wait(timeout=90) == 0

        def _done() -> bool:
            msgs, inf = probe.node_status(": messages"), probe.node_status(": inference")
            return (
                msgs.get("received/image") == "40"
                and inf.get("busy") == "False"
                and int(inf.get("predictions", "0")) > 0
                and len(probe.get("frames")) >= int(inf["predictions"])
            )

        probe.wait_for(_done, 60, "the node to receive the whole bag and publish its predictions")
        assert node.poll() is None, "perception_node exited (see out/test-logs)"
        msgs = probe.node_status(": messages")
        # Every modality the model was trained with is accepted: nothing invalid, nothing bad_shape.
        assert not any(k.startswith("invalid/") for k in msgs), msgs
        for kind in ("image", "tactile", "joint_state", "twist"):
            assert msgs.get(f"received/{kind}") == "40", (kind, msgs)
        frames = probe.get("frames")
        assert frames
        for m in frames:
            t = time_to_ns(m.header.stamp)
            assert t in camera_stamps
            assert [duration_to_ns(o) for o in m.offsets] == [(k + 1) * DT_NS for k in range(8)]
            assert [time_to_ns(f.header.stamp) for f in m.frames] == [t + (k + 1) * DT_NS for k in range(8)]
    finally:
        probe.close()

