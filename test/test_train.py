"""Dataset (bags through the node's Pipeline) and training: windows, cache, split, loss goes down, resume,
evaluation. Records a tiny bag with the simulator CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from embodied_wm.model.config import load_config

FRAMES = 24


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: the CI machine is shared, and oversubscribed OpenMP threads are 10-50x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _sim_available() -> str | None:
    try:
        import embodied_wm.pipeline
        import embodied_wm.sim.cli  # noqa: F401
    except ImportError as exc:
        return f"simulator or pipeline not importable: {exc}"
    return None


@pytest.fixture(scope="module")
def bags(tmp_path_factory: pytest.TempPathFactory) -> Path:
    reason = _sim_available()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("bags")
    cmd = [sys.executable, "-m", "embodied_wm.sim.cli", "record", "--episodes", "2", "--frames", str(FRAMES),
           "--seed", "77", "--res", "64", "--out", str(out), "--quiet"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        pytest.fail(f"sim record failed: {res.stderr[-2000:]}")
    return out


@pytest.fixture(scope="module")
def episodes(bags: Path, tmp_path_factory: pytest.TempPathFactory):
    from embodied_wm.train.dataset import load_episodes

    cache = tmp_path_factory.mktemp("cache")
    return load_episodes([bags], load_config("tiny"), cache_dir=cache), cache


def test_dataset_windows(episodes, bags: Path) -> None:
    from embodied_wm.io.bag import iter_bag_messages
    from embodied_wm.train.dataset import WindowDataset, split_episodes

    eps, _ = episodes
    cfg = load_config("tiny")
    assert len(eps) == 2
    ep = eps[0]
    assert len(ep) == FRAMES and ep.raw["image"].shape == (FRAMES, 64, 64, 3)
    assert np.all(np.diff(ep.stamps_ns) == cfg.dt_ns)
    assert ep.aff_valid.all() and ep.affordance.shape == (FRAMES, 2, 64, 64)
    ds = WindowDataset(eps, cfg, teacher_flow=True)
    assert len(ds) == 2 * (FRAMES - cfg.horizon)
    t = 5
    item = ds[t]
    k = cfg.horizon
    np.testing.assert_array_equal(item["future"], ep.raw["image"][t + 1 : t + k + 1])
    np.testing.assert_array_equal(item["actions"], ep.raw["action"][t : t + k])
    assert item["flow"].shape == (k, 2, 64, 64) and np.isfinite(item["flow"]).all()
    prev = ep.raw["image"][t - 1].transpose(2, 0, 1) / np.float32(255)
    np.testing.assert_array_equal(item["prev_image"], prev)
    # The affordance target is the map published for frame t, straight from the bag.
    stamps = []
    for m in iter_bag_messages(ep.source, topics=["/ground_truth/affordance"]):
        s = m.msg.header.stamp
        if s.sec * 10**9 + s.nanosec == int(ep.stamps_ns[t]):
            gt = np.asarray(m.msg.data, np.float32).reshape(2, 64, 64)
            np.testing.assert_allclose(item["affordance"], gt, atol=1 / 255)
            stamps.append(s)
    assert stamps, "no affordance map with frame t's stamp"
    # Actions come from the Observations: the twist command in force at each frame.
    for m in iter_bag_messages(ep.source, topics=["/cmd_vel_ee"]):
        s = m.msg.header.stamp
        if s.sec * 10**9 + s.nanosec == int(ep.stamps_ns[t]):
            assert item["actions"][0][0] == pytest.approx(m.msg.twist.linear.x)
    tr, va = split_episodes(eps, 0.5, seed=0)
    assert len(tr) == 1 and len(va) == 1 and tr[0].source != va[0].source


def test_episode_cache_reused(episodes, bags: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import embodied_wm.train.dataset as dataset

    eps, cache = episodes
    assert len(list(Path(cache).glob("*.npz"))) == 2

    def no_decode(*a, **k):
        raise AssertionError("decoded again despite a cache entry")

    monkeypatch.setattr(dataset, "decode_episode", no_decode)
    again = dataset.load_episodes([bags], load_config("tiny"), cache_dir=cache)
    np.testing.assert_array_equal(again[0].raw["image"], eps[0].raw["image"])


def test_training_lowers_loss_resume_and_evaluate(episodes, bags: Path, tmp_path: Path) -> None:
    from embodied_wm.model.checkpoint import load_checkpoint
    from embodied_wm.model.world_model import WorldModel
    from embodied_wm.train.dataset import WindowDataset
    from embodied_wm.train.evaluate import evaluate_checkpoint
    from embodied_wm.train.losses import LossWeights
    from embodied_wm.train.trainer import TrainArgs, TrainStep, _to_batch, run_training

    eps, cache = episodes
    out = tmp_path / "run"
    args = TrainArgs(data=[str(bags)], out=str(out), steps=25, batch=4, lr=3e-3, val_every=25,
                     val_fraction=0.0, val_data=[str(bags)], max_val_samples=8, cache_dir=str(cache),
                     threads=1, warmup=5, progress=False)
    res = run_training(args)
    assert (out / "metrics.json").is_file() and res["history"][-1]["step"] == 25
    loaded = load_checkpoint(out)
    assert loaded.metadata["step"] == 25

    def loss_of(model: WorldModel) -> float:
        ds = WindowDataset(eps, loaded.cfg)
        step = TrainStep(model.eval(), LossWeights(), frame_steps=0)
        batch = _to_batch([ds[i] for i in range(0, len(ds), 3)], torch.device("cpu"))
        with torch.no_grad():
            return float(step(batch)[0])

    torch.manual_seed(0)
    before, after = loss_of(WorldModel(loaded.cfg)), loss_of(loaded.model)
    assert after < 0.9 * before, (before, after)

    # Resume continues from step 25 with the saved optimizer state.
    args.steps, args.resume = 30, True
    run_training(args)
    state = json.loads((out / "train_state.json").read_text())
    assert state["step"] == 30 and [h["step"] for h in state["history"]] == [25, 30]

    # --init starts a new run from those weights and that config (its normalisation statistics too) with
    # a fresh optimizer and schedule: at learning rate 0 the weights stay exactly the init's.
    ft = tmp_path / "finetune"
    init_args = TrainArgs(data=[str(bags)], out=str(ft), init=str(out), steps=2, batch=4, lr=0.0,
                          val_every=2, val_fraction=0.0, val_data=[str(bags)], max_val_samples=4,
                          cache_dir=str(cache), threads=1, warmup=1, progress=False)
    run_training(init_args)
    base, tuned = load_checkpoint(out), load_checkpoint(ft)
    assert json.loads((ft / "train_state.json").read_text())["step"] == 2
    assert tuned.cfg.action_mean == base.cfg.action_mean and tuned.cfg.proprio_std == base.cfg.proprio_std
    for (name, a), (_, b) in zip(base.model.state_dict().items(), tuned.model.state_dict().items()):
        assert torch.equal(a, b), name

    m = evaluate_checkpoint(out, [bags], max_samples=6, cache_dir=cache, baselines=True)
    k = loaded.cfg.horizon
    assert len(m["psnr_moving_per_step"]["model"]) == k and len(m["psnr_moving_per_step"]["copy_last"]) == k
    assert "contact_auroc" in m and "movable_auroc" in m
    ab = evaluate_checkpoint(
        out, [bags], ablate="audio_touch", max_samples=6, cache_dir=cache, baselines=False
    )
    assert ab["ablate"] == ["audio", "tactile"]


def test_cli_parser() -> None:
    import argparse

    from embodied_wm.train.cli import add_parser

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    add_parser(sub)
    ns = parser.parse_args(["train", "--data", "a", "b", "--out", "o", "--steps", "5", "--resume"])
    assert ns.data == ["a", "b"] and ns.steps == 5 and ns.resume and callable(ns.func)
    ns = parser.parse_args(["train", "--data", "a", "--out", "o", "--init", "models/tiny"])
    assert ns.init == "models/tiny" and not ns.resume


def test_teacher_flow_recovers_a_shift() -> None:
    from embodied_wm.train.dataset import teacher_flow

    rng = np.random.default_rng(0)
    cur = np.full((64, 64, 3), 200, np.uint8)
    cur[20:34, 20:34] = rng.integers(0, 80, (14, 14, 3))  # a textured dark object
    fut = np.roll(cur, 3, axis=1)  # moved 3 px right
    flow = teacher_flow(cur, fut[None])
    assert flow.shape == (1, 2, 64, 64) and flow.dtype == np.float32
    # Backward flow in grid units: future(x) = current(x - 3 px) -> -3 * 2 / 64 inside the object.
    inner = flow[0, :, 23:31, 25:33]
    assert abs(float(np.median(inner[0])) - (-3 * 2 / 64)) < 0.03
    assert abs(float(np.median(inner[1]))) < 0.03


def test_interrupted_run_resumes_the_same_schedule(bags: Path, episodes, tmp_path: Path) -> None:
    """A run stopped at step 6 and resumed ends with the weights of an uninterrupted 12-step run: the
    schedule, data order, decoded steps and augmentation draws depend on the step alone."""
    from safetensors.torch import load_file

    from embodied_wm.train.augment import AugmentConfig
    from embodied_wm.train.trainer import TrainArgs, run_training

    _, cache = episodes

    def args(out: Path, **kw: object) -> TrainArgs:
        base = dict(data=[str(bags)], out=str(out), steps=12, batch=4, lr=2e-3, val_every=100,
                    val_fraction=0.0, val_data=[str(bags)], max_val_samples=4, cache_dir=str(cache),
                    threads=1, warmup=3, progress=False, augment=AugmentConfig(), oversample=True)
        base.update(kw)
        return TrainArgs(**base)  # type: ignore[arg-type]

    run_training(args(tmp_path / "whole"))
    res = run_training(args(tmp_path / "split", stop_at=6))
    assert res["stopped_at"] == 6
    assert json.loads((tmp_path / "split" / "train_state.json").read_text())["step"] == 6
    run_training(args(tmp_path / "split", resume=True))
    a = load_file(str(tmp_path / "whole" / "model.safetensors"))
    b = load_file(str(tmp_path / "split" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k
