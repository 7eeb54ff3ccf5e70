"""Checkpoint I/O: round trip, and every broken checkpoint fails with a clear CheckpointError."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from embodied_wm.model.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from embodied_wm.model.config import load_config
from embodied_wm.model.world_model import ENCODER_INPUTS, WorldModel


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: the CI machine is shared, and oversubscribed OpenMP threads are 10-50x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, WorldModel, str]:
    torch.manual_seed(3)
    model = WorldModel(load_config("tiny")).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    d = tmp_path_factory.mktemp("ckpt")
    mid = save_checkpoint(model, model.cfg, d, {"command": "test", "metrics": {"x": 1.0}})
    return d, model, mid


def _copy(saved_dir: Path, tmp_path: Path) -> Path:
    d = tmp_path / "c"
    shutil.copytree(saved_dir, d)
    return d


def test_round_trip_identical_outputs(saved) -> None:
    d, model, mid = saved
    loaded = load_checkpoint(d)
    assert loaded.model_id == mid and len(mid) == 16
    assert loaded.metadata["command"] == "test" and loaded.cfg == model.cfg
    ex = model.example_inputs(n_candidates=3)
    with torch.no_grad():
        a = model(*(ex[k] for k in ENCODER_INPUTS), ex["actions"])
        b = loaded.model(*(ex[k] for k in ENCODER_INPUTS), ex["actions"])
    for x, y in zip(a, b):
        assert torch.equal(x, y)
    # Saving the same weights again gives the same id (content hash).
    assert save_checkpoint(loaded.model, loaded.cfg, d.parent / "again") == mid


def test_missing_files(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"missing model\.safetensors"):
        load_checkpoint(d)
    with pytest.raises(CheckpointError, match=r"missing"):
        load_checkpoint(tmp_path / "nowhere")


def test_truncated(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path)
    w = d / "model.safetensors"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(d)
    w.write_bytes(b"\x01\x02")
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(d)


def test_corrupt_header(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path)
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[8:20] = b"\xff" * 12
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(d)


def test_pickle_rejected_without_unpickling(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path)
    model = saved[1]
    torch.save(model.state_dict(), d / "model.safetensors")  # a torch.save zip renamed
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(d)

    class Boom:
        def __reduce__(self):  # would run on unpickling
            return (exec, ("raise SystemExit('unpickled!')",))

    (d / "model.safetensors").write_bytes(pickle.dumps(Boom(), protocol=4))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(d)


def test_weights_of_another_config(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path)
    base = WorldModel(load_config("base"))
    other = tmp_path / "base"
    save_checkpoint(base, base.cfg, other)
    shutil.copy(other / "model.safetensors", d / "model.safetensors")
    with pytest.raises(CheckpointError, match="do not match config 'tiny'"):
        load_checkpoint(d)


def test_model_id_mismatch(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path)
    w = d / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x55  # flip bits inside tensor data: still a valid file
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="model_id mismatch"):
        load_checkpoint(d)
    d2 = _copy(saved[0], tmp_path / "x")
    doc = json.loads((d2 / "config.json").read_text())
    doc["config"]["mel_std"] = 7.0  # config edited after saving
    (d2 / "config.json").write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match="model_id mismatch"):
        load_checkpoint(d2)


def test_invalid_config_json(saved, tmp_path: Path) -> None:
    d = _copy(saved[0], tmp_path)
    (d / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="invalid checkpoint config"):
        load_checkpoint(d)


def test_shipped_tiny_model_loads() -> None:
    shipped = Path(__file__).resolve().parents[1] / "models" / "tiny"
    loaded = load_checkpoint(shipped)
    assert loaded.cfg.name == "tiny" and loaded.model.num_params() <= 5_000_000
    metrics = json.loads((shipped / "metrics.json").read_text())
    assert metrics["model_id"] == loaded.model_id, "models/tiny/metrics.json describes other weights"
    assert sum(p.stat().st_size for p in shipped.iterdir()) < 20 * 1024 * 1024
