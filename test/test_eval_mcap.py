"""`embodied-wm eval --mcap` and make demo's report: the MCAP has the topics, types and stamps the docs
state, every message deserialises with mcap and with rosbags, config/foxglove_layout.json only names
topics it has, and no report prints a raw-nanosecond stamp."""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embodied_wm.eval.cli import main
from embodied_wm.eval.synthetic import SceneConfig, write_bag
from embodied_wm.resources import package_roots

FRAMES = 16
MAX_FRAMES = 10
K = 8
DT_NS = 100_000_000
START_NS = SceneConfig().start_ns
#: A raw nanosecond stamp: 13 or more digits in a row (seconds since 1970 in ms or finer).
RAW_NS = re.compile(r"\d{13,}")


def _read_mcap(path: Path) -> tuple[list[tuple[str, str, int, Any]], dict[str, tuple[str, str, str]]]:
    """(topic, schema name, log time, decoded) in file order, and topic -> (schema name, schema
    encoding, message encoding), read with mcap + mcap-ros2-support."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    msgs = []
    with open(path, "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        assert summary is not None
        channels = {
            ch.topic: (
                summary.schemas[ch.schema_id].name,
                summary.schemas[ch.schema_id].encoding,
                ch.message_encoding,
            )
            for ch in summary.channels.values()
        }
        for schema, channel, message, decoded in reader.iter_decoded_messages(log_time_order=False):
            msgs.append((channel.topic, schema.name if schema else "", message.log_time, decoded))
    return msgs, channels


def _rosbags_count(path: Path) -> dict[str, int]:
    from rosbags.rosbag2 import Reader

    from embodied_wm.io.typestore import typestore

    store = typestore()
    counts: dict[str, int] = defaultdict(int)
    with Reader(path) as reader:
        for con, _t, raw in reader.messages():
            store.deserialize_cdr(raw, con.msgtype)
            counts[con.topic] += 1
    return dict(counts)


def _stamp(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)


def _layout_topics() -> set[str]:
    path = next(r / "config" / "foxglove_layout.json" for r in package_roots() if (r / "config").is_dir())
    doc = json.loads(path.read_text())
    topics = set()
    for pid, cfg in doc["configById"].items():
        if pid.startswith("Image!"):
            topics.add(cfg["imageMode"]["imageTopic"])
        elif pid.startswith("Plot!"):
            for p in cfg["paths"]:
                topics.add(p["value"].split(".", 1)[0])
    return topics


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch = pytest.importorskip("torch")
    from embodied_wm.model.checkpoint import save_checkpoint
    from embodied_wm.model.config import load_config
    from embodied_wm.model.world_model import WorldModel

    d = tmp_path_factory.mktemp("evalmcap")
    bag = write_bag(d / "moving", SceneConfig(frames=FRAMES, res=48))
    torch.manual_seed(0)
    cfg = load_config("tiny")
    save_checkpoint(WorldModel(cfg).eval(), cfg, d / "model")
    out = d / "out"
    args = [str(bag), "--model", str(d / "model"), "--backend", "pytorch", "--out", str(out)]
    args += ["--max-frames", str(MAX_FRAMES), "--samples", "2", "--mcap", str(out / "eval.mcap")]
    assert main(args) == 0
    return out


def test_eval_mcap_topics_types_and_stamps(evaluated: Path) -> None:
    path = evaluated / "eval.mcap"
    msgs, channels = _read_mcap(path)
    methods = ("model", "copy_last", "linear")
    expected_types = {"/embodied_wm/input/image": "sensor_msgs/msg/Image"}
    for k in range(1, K + 1):
        expected_types[f"/embodied_wm/predicted/k{k}"] = "sensor_msgs/msg/Image"
        expected_types[f"/embodied_wm/error/k{k}"] = "sensor_msgs/msg/Image"
    for ch in ("contact", "movable"):
        expected_types[f"/embodied_wm/affordance/{ch}"] = "sensor_msgs/msg/Image"
    for m in methods:
        for metric in ("psnr", "psnr_moving", "ssim"):
            expected_types[f"/embodied_wm/metrics/{m}/{metric}"] = "std_msgs/msg/Float32MultiArray"
    assert {t: v[0] for t, v in channels.items()} == expected_types
    assert all(v[1:] == ("ros2msg", "cdr") for v in channels.values())

    # Written in log-time order (Foxglove streams it without re-sorting).
    times = [t for _, _, t, _ in msgs]
    assert times == sorted(times)

    by_topic: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for topic, _, t, m in msgs:
        by_topic[topic].append((t, m))
    obs_stamps = [START_NS + i * DT_NS for i in range(MAX_FRAMES)]
    # The camera: every frame read (predictions from the first MAX_FRAMES, later ones as targets).
    cam = by_topic["/embodied_wm/input/image"]
    assert [t for t, _ in cam][:MAX_FRAMES] == obs_stamps
    for t, m in cam:
        assert _stamp(m) == t and m.encoding == "rgb8" and m.width == 48 and m.height == 48
        assert len(m.data) == m.step * m.height
    # Predicted frame k: stamped at the time it predicts, t + k·dt, for every observation.
    for k in range(1, K + 1):
        pred = by_topic[f"/embodied_wm/predicted/k{k}"]
        assert [t for t, _ in pred] == [s + k * DT_NS for s in obs_stamps]
        assert all(_stamp(m) == t and m.encoding == "rgb8" and m.width == 64 for t, m in pred)
        # Error maps only where a camera frame came at that time (the bag has FRAMES frames).
        err = by_topic[f"/embodied_wm/error/k{k}"]
        last = START_NS + (FRAMES - 1) * DT_NS
        assert [t for t, _ in err] == [s + k * DT_NS for s in obs_stamps if s + k * DT_NS <= last]
    for ch in ("contact", "movable"):
        aff = by_topic[f"/embodied_wm/affordance/{ch}"]
        assert [t for t, _ in aff] == obs_stamps
        assert aff[0][1].height >= 256  # drawn large enough to stay crisp in any viewer

    # Metrics: the numbers of results.jsonl, data[k-1] per horizon step, NaN where it has null.
    records = [json.loads(x) for x in (evaluated / "results.jsonl").read_text().splitlines()]
    for m in methods:
        for metric in ("psnr", "psnr_moving", "ssim"):
            series = by_topic[f"/embodied_wm/metrics/{m}/{metric}"]
            assert [t for t, _ in series] == obs_stamps
            want = {r["stamp_ns"]: r[metric] for r in records if r["method"] == m}
            for t, msg in series:
                assert [d.label for d in msg.layout.dim] == ["horizon_step"] and msg.layout.dim[0].size == K
                for got, exp in zip(msg.data, want[t]):
                    if exp is None:
                        assert math.isnan(got)
                    else:
                        assert got == pytest.approx(exp, abs=1e-3)

    # rosbags reads the same file and deserialises every message.
    assert _rosbags_count(path) == {t: len(v) for t, v in by_topic.items()}
    # The Foxglove layout only names topics the file has.
    assert _layout_topics() <= set(channels)
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["bags"][0]["mcap"] == str(path)


def test_eval_report_has_human_times_only(evaluated: Path) -> None:
    html = (evaluated / "report.html").read_text()
    assert not RAW_NS.findall(html), RAW_NS.findall(html)[:3]
    assert "model dt 0.1 s" in html and "camera 10 Hz" in html
    assert html.count("2023-11-14T22:13:20.000Z") >= 1  # the ISO wall time of the first frame
    assert re.search(r"at t = \d+\.\d\d s", html)
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["bags"][0]["camera_rate_hz"] == pytest.approx(10.0)
    for src in re.findall(r"src='([^']+)'", html):
        assert not RAW_NS.search(src) and (evaluated / src).is_file()


def test_mcap_view_draws_the_layout_from_the_file(evaluated: Path, tmp_path: Path) -> None:
    from embodied_wm.eval import mcap_view

    layout = next(r / "config" / "foxglove_layout.json" for r in package_roots() if (r / "config").is_dir())
    img = mcap_view.render(evaluated / "eval.mcap", layout, at_s=0.9, size=(800, 500))
    assert img.shape == (526, 800, 3)
    # Eight image panels and a plot: most of the canvas is drawn, not left white.
    assert (img < 250).any(axis=2).mean() > 0.3
    assert (
        mcap_view.main(
            [str(evaluated / "eval.mcap"), "--layout", str(layout), "--out", str(tmp_path / "v.png")]
        )
        == 0
    )
    assert (tmp_path / "v.png").stat().st_size > 10_000
    assert mcap_view.main([str(tmp_path / "missing.mcap"), "--out", str(tmp_path / "x.png")]) == 1


def test_mcap_option_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bag = write_bag(tmp_path / "b", SceneConfig(frames=4, res=16))
    from embodied_wm.eval.cli import main as eval_main

    with pytest.raises(SystemExit) as exc:
        eval_main([str(bag), "--out", str(tmp_path / "o"), "--mcap"])
    assert exc.value.code == 2
    rc = eval_main([str(bag), "--out", str(tmp_path / "o"), "--mcap", str(tmp_path)])
    assert rc == 1 and "is a directory" in capsys.readouterr().err


def test_demo_report_and_mcap(tmp_path: Path) -> None:
    """make demo's report from predictions as the node publishes them (no DDS needed here): a perfect
    predictor (the frames that came) scores the PSNR cap, its error maps are all zero, and neither the
    HTML nor the file names carry raw-ns stamps."""
    pytest.importorskip("rclpy")
    from embodied_wm.observation import Prediction
    from embodied_wm.ros import conversions as conv
    from embodied_wm.tools import demo

    bag = write_bag(tmp_path / "bag", SceneConfig(frames=14, res=32))
    frames, gt = demo.load_bag_frames(bag)
    stamps = sorted(frames)
    collected = demo.Collected()
    k = 4
    for i, t in enumerate(stamps[:-k]):
        future = np.stack([frames[stamps[i + j + 1]] for j in range(k)])
        ch, maps = gt[t]
        pred = Prediction(t, DT_NS, future, maps.astype(np.float32), tuple(ch), model_id="perfect")
        collected.frames[t] = conv.prediction_to_frames_msg(pred, "camera")
        collected.affordance[t] = conv.prediction_to_affordance_msg(pred, "camera")
    out = tmp_path / "demo"
    out.mkdir()
    summary = demo.write_report(out, collected, bag, {"backend": "test", "bag": str(bag), "wall_s": 1.0})
    html = (out / "index.html").read_text()
    assert not RAW_NS.findall(html), RAW_NS.findall(html)[:3]
    assert "model dt 0.1 s" in html and "camera 10 Hz" in html and "2023-11-14T22:13:20.000Z" in html
    assert summary["per_horizon"][0]["psnr_model"] == pytest.approx(100.0)
    for src in re.findall(r"src='([^']+)'", html):
        assert not RAW_NS.search(src) and (out / src).stat().st_size > 1000

    msgs, channels = _read_mcap(out / "predictions.mcap")
    assert {
        "/embodied_wm/input/image",
        "/embodied_wm/predicted/k1",
        "/embodied_wm/metrics/model/psnr",
    } <= set(channels)
    by_topic: dict[str, list[tuple[int, Any]]] = defaultdict(list)
    for topic, _, t, m in msgs:
        by_topic[topic].append((t, m))
    from embodied_wm.eval.mcap_view import image_to_rgb
    from embodied_wm.viz import overlay as ov

    cam = {t: image_to_rgb(m) for t, m in by_topic["/embodied_wm/input/image"]}
    assert sorted(cam) == stamps
    for t, m in by_topic["/embodied_wm/predicted/k1"]:
        np.testing.assert_array_equal(image_to_rgb(m), cam[t])  # perfect prediction of the frame at t
    zero = ov.lut(ov.ERROR_CMAP)[0]
    for _, m in by_topic["/embodied_wm/error/k1"]:
        assert (image_to_rgb(m) == zero).all()
    for _, m in by_topic["/embodied_wm/metrics/model/psnr"]:
        assert list(m.data) == pytest.approx([100.0] * k)
    assert _rosbags_count(out / "predictions.mcap") == {t: len(v) for t, v in by_topic.items()}


def test_foxglove_layout_is_complete() -> None:
    path = next(r / "config" / "foxglove_layout.json" for r in package_roots() if (r / "config").is_dir())
    doc = json.loads(path.read_text())
    leaves: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, str):
            leaves.append(node)
            return
        assert node["direction"] in ("row", "column") and 0 < node["splitPercentage"] < 100
        walk(node["first"])
        walk(node["second"])

    walk(doc["layout"])
    assert sorted(leaves) == sorted(doc["configById"])  # every panel placed once, none missing
    for pid, cfg in doc["configById"].items():
        assert pid.split("!")[0] in ("Image", "Plot") and cfg["foxglovePanelTitle"]
        if pid.startswith("Plot!"):
            assert all(p["enabled"] and p["timestampMethod"] == "receiveTime" for p in cfg["paths"])


def test_mcap_one_file_per_bag(tmp_path: Path) -> None:
    a = write_bag(tmp_path / "a", SceneConfig(frames=4, res=16, audio=False, tactile=False))
    b = write_bag(tmp_path / "b", SceneConfig(frames=5, res=16, audio=False, tactile=False))
    out = tmp_path / "out"
    assert main([str(a), str(b), "--out", str(out), "--no-report", "--mcap", str(out / "run.mcap")]) == 0
    files = sorted(p.name for p in out.glob("*.mcap"))
    assert files == ["run.000_a.mcap", "run.001_b.mcap"]
    for name, frames in zip(files, (4, 5)):
        msgs, channels = _read_mcap(out / name)
        assert "/embodied_wm/predicted/k1" in channels  # copy_last's frames without a model
        assert sum(t == "/embodied_wm/input/image" for t, *_ in msgs) == frames
