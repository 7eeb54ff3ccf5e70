"""`embodied-wm eval` end to end on synthetic bags: outputs and schema, report images, baselines on a
static scene, damaged / old / sqlite3 bags, robustness, and one-line errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from embodied_wm.eval.cli import main
from embodied_wm.eval.synthetic import SceneConfig, write_bag

FRAMES = 16


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("evalbags")
    out = {
        "moving": write_bag(d / "moving", SceneConfig(frames=FRAMES, res=48)),
        "static": write_bag(d / "static", SceneConfig(frames=FRAMES, res=48, velocity=(0.0, 0.0))),
        "nocam": write_bag(d / "nocam", SceneConfig(frames=4, res=16, camera=False)),
        "old": write_bag(d / "old", SceneConfig(frames=FRAMES, res=48), storage="sqlite3", version=2),
        "sqlite_jpeg": write_bag(
            d / "sqlite_jpeg",
            SceneConfig(
                frames=FRAMES,
                res=48,
                image_transport="compressed",
                compressed_format="jpg",
                audio=False,
                tactile=False,
            ),
            storage="sqlite3",
            version=8,
        ),
    }
    trunc = d / "truncated"
    trunc.mkdir()
    src = next(out["moving"].glob("*.mcap"))
    data = src.read_bytes()
    (trunc / "rec_0.mcap").write_bytes(data[: int(len(data) * 0.6)])  # no metadata.yaml: recorder died
    out["truncated"] = trunc
    return out


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def test_outputs_schema_and_report(
    bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc, stdout, err = _run([str(bags["moving"]), "--out", str(out), "--samples", "2"], capsys)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == FRAMES
    assert summary["horizon_s"] == pytest.approx([0.1 * k for k in range(1, 9)])
    assert set(summary["methods"]) == {"copy_last", "linear"}
    for m in summary["methods"].values():
        assert set(m) == {"psnr", "psnr_moving", "ssim"}
        assert all(len(v) == 8 for v in m.values())
    # Linear extrapolation beats copy-last on the moving square, most of all on the moving pixels.
    lin, cl = summary["methods"]["linear"], summary["methods"]["copy_last"]
    assert lin["psnr_moving"][0] > cl["psnr_moving"][0] + 3
    assert "total" in summary["latency_ms"] and set(summary["latency_ms"]["total"]) == {"p50", "p99"}
    assert summary["stopped"] == [] and summary["bags"][0]["camera_topic"] == "/camera/image_raw"

    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == 2 * FRAMES
    rec = json.loads(lines[0])
    assert {"bag", "stamp_ns", "method", "psnr", "psnr_moving", "ssim", "latency_ms"} <= set(rec)

    html = (out / "report.html").read_text()
    srcs = re.findall(r"src='([^']+)'", html)
    assert any("metrics_vs_horizon" in s for s in srcs) and any("latency_hist" in s for s in srcs)
    assert sum("sheet_" in s for s in srcs) == 2
    for s in srcs:
        assert (out / s).is_file() and (out / s).stat().st_size > 1000, s
    assert "copy_last" in stdout and "frames/s" in stdout


def test_static_scene_copy_last_is_exact(
    bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc, _, err = _run([str(bags["static"]), "--out", str(out), "--no-report"], capsys)
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    cl = summary["methods"]["copy_last"]
    assert cl["psnr"] == [100.0] * 8  # capped: identical frames
    assert cl["ssim"] == pytest.approx([1.0] * 8)
    assert cl["psnr_moving"] == [None] * 8  # nothing moves: every step excluded
    assert not (out / "report.html").exists()


def test_model_with_affordance_ground_truth(
    bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch = pytest.importorskip("torch")
    from embodied_wm.model.checkpoint import save_checkpoint
    from embodied_wm.model.config import load_config
    from embodied_wm.model.world_model import WorldModel

    torch.manual_seed(0)
    cfg = load_config("tiny")
    save_checkpoint(WorldModel(cfg).eval(), cfg, tmp_path / "model")
    out = tmp_path / "out"
    rc, _, err = _run(
        [
            str(bags["moving"]),
            "--model",
            str(tmp_path / "model"),
            "--backend",
            "pytorch",
            "--out",
            str(out),
            "--max-frames",
            "10",
            "--samples",
            "1",
        ],
        capsys,
    )
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 10 and summary["backend"] == "pytorch" and summary["model_id"]
    assert list(summary["methods"]) == ["model", "copy_last", "linear"]
    assert summary["image_size"] == [64, 64]  # baselines compared at the model's resolution
    for ch in ("contact", "movable"):
        aff = summary["affordance"][ch]
        assert 0.0 <= aff["auroc"] <= 1.0 and 0.0 <= aff["ap"] <= 1.0
    assert {"encode", "rollout", "decode", "align", "total"} <= set(summary["latency_ms"])
    html = (out / "report.html").read_text()
    assert "Affordance" in html
    for s in re.findall(r"src='([^']+)'", html):
        assert (out / s).is_file()


def test_truncated_bag_evaluates_partially(
    bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc, _, err = _run([str(bags["truncated"]), "--out", str(out), "--no-report"], capsys)
    assert rc == 0, err
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "damaged" in warnings[0]
    summary = json.loads((out / "summary.json").read_text())
    assert 0 < summary["frames"] < FRAMES
    assert summary["stopped"] and summary["stopped"][0]["at"]


def test_old_version_and_sqlite3_compressed_in_parallel(
    bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    rc, _, err = _run(
        [str(bags["old"]), str(bags["sqlite_jpeg"]), "--out", str(out), "--workers", "2", "--no-report"],
        capsys,
    )
    assert rc == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 2 * FRAMES
    assert [b["camera_topic"] for b in summary["bags"]] == [
        "/camera/image_raw",
        "/camera/image_raw/compressed",
    ]
    # Results come back in bag order whatever worker finished first.
    recs = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert recs[0]["bag"] == str(bags["old"]) and recs[-1]["bag"] == str(bags["sqlite_jpeg"])


def test_robustness_deltas(bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    args = [
        str(bags["moving"]),
        "--out",
        str(out),
        "--robustness",
        "--perturbations",
        "noise",
        "occlusion",
        "drop_frames",
        "drop_audio",
        "--max-frames",
        "12",
    ]
    rc, _, err = _run(args, capsys)
    assert rc == 0, err
    rob = json.loads((out / "summary.json").read_text())["robustness"]
    assert set(rob["conditions"]) == {"noise", "occlusion", "drop_frames", "drop_audio"}
    noise = rob["conditions"]["noise"]["delta"]["copy_last"]["psnr"]
    assert all(d < 0 for d in noise if d is not None)  # noise in the input costs copy-last PSNR
    # Baselines ignore audio: dropping it changes nothing.
    assert all(d == 0 for d in rob["conditions"]["drop_audio"]["delta"]["linear"]["psnr"] if d is not None)
    preds = rob["conditions"]["drop_frames"]["predictions"]["copy_last"]
    assert 0 < preds < 12
    html = (out / "report.html").read_text()
    assert "robustness.png" in html and (out / "report_files" / "robustness.png").is_file()
    # Deterministic: the same seed gives the same numbers.
    rc, _, _ = _run([*args[:2], str(tmp_path / "again"), *args[3:], "--no-report"], capsys)
    again = json.loads((tmp_path / "again" / "summary.json").read_text())["robustness"]
    assert again["conditions"]["noise"]["delta"] == rob["conditions"]["noise"]["delta"]


def test_bag_without_camera_exits_with_one_line(bags: dict[str, Path], tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "embodied_wm.eval.cli", str(bags["nocam"]), "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "no camera topic" in lines[0] and "/audio" in lines[0] and "/tactile" in lines[0]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--workers", "0"], "--workers"),
        (["--model", "/nonexistent/model"], "no such directory"),
        (["--max-frames", "0"], "--max-frames"),
        (["--perturbations", "noise"], "needs --robustness"),
        (["--camera-topic", "/nope"], "none of the camera topics"),
    ],
)
def test_bad_options_one_line(
    bags: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    rc, _, err = _run([str(bags["static"]), "--out", str(tmp_path / "o"), *extra], capsys)
    assert rc == 1
    assert len(err.strip().splitlines()) == 1 and needle in err, err


def test_missing_bag_and_bad_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run([str(tmp_path / "missing"), "--out", str(tmp_path / "o")], capsys)
    assert rc == 1 and "no such file" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--out", str(tmp_path / "o"), "--backend", "bogus"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "--backend" in err
