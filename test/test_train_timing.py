"""Time and shapes are data: windows cut by stamp at the model's dt, the camera rate measured the same
way in training and eval, the half-open target tolerance, the config derived from (or checked against)
the bags, and messages that do not fit the model counted with both shapes, up to metrics.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from embodied_wm.sensing.rate import measure_rate
from embodied_wm.train.windows import TimingError, auto_dt_ns, stamp_windows

T0 = 1_700_000_000 * 10**9
MS = 1_000_000


def _stamps(period_ms: float, n: int, jitter_ms: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    offsets = np.arange(n) * period_ms * MS + rng.uniform(-jitter_ms, jitter_ms, n) * MS
    return T0 + np.round(offsets).astype(np.int64)  # integer offsets: T0 as a float loses nanoseconds


def test_faster_camera_gives_strided_windows_by_stamp() -> None:
    s = _stamps(50, 40)  # 20 Hz camera, dt 0.1 s model
    w = stamp_windows(s, 100 * MS, horizon=8)
    assert w.rate is not None and w.rate.hz == pytest.approx(20.0)
    # Every frame with 8 x 100 ms of data after it starts a window; targets are every second frame.
    assert w.anchors.tolist() == list(range(40 - 16))
    np.testing.assert_array_equal(w.future[0], np.arange(2, 17, 2))
    np.testing.assert_array_equal(w.future[5], np.arange(7, 22, 2))
    # The previous frame is the previous camera frame (as at runtime), not the one dt back.
    assert w.prev[5] == 4 and w.prev[0] == 0
    # At dt = the camera period the windows are K consecutive frames.
    w1 = stamp_windows(s, 50 * MS, horizon=8)
    np.testing.assert_array_equal(w1.future[3], np.arange(4, 12))
    assert auto_dt_ns([s]) == 50 * MS


def test_dropped_frame_removes_only_the_windows_that_need_it() -> None:
    s = np.delete(_stamps(100, 30), 12)  # frame 12 (t0 + 1.2 s) never arrived
    w = stamp_windows(s, 100 * MS, horizon=4)
    starts = {int(s[a]) for a in w.anchors}
    for t in range(0, 26):
        wanted = {T0 + (t + k) * 100 * MS for k in range(1, 5)}
        needs_missing = T0 + 12 * 100 * MS in wanted or t == 12
        assert ((T0 + t * 100 * MS) in starts) == (not needs_missing), t
    # Jitter well inside half a period still matches every target.
    wj = stamp_windows(_stamps(100, 30, jitter_ms=15), 100 * MS, horizon=4)
    assert len(wj.anchors) == 26


def test_unfit_camera_rates_are_clear_errors() -> None:
    with pytest.raises(TimingError, match="slower than the model's dt"):
        stamp_windows(_stamps(200, 20), 100 * MS, horizon=4, source="bag_5hz")
    with pytest.raises(TimingError, match=r"1\.50 camera periods.*--dt auto"):
        stamp_windows(_stamps(50, 40), 75 * MS, horizon=4)
    with pytest.raises(TimingError, match="irregular"):
        stamp_windows(_stamps(100, 60, jitter_ms=45, seed=3), 100 * MS, horizon=4)
    rate = measure_rate(_stamps(100, 60, jitter_ms=45, seed=3))
    assert rate is not None and rate.irregular_fraction > 0.1


def test_scorer_target_tolerance_is_half_open() -> None:
    from embodied_wm.eval.scoring import HorizonScorer, PendingPrediction

    img = np.zeros((8, 8, 3), np.uint8)
    scorer = HorizonScorer()
    for t in (0, 50, 100, 150):  # a 20 Hz camera, ms
        scorer.add_frame(T0 + t * MS, img)
    # A dt = 100 ms prediction from t=0: step 2 (200 ms) has only the frame 50 ms (= dt/2) early.
    pending = PendingPrediction("m", T0, T0 + np.array([100, 200]) * MS, np.stack([img, img]))
    scored = scorer.score(pending)
    assert scored.target_stamps_ns == [T0 + 100 * MS, None]
    # Strictly inside dt/2 still matches.
    scorer.add_frame(T0 + 249 * MS, img)
    assert scorer.score(pending).target_stamps_ns == [T0 + 100 * MS, T0 + 249 * MS]


def test_eval_reports_the_camera_rate_against_the_model_dt() -> None:
    from embodied_wm.eval.replay import camera_timing

    class _R:
        def __init__(self, period_ms: float) -> None:
            self.camera_rate = measure_rate(_stamps(period_ms, 30))

    same = camera_timing([_R(100), _R(100)], 100 * MS)  # type: ignore[list-item]
    assert same["camera_rate_hz"] == pytest.approx(10.0) and same["warnings"] == []
    fast = camera_timing([_R(50)], 100 * MS)  # type: ignore[list-item]
    assert fast["camera_rate_hz"] == pytest.approx(20.0) and fast["camera_periods_per_dt"] == 2.0
    assert len(fast["warnings"]) == 1 and "20 Hz" in fast["warnings"][0] and "0.1 s" in fast["warnings"][0]


# ------------------------------------------------------------------------- bags and training
def _write_mixed_taxel_bag(out: Path) -> Path:
    """A 10 Hz synthetic bag whose tactile driver publishes 5x5 grids, except every 4th message as
    a 1x25 strip (a firmware that changes layout): those do not fit a 5x5 model."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from embodied_wm.eval.synthetic import SceneConfig, _messages
    from embodied_wm.io.typestore import typestore

    store = typestore()
    conns: dict[str, object] = {}
    n_tactile = 0
    with Writer(out, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        for topic, msgtype, t, msg in _messages(SceneConfig(frames=24, seed=5)):
            if msgtype == "embodied_wm/msg/TactileArray":
                if n_tactile % 4 == 3:
                    msg.rows, msg.cols = 1, 25
                n_tactile += 1
            if topic not in conns:
                conns[topic] = w.add_connection(topic, msgtype, typestore=store)
            w.write(conns[topic], t, store.serialize_cdr(msg, msgtype))  # type: ignore[arg-type]
    return out


def test_rejected_taxels_are_counted_with_both_shapes_in_metrics(tmp_path: Path) -> None:
    from embodied_wm.eval.synthetic import SceneConfig, write_bag
    from embodied_wm.train.trainer import TrainArgs, run_training

    bags = tmp_path / "bags"
    _write_mixed_taxel_bag(bags / "mixed")
    write_bag(bags / "clean", SceneConfig(frames=24, seed=6))
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_training(TrainArgs(
            data=[str(bags)], out=str(tmp_path / "run"), steps=2, batch=4, val_every=2, val_fraction=0.5,
            cache_dir=str(tmp_path / "cache"), progress=False, warmup=1, frame_steps=2,
        ))
    finally:
        torch.set_num_threads(n)
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    rej = metrics["data"]["rejected_messages"]
    assert rej["counts"] == {"tactile:bad_shape": 6} == res["data"]["rejected_messages"]["counts"]
    assert rej["bags"] == {str(bags / "mixed"): {"tactile:bad_shape": 6}}
    reason = rej["reasons"]["tactile:bad_shape"]
    assert "(1, 25)" in reason and "(5, 5)" in reason
    # The held-command figure (what `embodied-wm eval` measures) is part of every validation.
    assert "held_actions" in metrics["final_val"]


def _train(args: list[str], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embodied_wm.cli", "train", "--out", str(out), "--steps", "1", "--batch", "2",
         "--no-progress", "--threads", "1", *args],
        capture_output=True, text=True, timeout=300,
    )


def test_explicit_config_and_dt_mismatches_are_one_line_errors(tmp_path: Path) -> None:
    from embodied_wm.eval.synthetic import SceneConfig, write_bag
    from embodied_wm.model.config import CONFIG_DIR

    scene = SceneConfig(frames=12, fps=20.0, tactile_shape=(1, 25), joint_count=2)
    bag = write_bag(tmp_path / "strip", scene)
    cfg = tmp_path / "mine.json"
    cfg.write_text((CONFIG_DIR / "tiny.json").read_text())
    cases = [
        # Every mismatch of the explicit config in the one line.
        (["--data", str(bag), "--config", str(cfg)],
         ["tactile_shape 5x5 but the data has 1x25", "proprio_dim 6 but the data has 4"]),
        (["--data", str(bag), "--dt", "0.025"], ["slower than the model's dt 0.025 s", "--dt auto"]),
    ]
    for args, needles in cases:
        proc = _train(args, tmp_path / "out")
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip() and not ln.startswith("INFO ")]
        assert proc.returncode == 1 and len(lines) == 1, proc.stderr
        assert lines[0].startswith("embodied-wm train: error:"), lines[0]
        assert all(n in lines[0] for n in needles), lines[0]
        assert not (tmp_path / "out" / "model.safetensors").exists()
    bad = _train(["--data", str(bag), "--dt", "soon"], tmp_path / "out")
    assert bad.returncode == 2 and "--dt" in bad.stderr and "Traceback" not in bad.stderr


def test_eval_names_both_shapes_when_the_bag_does_not_fit_the_model(tmp_path: Path) -> None:
    """A 1x25 taxel strip against the shipped 5x5 model: counted, and the warning says why."""
    from conftest import REPO

    from embodied_wm.eval.synthetic import SceneConfig, write_bag

    bag = write_bag(tmp_path / "strip", SceneConfig(frames=12, tactile_shape=(1, 25)))
    out = tmp_path / "ev"
    proc = subprocess.run(
        [sys.executable, "-m", "embodied_wm.cli", "eval", str(bag), "--model", str(REPO / "models" / "tiny"),
         "--backend", "pytorch", "--out", str(out), "--no-report", "--max-frames", "3"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bags"][0]["pipeline"]["invalid"].get("tactile:bad_shape", 0) > 0
    warning = [ln for ln in proc.stderr.splitlines() if "tactile:bad_shape" in ln]
    assert warning and "(1, 25)" in warning[0] and "(5, 5)" in warning[0], proc.stderr
