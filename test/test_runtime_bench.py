"""bench.py and the runtime CLI (export, bench) on small settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_runtime_common import shared_model

from embodied_wm.runtime.baselines import CopyLastBackend, LinearBackend
from embodied_wm.runtime.bench import run_bench, stats_ms
from embodied_wm.runtime.cli import main


def test_stats() -> None:
    s = stats_ms([1.0, 2.0, 3.0, 4.0])
    assert s["p50"] == 2.5 and s["n"] == 4 and s["min"] == 1.0
    assert stats_ms([]) == {"n": 0}


@pytest.mark.parametrize("cls", [CopyLastBackend, LinearBackend])
def test_bench_report_for_baselines(cls: type) -> None:
    rep = run_bench(cls(), iters=5, warmup=1, candidates=(1, 8), camera_hw=(120, 160))
    assert rep["backend"]["backend"] == cls.name
    assert rep["device"]["device"] == rep["device"]["cpu"] and rep["device"]["cpu"]
    assert rep["threads"]["os_cpu_count"] >= 1
    assert set(rep["predict"]["stages_ms"]) == {"preprocess", "encode", "rollout", "postprocess"}
    assert rep["predict"]["total_ms"]["n"] == 5 and rep["predict"]["predictions_per_s"] > 0
    assert set(rep["rollout"]) == {"1", "8"}
    assert rep["rollout"]["8"]["predictions_per_s"] > 0
    assert set(rep["score"]) == {"1", "8", "64"} and rep["cem_step"]["total_ms"]["n"] >= 1
    assert set(rep["score_targets"]) == {"score_64", "cem_step_3x64"}
    assert "numpy" in rep["versions"]
    json.dumps(rep)


def test_cli_export_and_bench(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = shared_model(tmp_path_factory).ckpt
    assert main(["export", "--model", str(ckpt), "--out", str(tmp_path / "onnx")]) == 0
    out = capsys.readouterr().out
    assert "rollout.onnx N=4" in out and (tmp_path / "onnx" / "export.json").is_file()
    bench_json = tmp_path / "bench.json"
    rc = main(
        [
            "bench", "--model", str(tmp_path / "onnx"), "--backend", "onnxruntime", "--device", "cpu",
            "--out", str(bench_json), "--iters", "3", "--warmup", "1", "--candidates", "1,2",
            "--camera", "96x128", "--threads", "1",
        ]
    )  # fmt: skip
    assert rc == 0
    rep = json.loads(bench_json.read_text())
    assert rep["backend"]["backend"] == "onnxruntime" and rep["backend"]["providers"] == [
        "CPUExecutionProvider"
    ]
    assert rep["settings"]["candidates"] == [1, 2]
    assert rep["rollout"]["2"]["total_ms"]["p50"] > 0
    # The scores-only graph (score.onnx) ran, at the asked N and at the target's 64.
    assert rep["score"]["2"]["total_ms"]["p50"] > 0 and rep["score"]["64"]["total_ms"]["n"] >= 1
    assert rep["score_targets"]["score_64"]["target_ms"] == 100.0


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--model", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("embodied-wm export: error:") and "does not exist" in err and "\n" not in err
