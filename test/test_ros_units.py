"""Unit tests of the ROS layer's pure parts: conversions, previews, parameter checks, diagnostics and
the latest-only worker. No processes, no DDS."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import requires_ros

pytestmark = requires_ros

REPO = Path(__file__).resolve().parents[1]


def _pred(k: int = 3, c: int = 2, h: int = 8, w: int = 10):
    from embodied_wm.observation import Prediction

    rng = np.random.default_rng(0)
    return Prediction(
        stamp_ns=1_700_000_000_123_456_789,
        dt_ns=100_000_000,
        frames=rng.integers(0, 256, (k, h, w, 3), dtype=np.uint8),
        affordance=rng.random((c, h, w), dtype=np.float32),
        affordance_channels=("contact", "movable")[:c],
        latent=rng.random((2, 4), dtype=np.float32),
        model_id="m1",
        frame_id="cam",
        confidence=np.linspace(1, 0.5, k, dtype=np.float32),
    )


def test_prediction_round_trip() -> None:
    from embodied_wm.ros import conversions as conv

    pred = _pred()
    msg = conv.prediction_to_frames_msg(pred)
    assert msg.header.frame_id == "cam" and msg.model_id == "m1"
    assert conv.time_to_ns(msg.header.stamp) == pred.stamp_ns
    assert [conv.duration_to_ns(o) for o in msg.offsets] == [100_000_000, 200_000_000, 300_000_000]
    stamps, frames = conv.frames_msg_to_numpy(msg)
    np.testing.assert_array_equal(stamps, pred.frame_stamps_ns)
    np.testing.assert_array_equal(frames, pred.frames)
    assert [conv.time_to_ns(f.header.stamp) for f in msg.frames] == list(pred.frame_stamps_ns)
    np.testing.assert_allclose(np.asarray(msg.confidence), pred.confidence)

    aff = conv.prediction_to_affordance_msg(pred, "override")
    assert aff.header.frame_id == "override" and conv.duration_to_ns(aff.horizon) == 300_000_000
    channels, arr = conv.affordance_msg_to_numpy(aff)
    assert channels == ["contact", "movable"]
    np.testing.assert_array_equal(arr, pred.affordance)

    ws = conv.prediction_to_world_state_msg(pred)
    assert list(ws.shape) == [2, 4] and np.allclose(np.asarray(ws.latent), pred.latent.ravel())


def test_baseline_prediction_has_empty_affordance() -> None:
    from embodied_wm.observation import Prediction
    from embodied_wm.ros import conversions as conv

    pred = Prediction(1, 1, np.zeros((2, 4, 5, 3), np.uint8), np.zeros((0, 4, 5), np.float32), ())
    msg = conv.prediction_to_affordance_msg(pred)
    assert (msg.height, msg.width, list(msg.channels), len(msg.data)) == (4, 5, [], 0)


def test_rollout_to_msgs() -> None:
    from embodied_wm.observation import Rollout
    from embodied_wm.ros import conversions as conv

    r = Rollout(5, 10, np.zeros((3, 2, 4, 4, 3), np.uint8), np.ones((3, 1, 4, 4), np.float32), ("contact",))
    frames, affs = conv.rollout_to_msgs(r, "cam")
    assert len(frames) == 3 and len(affs) == 3 and len(frames[0].frames) == 2
    assert conv.affordance_msg_to_numpy(affs[2])[1].shape == (1, 4, 4)


def test_stamps_and_bad_inputs() -> None:
    from embodied_wm.ros import conversions as conv

    assert conv.time_to_ns(conv.ns_to_time(1_999_999_999)) == 1_999_999_999
    with pytest.raises(ValueError):
        conv.ns_to_time(-1)
    with pytest.raises(ValueError):
        conv.rgb_to_image_msg(np.zeros((4, 4), np.uint8), 0, "")


def test_previews() -> None:
    from embodied_wm.ros import conversions as conv

    pred = _pred(k=8, h=8, w=8)
    cur = np.zeros((32, 32, 3), np.uint8)
    tile = conv.tile_preview(cur, pred.frames, max_frames=4, scale=2, gap=2)
    assert tile.shape == (16, 2 * (5 * 8 + 4 * 2), 3)
    assert conv.pick_indices(8, 4)[-1] == 7 and len(conv.pick_indices(8, 4)) == 4
    over = conv.affordance_preview(pred.frames[0], pred.affordance, pred.affordance_channels, "movable")
    # The overlay (the frame's size) with a colour bar beside it; test_viz checks the pixels.
    assert over.shape[0] == 8 and over.shape[1] > 8 and over.dtype == np.uint8
    # No affordance (baseline): the base image unchanged.
    base = pred.frames[0]
    same = conv.affordance_preview(base, np.zeros((0, 8, 8), np.float32), (), "contact")
    np.testing.assert_array_equal(same, base)


def test_resize_helpers() -> None:
    from embodied_wm.ros import conversions as conv

    img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    assert conv.resize_nearest(img, 4, 8).shape == (4, 8, 3)
    assert conv.resize_area(img, 4, 4).shape == (4, 4, 3)
    assert conv.resize_area(img, 5, 5).shape == (5, 5, 3)


def test_parameter_checks() -> None:
    from embodied_wm.ros import params as P

    specs = P.spec_table(P.PERCEPTION_PARAMS)
    assert P.validate(specs, "rate_hz", -1.0) is not None
    assert P.validate(specs, "rate_hz", 5) is None  # an int is fine for a float parameter
    assert "must be one of" in (P.validate(specs, "backend", "magic") or "")
    assert P.validate(specs, "camera_transport", "theora") is not None
    assert P.validate(specs, "qos.camera.reliability", "sometimes") is not None
    assert P.validate(specs, "qos.audio.depth", 0) is not None
    assert P.validate(specs, "topics.camera", "") is not None  # the camera cannot be disabled
    assert P.validate(specs, "topics.audio", "") is None
    assert P.validate(specs, "topics.audio", "bad topic") is not None
    assert P.validate(specs, "device", "cuda:1") is None
    assert P.validate(specs, "device", "tpu") is not None
    assert P.validate(specs, "use_sim_time", True) is None  # not ours: left to rclpy
    pspecs = P.spec_table(P.PLANNER_PARAMS)
    assert P.validate(pspecs, "active_dims", [0, 7]) is not None
    assert P.validate(pspecs, "elite_fraction", 0.0) is not None
    assert P.nested({"a.b": 1, "a.c": 2, "d": 3}) == {"a": {"b": 1, "c": 2}, "d": 3}
    assert P.flatten({"a": {"b": 1}}) == {"a.b": 1}


@pytest.mark.parametrize(
    ("yaml_name", "node", "specs"),
    [
        ("perception.yaml", "perception_node", "PERCEPTION_PARAMS"),
        ("planner.yaml", "planner_node", "PLANNER_PARAMS"),
    ],
)
def test_config_yaml_matches_declared_parameters(yaml_name: str, node: str, specs: str) -> None:
    """Every key in config/*.yaml is a declared parameter with a valid value, and vice versa."""
    from embodied_wm.ros import params as P

    doc = yaml.safe_load((REPO / "config" / yaml_name).read_text())
    (key,) = doc.keys()
    assert key.endswith(node)
    flat = P.flatten(doc[key]["ros__parameters"])
    table = P.spec_table(getattr(P, specs))
    assert set(flat) == set(table), set(flat) ^ set(table)
    for name, value in flat.items():
        assert P.validate(table, name, value) is None, (name, value)


def test_set_callback_rejects_with_reason() -> None:
    from rclpy.parameter import Parameter

    from embodied_wm.ros import params as P

    seen: list[str] = []
    cb = P.make_set_callback(P.spec_table(P.PERCEPTION_PARAMS), lambda n, v: seen.append(n))
    bad = cb([Parameter("rate_hz", value=-2.0)])
    assert not bad.successful and "rate_hz" in bad.reason
    ok = cb([Parameter("rate_hz", value=2.0)])
    assert ok.successful and seen == ["rate_hz"]


def test_qos_profiles() -> None:
    from rclpy.qos import ReliabilityPolicy

    from embodied_wm.ros.qos import make_qos, output_qos, sensor_qos

    assert sensor_qos().reliability == ReliabilityPolicy.BEST_EFFORT and sensor_qos().depth == 5
    assert sensor_qos("reliable", 9).reliability == ReliabilityPolicy.RELIABLE
    assert output_qos().reliability == ReliabilityPolicy.RELIABLE
    with pytest.raises(ValueError):
        make_qos("maybe")
    with pytest.raises(ValueError):
        make_qos("reliable", 0)


def test_diagnostics_array() -> None:
    from builtin_interfaces.msg import Time

    from embodied_wm.ros import diagnostics as D

    meters = {n: D.RateMeter() for n in ("camera", "audio", "tactile")}
    for i in range(11):
        meters["camera"].tick(1_000_000_000 + i * 100_000_000, now=100.0 + i * 0.1)
    meters["audio"].tick(1_000_000_000, now=100.0)  # stopped 1 s (data time) before the last frame
    lat = D.LatencyStats()
    for v in range(1, 101):
        lat.add("predict", float(v))
    counters = D.NodeCounters(stale=3, predictions=10)
    snap = D.Snapshot(
        node_name="perception_node",
        lifecycle_state="active",
        inputs={"camera": "/cam", "audio": "/audio", "tactile": ""},
        meters=meters,
        camera_stamp_ns=2_000_000_000,
        missing_after_s=0.5,
        missing_in_last_observation=["audio", "tactile"],
        latency=lat.summary(),
        counters=counters,
        pipeline_stats={"received": {"image": 11}, "invalid": {"image:data_length": 2}},
        backend={"backend": "linear", "model_id": "linear", "device": "cpu"},
        backend_skipped={"onnxruntime": "model directory missing"},
        pending=False,
    )
    arr = D.build_array(snap, Time(sec=1), now=101.0)
    inputs = D.status_values(arr, ": inputs")
    assert abs(float(inputs["camera/rate_hz"]) - 10.0) < 0.01
    assert inputs["missing_modalities"] == "audio"  # tactile is disabled: expected, not missing
    assert "audio" in inputs["silent_inputs"]
    assert inputs["tactile/topic"] == "(disabled)"
    assert arr.status[0].level == D.WARN
    inf = D.status_values(arr, ": inference")
    assert inf["dropped/stale"] == "3" and inf["skipped/onnxruntime"] == "model directory missing"
    assert float(inf["latency_ms/predict/p50"]) == pytest.approx(50.5)
    assert float(inf["latency_ms/predict/p99"]) == pytest.approx(99.01)
    msgs = D.status_values(arr, ": messages")
    assert msgs["invalid/image:data_length"] == "2" and arr.status[2].level == D.WARN
    assert arr.status[3].name == "perception_node: camera" and arr.status[3].level == D.OK
    assert D.status_values(arr, ": camera")["missing"] == "False"


def test_diagnostics_camera_outage() -> None:
    """While the camera is out: '<node>: camera' at WARN, "camera missing since X s" in data time, what
    the predictions come from, and the withheld frames; the inputs status leads with it. Not a warning
    when the node is inactive or the camera input is disabled by configuration."""
    from dataclasses import replace

    from builtin_interfaces.msg import Time

    from embodied_wm.ros import diagnostics as D

    meters = {n: D.RateMeter() for n in ("camera", "audio")}
    meters["camera"].tick(1_000_000_000, now=100.0)
    meters["audio"].tick(3_500_000_000, now=102.5)
    outage = D.CameraOutage(1_000_000_000, 3_300_000_000, ["audio", "tactile"])
    snap = D.Snapshot(
        node_name="perception_node",
        lifecycle_state="active",
        inputs={"camera": "/cam", "audio": "/audio"},
        meters=meters,
        camera_stamp_ns=1_000_000_000,
        missing_after_s=1.0,
        missing_in_last_observation=["image", "proprio"],
        latency={},
        counters=D.NodeCounters(predictions=30, camera_outages=1, frames_withheld=12),
        pipeline_stats={"observations_without_camera": 14},
        backend={"backend": "onnxruntime", "model_id": "m", "device": "cpu"},
        backend_skipped={},
        pending=False,
        camera_outage=outage,
    )
    arr = D.build_array(snap, Time(sec=1), now=102.5)
    cam = next(st for st in arr.status if st.name == "perception_node: camera")
    assert cam.level == D.WARN
    assert cam.message == (
        "camera missing since 2.3 s: affordances and world state from audio, tactile; "
        "predicted frames withheld"
    )
    vals = D.status_values(arr, ": camera")
    assert vals["missing_since_s"] == "2.30" and vals["predicting_from"] == "audio, tactile"
    assert vals["predicted_frames_withheld"] == "12" and vals["observations_without_camera"] == "14"
    assert vals["last_frame_stamp_ns"] == "1000000000" and vals["outages"] == "1"
    inputs = next(st for st in arr.status if st.name == "perception_node: inputs")
    assert inputs.level == D.WARN and inputs.message.startswith("camera missing since 2.3 s")
    never = replace(snap, camera_outage=D.CameraOutage(None, 5, ["audio"]))
    assert D.status_values(D.build_array(never, Time()), ": camera")["missing_since_s"] == "no frame yet"
    inactive = replace(snap, lifecycle_state="inactive")
    for quiet in (inactive, replace(snap, inputs={"camera": "", "audio": "/a"})):
        st = next(s for s in D.build_array(quiet, Time(), now=102.5).status if s.name.endswith(": camera"))
        assert st.level == D.OK and "camera missing" in st.message


def test_latest_only_worker_counts_replaced_items() -> None:
    from embodied_wm.ros.worker import LatestOnlyWorker

    gate = threading.Event()
    done: list[int] = []

    def handler(i: int) -> None:
        gate.wait(5)
        done.append(i)

    w: LatestOnlyWorker[int] = LatestOnlyWorker(handler, lambda e: None, "t")
    w.start()
    w.submit(0)
    deadline = time.monotonic() + 5
    while not w._busy and time.monotonic() < deadline:  # the worker took item 0
        time.sleep(0.01)
    for i in range(1, 6):
        w.submit(i)  # 1..4 are replaced while 0 runs; only 5 survives
    gate.set()
    assert w.wait_idle(5)
    w.stop()
    assert done == [0, 5] and w.replaced == 4


def test_worker_survives_handler_errors() -> None:
    from embodied_wm.ros.worker import LatestOnlyWorker

    errors: list[BaseException] = []

    def handler(i: int) -> None:
        raise RuntimeError(f"boom {i}")

    w: LatestOnlyWorker[int] = LatestOnlyWorker(handler, errors.append, "t")
    w.start()
    w.submit(1)
    assert w.wait_idle(5)
    w.submit(2)
    assert w.wait_idle(5)
    w.stop()
    assert [str(e) for e in errors] == ["boom 1", "boom 2"]
