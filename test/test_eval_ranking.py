"""`embodied-wm eval-ranking` for real, small: one simulated episode, the shipped models/tiny on ONNX
Runtime (CPU), a handful of candidates executed in MuJoCo from a snapshot. Checks the pieces it is built
from (physics snapshot/restore replays bit for bit; the colour tracker follows a moved object and ignores
a look-alike; the ranking statistics), the document it writes, and one-line errors for bad options."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO, assert_one_line_error, requires_ros

MODEL = REPO / "models" / "tiny"


def test_snapshot_restore_replays_bit_for_bit() -> None:
    from embodied_wm.sim.episode import Episode

    ep = Episode(7000, 2, res=32, ground_truth=False)
    try:
        for _ in range(3):
            ep.step(np.array([0.05, 0.0, -0.05, 0, 0, 0]))
        snap = ep.sim.snapshot()
        push = [np.array([0.1, -0.05, -0.1, 0, 0, 0])] * 6
        for a in push:
            ep.step(a)
        first = (ep.sim.finger_pos(), ep.sim.object_poses(), ep.sim.render(False)[0])
        ep.sim.restore(snap)
        for _ in push:
            ep.step(np.zeros(6))
        still = ep.sim.finger_pos()
        ep.sim.restore(snap)
        for a in push:
            ep.step(a)
        again = (ep.sim.finger_pos(), ep.sim.object_poses(), ep.sim.render(False)[0])
    finally:
        ep.close()
    for a, b in zip(first, again):
        assert np.array_equal(a, b)
    assert np.linalg.norm(still - first[0]) > 0.02  # restoring mattered: another action, another place


def _scene() -> tuple[np.ndarray, np.ndarray]:
    img = np.full((48, 48, 3), (200, 170, 150), np.uint8)  # table
    img[10:16, 10:16] = (40, 90, 220)  # the object
    img[10:16, 30:36] = (40, 90, 220)  # a look-alike, outside the object mask
    mask = np.zeros((48, 48), bool)
    mask[10:16, 10:16] = True
    return img, mask


def test_object_centroids_follow_the_object_and_ignore_a_lookalike() -> None:
    from embodied_wm.eval.ranking import object_centroids, track_scores

    img, mask = _scene()
    moved = img.copy()
    moved[10:16, 10:16] = (200, 170, 150)
    moved[14:20, 16:22] = (45, 95, 215)  # shifted by (+6, +4) px, shade slightly changed
    gone = img.copy()
    gone[10:16, 10:16] = (200, 170, 150)
    cen = object_centroids(np.stack([img, moved, gone]), img, mask)
    assert cen[0] == pytest.approx([12.5, 12.5])
    assert cen[1] == pytest.approx([18.5, 16.5])  # the look-alike at u=30..35 does not pull it
    assert np.isnan(cen[2]).all()
    goal_uv = np.array([18.5, 16.5])
    scores = track_scores(np.stack([img, moved, gone])[:, None], img, mask, goal_uv)
    assert scores[0] == pytest.approx(-1.0) and scores[1] == pytest.approx(0.0)
    assert scores[2] == pytest.approx(-1.5)  # lost: worse than no progress


def test_rank_quality() -> None:
    from embodied_wm.eval.ranking import rank_quality

    dist = np.array([0.2, 0.5, 0.9, 1.0])
    good = rank_quality(-dist, dist)
    assert good["spearman"] == pytest.approx(1.0) and good["picked"] == 0.2
    assert good["gap_closed"] == pytest.approx(1.0)
    bad = rank_quality(dist, dist)
    assert bad["spearman"] == pytest.approx(-1.0) and bad["picked"] == 1.0 and bad["gap_closed"] < 0
    flat = rank_quality(np.zeros(4), dist)
    assert flat["spearman"] is None and flat["picked"] == 0.2  # argmax of a tie: the first
    ties = rank_quality(-dist, np.ones(4))
    assert ties["spearman"] is None and ties["gap_closed"] is None


def test_candidate_set() -> None:
    from embodied_wm.eval.ranking import candidate_set

    c = candidate_set(16, 7, 0.1, np.random.default_rng(0))
    assert c.shape == (16, 7, 2) and np.abs(c).max() <= 0.1 + 1e-7
    lines = c[:8]
    assert np.allclose(lines, lines[:, :1])  # straight lines: one velocity over the horizon
    speeds = np.linalg.norm(lines[:, 0], axis=1)
    assert np.allclose(speeds[:4], 0.1) and np.allclose(speeds[4:], 0.05)
    assert not np.allclose(c[8:], c[8:, :1])  # the rest vary per step


@requires_ros
def test_eval_ranking_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from embodied_wm.cli import main

    out = tmp_path / "rank"
    argv = ["eval-ranking", "--model", str(MODEL), "--backend", "onnxruntime", "--device", "cpu"]
    argv += ["--episodes", "1", "--state-steps", "0", "4", "--candidates", "8", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    doc = json.loads((out / "ranking.json").read_text())
    assert doc["schema"] == "embodied_wm.ranking/1"
    assert doc["model"]["model_id"] == json.loads((MODEL / "config.json").read_text())["model_id"]
    assert doc["settings"]["planner"]["goal_weight"] == 1.0  # node_score weights: config/planner.yaml
    assert [s["state_step"] for s in doc["states"]] == [0, 4]
    for st in doc["states"]:
        d = st["dist_norm"]
        assert 0 <= d["best"] <= d["median"] <= d["worst"] and d["best"] <= d["mean"] <= d["worst"]
        assert 0.0 <= st["moved_fraction"] <= 1.0
        assert set(st["objectives"]) == {"goal_last", "goal_region", "track", "pixel", "node_score", "latent"}
        for obj, by_src in st["objectives"].items():
            assert set(by_src) == ({"model"} if obj in ("node_score", "latent") else {"model", "true"})
            for q in by_src.values():
                assert d["best"] - 1e-9 <= q["picked"] <= d["worst"] + 1e-9
    # Distances are normalized by the goal object's distance where the stroke began: state 0 is there.
    assert doc["states"][0]["dist_norm"]["at_state"] == pytest.approx(1.0, abs=1e-12)
    # Four steps into the scripted push the finger is at the object: some candidates move it.
    assert doc["states"][1]["moved_fraction"] > 0
    s = doc["summary"]
    assert s["states"] == 2 and set(s["objectives"]["track"]) == {"model", "true"}
    # planner_node's default objective is named, and its figures sit under that name.
    assert doc["default_objective"] == "pixel" and set(s["objectives"]["pixel"]) == {"model", "true"}
    mean = np.mean([st["dist_norm"]["mean"] for st in doc["states"]])
    best = np.mean([st["dist_norm"]["best"] for st in doc["states"]])
    for obj, by_src in s["objectives"].items():
        for src, q in by_src.items():
            # Pooled over the states at once: (random pick - picked) / (random pick - best) of the means.
            picked = np.mean([st["objectives"][obj][src]["picked"] for st in doc["states"]])
            assert q["gap_closed_pooled"] == pytest.approx((mean - picked) / (mean - best)), (obj, src)
    st0 = doc["states"][0]["pixel_goal"]
    assert len(st0["designated_uv"]) == 1 and len(st0["goal_uv"]) == 1
    png = cv2.imread(str(out / "ranking.png"))
    assert png is not None and png.shape[0] > 100 and png.shape[1] > 400
    stdout = capsys.readouterr().out
    assert str(out / "ranking.json") in stdout and "gap closed" in stdout


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--candidates", "2"], "--candidates must be >= 4"),
        (["--state-steps", "25"], "--state-steps must lie in"),
        (["--max-speed", "0"], "--max-speed"),
        (["--backend", "linear"], "action-blind"),
        (["--steps", "0"], "--steps must be >= 1"),
    ],
)
def test_bad_options_one_line(tmp_path: Path, args: list[str], needle: str) -> None:
    assert_one_line_error("eval-ranking", tmp_path / "o", args, needle)
