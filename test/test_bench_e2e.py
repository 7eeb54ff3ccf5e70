"""End-to-end benchmark: its measuring pieces, the synthetic sensors, and one short real run over DDS.

The real run checks that the benchmark works and its JSON is sane; it asserts no performance targets
(those are measured by the benchmark itself on a quiet machine, not by a timed test on a shared one).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, requires_ros

from embodied_wm.tools.bench_e2e import (
    latency_summary,
    model_compute_ms,
    parse_params,
    publisher_rate,
    stage_medians,
)
from embodied_wm.tools.e2e_setup import cdr_header_stamp_ns, proc_cpu_s, proc_rss_kb, resolve_fastdds_profile


# ------------------------------------------------------------------------------------ pure pieces
def test_latency_summary_percentiles_and_empty() -> None:
    s = latency_summary(np.arange(1, 101, dtype=float))
    assert s["n"] == 100
    assert s["p50"] == pytest.approx(50.5)
    assert s["p99"] == pytest.approx(99.01)
    assert s["max"] == 100.0
    empty = latency_summary([])
    assert empty["n"] == 0 and math.isnan(empty["p50"])


def test_proc_readers_see_this_process_and_not_a_dead_one() -> None:
    rss = proc_rss_kb(os.getpid())
    cpu = proc_cpu_s(os.getpid())
    assert rss is not None and rss > 10_000  # a Python with numpy is > 10 MB
    assert cpu is not None and cpu > 0
    done = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert done.returncode == 0
    assert proc_rss_kb(2**22 + 12345) is None  # beyond pid_max defaults: no such process
    assert proc_cpu_s(2**22 + 12345) is None


def test_model_compute_picks_the_backend_stage_p50() -> None:
    diags = [
        (
            1,
            "perception_node: inference",
            {
                "latency_ms/decode/p50": "2.0",
                "latency_ms/predict/p50": "11.0",
                "latency_ms/predict/p99": "30.0",
                "predictions": "10",
            },
        ),
        (2, "perception_node: inference", {"latency_ms/predict/p50": "13.0", "latency_ms/decode/p50": "2.0"}),
        (2, "perception_node: inputs", {"camera/rate_hz": "30.0"}),
    ]
    stages = stage_medians(diags)
    assert stages["perception_node: inference/latency_ms/predict/p50"] == pytest.approx(12.0)
    assert "perception_node: inference/predictions" not in stages
    value, key = model_compute_ms(stages)
    assert value == pytest.approx(12.0) and key is not None and key.endswith("predict/p50")
    assert model_compute_ms({"latency_ms/decode/p50": 1.0}) == (None, None)


def test_publisher_rate_from_stats_snapshots() -> None:
    a = {"last_tick_ns": 0, "published": {"image": 0}}
    b = {"last_tick_ns": 2_000_000_000, "published": {"image": 60}}
    assert publisher_rate(a, b, 99.0) == pytest.approx(30.0)
    assert publisher_rate({}, b, 99.0) == 99.0


def test_parse_params() -> None:
    assert parse_params(["qos.camera.reliability:=reliable", "rate_hz:=5"]) == {
        "qos.camera.reliability": "reliable",
        "rate_hz": "5",
    }


# ------------------------------------------------------------------------------ needs rclpy / msgs
@requires_ros
def test_cdr_stamp_matches_rclpy_serialization() -> None:
    from embodied_wm.msg import PredictedFrames
    from rclpy.serialization import serialize_message
    from sensor_msgs.msg import Image

    for msg in (Image(), PredictedFrames()):
        msg.header.stamp.sec = 1_700_000_123
        msg.header.stamp.nanosec = 456_789_012
        msg.header.frame_id = "camera_optical_frame"
        assert cdr_header_stamp_ns(serialize_message(msg)) == 1_700_000_123_456_789_012
    with pytest.raises(ValueError):
        cdr_header_stamp_ns(b"\x00\x01")


@requires_ros
def test_synthetic_sensors_decode_and_move() -> None:
    from embodied_wm.sensing.audio import decode_audio
    from embodied_wm.sensing.image import image_to_rgb
    from embodied_wm.tools.sensor_publisher import SyntheticSensors

    s = SyntheticSensors(width=160, height=120, rate_hz=30.0)
    t = 1_000_000_000_000
    a, b = image_to_rgb(s.image(t)), image_to_rgb(s.image(t + 33_000_000))
    assert a.shape == (120, 160, 3) and a.dtype == np.uint8
    assert (a != b).any(), "consecutive frames must differ (the square moves)"
    # Audio: contiguous chunks (a sample clock) whose last sample is within one period before the tick,
    # and over a second exactly the sample rate.
    total, prev_end = 0, None
    for k in range(31):
        tick = t + k * 33_333_333 + (1_000_000 if k % 3 == 1 else 0)  # jittery ticks
        chunk = decode_audio(s.audio(tick), 16000)
        last_sample = chunk.stamp_ns + (chunk.samples.size - 1) * 62_500
        assert tick - 62_500 < last_sample <= tick
        if prev_end is not None:
            assert chunk.stamp_ns == prev_end  # no gap, no overlap
        prev_end = chunk.stamp_ns + chunk.samples.size * 62_500
        total += chunk.samples.size if k else 0
    assert abs(total - 16000) <= 1
    tac = s.tactile(t)
    assert tac.rows == 5 and tac.cols == 5 and len(tac.values) == 25
    assert np.isfinite(np.asarray(tac.values)).all()


@requires_ros
@pytest.mark.ros
def test_short_e2e_bench_writes_sane_json(tmp_path: Path) -> None:
    """~15 s: the real processes over DDS with the linear baseline at a reduced camera size."""
    out = tmp_path / "e2e.json"
    cmd = [
        sys.executable, "-m", "embodied_wm.tools.bench_e2e", "--backend", "linear", "--seconds", "4",
        "--warmup", "1", "--width", "320", "--height", "240", "--out", str(out),
        "--domain-id", os.environ["ROS_DOMAIN_ID"],
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=150)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "overhead_ratio" in done.stdout and "node p50" in done.stdout
    r = json.loads(out.read_text())
    assert r["backend"] == "linear"
    assert r["device"]["cpu_model"] and r["device"]["cpu_cores"] >= 1
    assert r["settings"]["width"] == 320 and r["settings"]["rate_hz"] == 30
    # Isolated from anything else on the domain: own namespace, own node name.
    assert r["settings"]["namespace"].startswith("/ewm_bench_")
    assert r["settings"]["node_name"].startswith("perception_node_")
    for part in ("node", "floor"):
        lat = r[part]["latency_ms"]
        assert r[part]["received"] > 10, part
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] < 5000, (part, lat)
    assert 0 < r["node"]["rate_hz"] <= 31
    assert r["stages_ms"], "per-stage latencies from /diagnostics are missing"
    assert r["model_compute_ms_p50"] is not None and r["model_compute_ms_p50"] >= 0
    assert r["overhead_ratio"] is not None and math.isfinite(r["overhead_ratio"])
    assert set(r["cpu_percent"]) >= {"perception_node", "passthrough_node", "sensor_publisher"}
    assert r["rss_mb"]["perception_node"] > 20
    # Every process ran with the package's shared-memory profile (the set-up README recommends).
    assert r["settings"]["fastdds_profile"].endswith("fastdds_shm.xml"), r["settings"]


def test_fastdds_profile_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from embodied_wm.tools.e2e_setup import BenchError

    for var in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE", "EWM_FASTDDS_SHM"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no DEFAULT_FASTRTPS_PROFILES.xml here
    default = resolve_fastdds_profile(None)
    assert default is not None and Path(default).name == "fastdds_shm.xml" and Path(default).is_file()
    assert "FASTRTPS_DEFAULT_PROFILES_FILE" not in os.environ  # resolving sets nothing in this process
    assert resolve_fastdds_profile("") is None and resolve_fastdds_profile("none") is None
    with pytest.raises(BenchError, match="not found"):
        resolve_fastdds_profile(tmp_path / "missing.xml")
    mine = tmp_path / "mine.xml"
    mine.write_text("<profiles/>")
    monkeypatch.setenv("FASTRTPS_DEFAULT_PROFILES_FILE", str(mine))
    assert resolve_fastdds_profile(None) == str(mine)  # the user's own profile wins
    monkeypatch.setenv("EWM_FASTDDS_SHM", "0")
    monkeypatch.delenv("FASTRTPS_DEFAULT_PROFILES_FILE")
    assert resolve_fastdds_profile(None) is None
