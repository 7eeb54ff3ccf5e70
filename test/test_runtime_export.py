"""ONNX export: both graphs reproduce PyTorch at N=1 and N=4, export.json is complete, and missing or
corrupt files give clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_runtime_common import shared_model

from embodied_wm.runtime.base import ModelFileError
from embodied_wm.runtime.onnx_export import (
    FP32_TOLERANCES,
    ensure_onnx,
    export_onnx,
    load_manifest,
)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict]:
    shared = shared_model(tmp_path_factory)  # export_onnx(ckpt, out, parity_candidates=(1, 4))
    return shared.ckpt, shared.export, shared.manifest


def test_export_writes_graphs_and_manifest(tiny_export: tuple[Path, Path, dict]) -> None:
    ckpt, out, manifest = tiny_export
    for f in ("encoder.onnx", "rollout.onnx", "config.json", "export.json"):
        assert (out / f).is_file(), f
    assert json.loads((out / "export.json").read_text()) == manifest
    assert manifest["model_id"] == json.loads((ckpt / "config.json").read_text())["model_id"]
    assert manifest["opset"] == 17
    enc, roll = manifest["graphs"]["encoder"], manifest["graphs"]["rollout"]
    assert [i["name"] for i in enc["inputs"]] == [
        "image",
        "prev_image",
        "audio_mel",
        "tactile",
        "proprio",
        "action",
        "mask",
    ]
    assert enc["outputs"][0]["name"] == "latent"
    assert [i["name"] for i in roll["inputs"]][-1] == "actions"
    shapes = {o["name"]: o["shape"] for o in roll["outputs"]}
    assert shapes["frames"] == ["N", 8, 3, 64, 64]
    assert shapes["affordance"] == ["N", 2, 64, 64]  # static dims pinned, candidate axis symbolic
    assert manifest["tolerances"]["fp32"] == FP32_TOLERANCES
    import onnx

    for f in ("encoder.onnx", "rollout.onnx"):
        m = onnx.load(str(out / f))
        onnx.checker.check_model(m)
        assert max(o.version for o in m.opset_import if o.domain in ("", "ai.onnx")) == 17


def test_parity_recorded_at_export(tiny_export: tuple[Path, Path, dict]) -> None:
    parity = tiny_export[2]["parity"]
    assert parity["ok"] and not parity["failures"]
    assert set(parity["rollout"]) == {"1", "4"}
    for n in ("1", "4"):
        assert parity["rollout"][n]["frames"] <= FP32_TOLERANCES["frames"]
        assert parity["rollout"][n]["affordance"] <= FP32_TOLERANCES["affordance"]
    assert max(parity["encoder"].values()) <= FP32_TOLERANCES["state"]


@pytest.mark.parametrize("n", [1, 4])
def test_onnx_parity_independent(tiny_export: tuple[Path, Path, dict], n: int) -> None:
    """Re-check parity here on fresh inputs (not the exporter's own report)."""
    import onnxruntime as ort
    import torch

    from embodied_wm.model.checkpoint import load_checkpoint
    from embodied_wm.model.world_model import ENCODER_INPUTS, ENCODER_OUTPUTS

    ckpt, out, _ = tiny_export
    model = load_checkpoint(ckpt).model
    enc = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    roll = ort.InferenceSession(str(out / "rollout.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(100 + n)
    ex = model.example_inputs(n_candidates=n)
    inputs = {k: torch.rand(ex[k].shape, generator=g) if k != "mask" else ex[k] for k in ENCODER_INPUTS}
    actions = torch.randn(n, model.cfg.horizon, model.cfg.action_dim, generator=g) * 0.3
    with torch.no_grad():
        state = model.encoder(*(inputs[k] for k in ENCODER_INPUTS))
        frames, aff = model.rollout_net(*state, actions)
    got_state = enc.run(None, {k: v.numpy() for k, v in inputs.items()})
    for name, a, b in zip(ENCODER_OUTPUTS, state, got_state):
        assert np.abs(a.numpy() - b).max() <= FP32_TOLERANCES["state"], name
    got_f, got_a = roll.run(
        None, {**{k: v for k, v in zip(ENCODER_OUTPUTS, got_state)}, "actions": actions.numpy()}
    )
    assert got_f.shape == (n, 8, 3, 64, 64) and got_a.shape == (n, 2, 64, 64)
    # Frames are not trivially the input (the randomised head moves pixels), so this compares real work.
    assert np.abs(frames.numpy() - state[-1].numpy()[:, None]).max() > 1e-3
    assert np.abs(frames.numpy() - got_f).max() <= FP32_TOLERANCES["frames"]
    assert np.abs(aff.numpy() - got_a).max() <= FP32_TOLERANCES["affordance"]


def test_ensure_onnx_reuses_cache(tiny_export: tuple[Path, Path, dict], tmp_path: Path) -> None:
    ckpt, out, manifest = tiny_export
    assert ensure_onnx(out) == out  # an export dir is used as is
    cached = ensure_onnx(ckpt, cache_dir=tmp_path)
    assert cached == tmp_path / "onnx" / f"{manifest['model_id']}-opset17"
    stamp = (cached / "export.json").stat().st_mtime_ns
    assert ensure_onnx(ckpt, cache_dir=tmp_path) == cached
    assert (cached / "export.json").stat().st_mtime_ns == stamp  # loaded, not exported again


def _copy(out: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(out, dst)
    return dst


def test_missing_onnx_file_is_a_clear_error(tiny_export: tuple[Path, Path, dict], tmp_path: Path) -> None:
    d = _copy(tiny_export[1], tmp_path)
    (d / "rollout.onnx").unlink()
    with pytest.raises(ModelFileError, match=r"missing rollout\.onnx"):
        load_manifest(d)


def test_corrupt_onnx_file_is_a_clear_error(tiny_export: tuple[Path, Path, dict], tmp_path: Path) -> None:
    d = _copy(tiny_export[1], tmp_path)
    data = bytearray((d / "encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the weights: still parses, silently wrong
    (d / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=r"encoder\.onnx.*sha256 differs"):
        load_manifest(d)


def test_truncated_onnx_rejected_by_backend(tiny_export: tuple[Path, Path, dict], tmp_path: Path) -> None:
    from embodied_wm.runtime.onnxruntime_backend import OnnxRuntimeBackend

    d = _copy(tiny_export[1], tmp_path)
    data = (d / "rollout.onnx").read_bytes()
    (d / "rollout.onnx").write_bytes(data[: len(data) // 3])
    with pytest.raises(ModelFileError, match=r"rollout\.onnx"):
        OnnxRuntimeBackend(d, device="cpu")


def test_missing_manifest_and_model_dir(tmp_path: Path) -> None:
    from embodied_wm.runtime.onnxruntime_backend import OnnxRuntimeBackend

    with pytest.raises(ModelFileError, match="does not exist"):
        OnnxRuntimeBackend(tmp_path / "nope", device="cpu")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelFileError, match="neither a checkpoint"):
        OnnxRuntimeBackend(tmp_path / "empty", device="cpu")
    with pytest.raises(ModelFileError, match=r"missing export\.json"):
        load_manifest(tmp_path / "empty")


def test_corrupt_checkpoint_is_a_clear_error(tiny_export: tuple[Path, Path, dict], tmp_path: Path) -> None:
    ckpt = tmp_path / "ckpt"
    shutil.copytree(tiny_export[0], ckpt)
    w = ckpt / "model.safetensors"
    w.write_bytes(w.read_bytes()[:1000])
    with pytest.raises(ModelFileError, match="safetensors"):
        export_onnx(ckpt, tmp_path / "out")
