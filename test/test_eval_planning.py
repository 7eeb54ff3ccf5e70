"""`embodied-wm eval-planner` for real, small: one simulated episode, the shipped models/tiny on PyTorch
(CPU), every controller. Checks what must hold whatever the model: holding still leaves the goal object
where it was, replaying the goal's own actions reproduces the goal exactly (the simulator is
deterministic), the model gets an Observation each step through the Pipeline, the outputs are written;
and that bad options end with one line and a non-zero exit."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import cv2
import pytest
from conftest import REPO, assert_one_line_error, requires_ros

MODEL = REPO / "models" / "tiny"
STEPS = 20
WARMUP = 3

pytestmark = requires_ros


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path, str]:
    from embodied_wm.cli import main

    out = tmp_path_factory.mktemp("planning")
    argv = [
        "eval-planner",
        "--model",
        str(MODEL),
        "--backend",
        "pytorch",
        "--device",
        "cpu",
        "--episodes",
        "1",
        # Episode 2 of seed 7000: its scripted push moves a cylinder ~6.7 cm within 20 steps (episodes 0
        # and 1 push too little that fast and are skipped, which is exercised too).
        "--first-episode",
        "0",
        "--steps",
        str(STEPS),
        "--warmup",
        str(WARMUP),
        "--num-candidates",
        "8",
        "--iterations",
        "1",
        "--active-dims",
        "0",
        "1",
        "2",
        "--max-speed",
        "0.3",
        "--out",
        str(out),
    ]
    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(argv)
    assert rc == 0
    return json.loads((out / "planning.json").read_text()), out, buf.getvalue()


def test_outputs_and_keys(result: tuple[dict, Path, str]) -> None:
    doc, out, stdout = result
    assert doc["schema"] == "embodied_wm.planning/1"
    assert {"settings", "model", "machine", "wall_s", "timing", "episodes", "skipped", "summary"} <= set(doc)
    assert doc["model"]["model_id"] == json.loads((MODEL / "config.json").read_text())["model_id"]
    assert doc["settings"]["planner"]["num_candidates"] == 8
    assert doc["settings"]["planner"]["active_dims"] == [0, 1, 2]
    # Planner settings not given come from planner_node's parameter table (config/planner.yaml).
    assert doc["settings"]["planner"]["goal_weight"] == 1.0
    assert doc["settings"]["planner"]["elite_fraction"] == 0.25
    assert doc["settings"]["goal_mode"] == "last"  # score_rollout's default, as the nodes score
    assert len(doc["episodes"]) == 1
    assert [s["episode"] for s in doc["skipped"]] == [0, 1]
    ep = doc["episodes"][0]
    assert ep["episode"] == 2 and ep["push_displacement_m"] > 0.01
    assert set(ep["results"]) == {"cem", "random", "zero", "scripted"}
    for r in ep["results"].values():
        assert len(r["object_dist_curve"]) == STEPS
        assert {"object_dist_norm", "pixel_mse", "finger_dist_m"} <= set(r)
    assert doc["timing"]["cem_step_ms"]["count"] == STEPS
    s = doc["summary"]
    assert set(s["controllers"]) == {"cem", "random", "zero", "scripted"}
    assert s["cem_vs_random"]["n"] == 1
    # planner_node's default objective (pixel goals) is what cem used, its figures under its name.
    assert doc["default_objective"] == "pixel" and s["objective"] == "pixel"
    assert doc["settings"]["planner"]["objective"] == "pixel"
    assert s["pixel"]["cem"] == s["controllers"]["cem"] and s["pixel"]["cem_vs_random"] == s["cem_vs_random"]
    assert "pixel" in ep["results"]["cem"]["score_spread_mean"]  # scored on the scores-only path
    png = cv2.imread(str(out / "planning.png"))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 300
    assert str(out / "planning.json") in stdout and "cem beat random in" in stdout


def test_zero_stays_and_scripted_reaches(result: tuple[dict, Path, str]) -> None:
    doc, _, _ = result
    r = doc["episodes"][0]["results"]
    # Holding still: the goal object stays put (settling moves it well under a millimetre).
    assert r["zero"]["object_dist_norm"] == pytest.approx(1.0, abs=2e-3)
    assert r["zero"]["goal_object_moved_m"] < 1e-3
    # Replaying the goal's actions from the same initial state reproduces it bit for bit.
    assert r["scripted"]["exact"] is True and doc["summary"]["scripted_exact"] is True
    assert r["scripted"]["object_dist_norm"] == 0.0
    assert r["scripted"]["pixel_mse"] == 0.0 and r["scripted"]["finger_dist_m"] == 0.0
    assert r["zero"]["pixel_mse"] > 0.0


def test_cem_sees_observations_through_the_pipeline(result: tuple[dict, Path, str]) -> None:
    doc, _, _ = result
    cem = doc["episodes"][0]["results"]["cem"]
    # Warm-up frames give the Pipeline an Observation before the first control step, and the Aligner
    # completes a frame when the next frame's audio arrives: the newest Observation is one frame old.
    assert cem["no_observation_steps"] == 0
    assert cem["delay_frames"] == [1]
    assert cem["pipeline"]["invalid"] == {}
    assert cem["pipeline"]["observations"] >= WARMUP + STEPS - 1
    # The model's scores differ between candidates (it is not action-blind): the pixel-goal term.
    assert cem["score_spread_mean"]["pixel"] > 0.0


def test_start_at_push_stroke(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Control starts where the scripted stroke begins: every controller replays the approach first."""
    from embodied_wm.cli import main

    out = tmp_path / "stroke"
    argv = ["eval-planner", "--episodes", "1", "--steps", "12", "--start-at", "push-stroke"]
    rc = main([*argv, "--controllers", "zero", "scripted", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    doc = json.loads((out / "planning.json").read_text())
    ep = doc["episodes"][0]
    assert ep["prefix_steps"] > 0 and ep["push_displacement_m"] > 0.01
    r = ep["results"]
    assert r["zero"]["object_dist_norm"] == pytest.approx(1.0, abs=2e-3)
    assert r["scripted"]["exact"] is True and r["scripted"]["object_dist_norm"] == 0.0
    assert doc["model"]["model_id"] is None  # no model is loaded when cem is not run
    assert "cem_vs_random" not in doc["summary"]


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--steps", "0"], "--steps must be >= 1"),
        (["--active-dims", "7"], "--active-dims"),
        (["--controllers", "cem", "teleport"], "teleport"),
        (["--backend", "magic"], "--backend"),
        (["--start-at", "middle"], "--start-at"),
        (["--goal-mode", "best"], "--goal-mode"),
    ],
)
def test_bad_options_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    assert_one_line_error("eval-planner", tmp_path / "o", args, needle)
