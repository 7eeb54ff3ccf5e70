"""Soak command: the verdict logic on synthetic windows, and a ~20 s real run through `embodied-wm soak`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import REPO, requires_ros

from embodied_wm.tools.soak import analyse


def _windows(
    n: int, rss: Callable[[int], float], p50: Callable[[int], float], rate: float = 30.0
) -> list[dict]:
    return [
        {"t_s": 5.0 * (i + 1), "rss_mb": rss(i), "node_p50_ms": p50(i), "node_p99_ms": p50(i) * 2,
         "rate_hz": rate, "drop_fraction": 0.0}
        for i in range(n)
    ]  # fmt: skip


def test_flat_run_passes() -> None:
    a = analyse(_windows(24, lambda i: 200.0 + (i % 2), lambda i: 15.0 + (i % 3) * 0.1), 0.2, 10.0, 1.0, None)
    assert a["verdict"] == "PASS", a
    assert a["warmup_windows"] == 5
    assert abs(a["rss_growth_pct"]) < 1.0
    assert abs(a["latency_drift_ms_per_min"]) < 0.1


def test_warmup_growth_is_forgiven_but_a_leak_is_not() -> None:
    # Fast growth during warm-up only (caches filling) then flat: PASS.
    warm = analyse(_windows(20, lambda i: 100.0 + 50 * min(i, 3), lambda i: 15.0), 0.2, 10.0, 1.0, None)
    assert warm["verdict"] == "PASS", warm
    # Steady growth of 2 MB per 5 s window after warm-up: FAIL with a reason naming RSS.
    leak = analyse(_windows(24, lambda i: 200.0 + 2 * i, lambda i: 15.0), 0.2, 10.0, 1.0, None)
    assert leak["verdict"] == "FAIL" and "RSS" in leak["reasons"][0]
    assert leak["rss_slope_mb_per_min"] == pytest.approx(24.0, rel=0.01)


def test_latency_drift_stall_and_crash_fail() -> None:
    drift = analyse(_windows(24, lambda i: 200.0, lambda i: 15.0 + 0.5 * i), 0.2, 10.0, 1.0, None)
    assert drift["verdict"] == "FAIL" and drift["latency_drift_ms_per_min"] == pytest.approx(6.0)
    stall = analyse(_windows(10, lambda i: 200.0, lambda i: 15.0, rate=0.0), 0.2, 10.0, 1.0, None)
    assert stall["verdict"] == "FAIL"
    crash = analyse(_windows(10, lambda i: 200.0, lambda i: 15.0), 0.2, 10.0, 1.0, "perception_node exited")
    assert crash["verdict"] == "FAIL" and crash["reasons"][0].startswith("crashed")


@requires_ros
@pytest.mark.ros
def test_quick_soak_writes_json_and_plot(tmp_path: Path) -> None:
    """~20 s of the real setup (0.25 min of 2 s windows, 320x240 to spare the shared CPU)."""
    cmd = [
        sys.executable, "-m", "embodied_wm.cli", "soak", "--minutes", "0.25", "--window", "2",
        "--out", str(tmp_path), "--backend", "linear", "--width", "320", "--height", "240",
        "--domain-id", os.environ["ROS_DOMAIN_ID"], "--max-rss-growth-pct", "50",
        "--max-drift-ms-per-min", "1000",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=180)
    out = done.stdout + done.stderr
    assert "soak PASS" in out or "soak FAIL" in out, out
    r = json.loads((tmp_path / "soak.json").read_text())
    png = tmp_path / "soak.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert r["kind"] == "embodied_wm.tools.soak" and r["backend"] == "linear"
    assert r["device"]["cpu_model"]
    assert r["crashed"] is None, r["crashed"]
    ws = r["windows"]
    assert len(ws) == 8
    assert [w["t_s"] for w in ws] == [2.0 * (i + 1) for i in range(8)]
    for w in ws:
        assert 50 < w["rss_mb"] < 2000, w
        assert 0 < w["rate_hz"] <= 31, w
        assert 0 < w["node_p50_ms"] <= w["node_p99_ms"] < 5000, w
        assert 0 < w["floor_p50_ms"] < 5000, w
        assert 0 <= w["drop_fraction"] <= 1, w
    a = r["analysis"]
    assert a["windows"] == 8 and a["warmup_windows"] == 2
    for key in ("rss_growth_pct", "rss_mb_after_warmup", "latency_p50_ms", "latency_p99_ms",
                "latency_drift_ms_per_min", "rate_hz_mean"):  # fmt: skip
        assert isinstance(a[key], float), key
    assert a["verdict"] == "PASS", (a, out)
    assert done.returncode == 0, out
