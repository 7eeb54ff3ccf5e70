"""Backend selection with the real availability probes of this machine (no library mocks)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_runtime_common import shared_model

from embodied_wm.runtime.base import BackendUnavailableError, ModelFileError
from embodied_wm.runtime.select import AUTO_ORDER, create_backend, probe
from embodied_wm.runtime.tensorrt_backend import tensorrt_flavour_present
from embodied_wm.runtime.torch_backend import cuda_available

HAS_TRT = tensorrt_flavour_present() is not None
HAS_CUDA = cuda_available()[0]


def _ort_has_gpu() -> bool:
    from embodied_wm.runtime.onnxruntime_backend import GPU_PROVIDERS, available_providers

    return any(p in available_providers() for p in GPU_PROVIDERS)


CPU_ONLY = not HAS_TRT and not HAS_CUDA and not _ort_has_gpu()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory).ckpt


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory).cache


def test_probes_match_this_machine() -> None:
    trt = probe("tensorrt", "cuda")
    assert (trt is None) == (HAS_TRT and HAS_CUDA)
    if not HAS_TRT:
        assert trt is not None and trt.startswith("TensorRT: python module 'tensorrt' not found")
    assert (probe("pytorch", "cuda") is None) == HAS_CUDA
    assert probe("onnxruntime", "cpu") is None
    assert probe("pytorch", "cpu") is None


@pytest.mark.skipif(not CPU_ONLY, reason="checks the CPU-only order; this machine has TensorRT or CUDA")
def test_auto_on_cpu_only_machine_picks_onnxruntime_cpu(ckpt: Path, cache: Path) -> None:
    be = create_backend("auto", ckpt, cache_dir=cache, threads=1)
    assert be.name == "onnxruntime"
    desc = be.describe()
    assert desc["device"] == "cpu"
    skipped = desc["skipped"]
    assert [s["backend"] for s in skipped] == ["tensorrt (cuda)", "onnxruntime (cuda)", "pytorch (cuda)"]
    assert "tensorrt" in skipped[0]["reason"].lower()
    assert "execution provider" in skipped[1]["reason"]
    assert "CUDA" in skipped[2]["reason"]
    assert desc["selection"] == {
        "requested": "auto",
        "chosen": "onnxruntime",
        "device": "cpu",
        "skipped": skipped,
    }


def test_auto_follows_order_of_real_probes(ckpt: Path, cache: Path) -> None:
    """Whatever this machine has: auto picks the first candidate whose probe passes, on the CPU side."""
    be = create_backend("auto", ckpt, device="cpu", cache_dir=cache)
    first_cpu = next(n for n, d in AUTO_ORDER if d == "cpu" and probe(n, d, ckpt) is None)
    assert be.name == first_cpu
    assert [s["reason"] for s in be.describe()["skipped"][:3]] == ["device='cpu' requested"] * 3


def test_auto_with_onnx_only_dir_skips_pytorch(ckpt: Path, cache: Path) -> None:
    from embodied_wm.runtime.onnx_export import ensure_onnx

    export = ensure_onnx(ckpt, cache_dir=cache)
    assert probe("pytorch", "cpu", export) is not None
    be = create_backend("auto", export, device="cpu")
    assert be.name == "onnxruntime"


@pytest.mark.skipif(HAS_TRT, reason="TensorRT is installed here")
def test_explicit_tensorrt_unavailable_has_one_clear_message(ckpt: Path) -> None:
    with pytest.raises(BackendUnavailableError) as info:
        create_backend("tensorrt", ckpt)
    msg = str(info.value)
    assert msg.startswith("TensorRT: python module 'tensorrt' not found")
    assert "\n" not in msg


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is available here")
def test_explicit_pytorch_cuda_unavailable(ckpt: Path) -> None:
    with pytest.raises(BackendUnavailableError, match="PyTorch CUDA"):
        create_backend("pytorch", ckpt, device="cuda")


def test_explicit_choices(ckpt: Path, cache: Path) -> None:
    be = create_backend("onnxruntime", ckpt, device="cpu", cache_dir=cache, threads=1)
    assert be.name == "onnxruntime" and be.describe()["intra_op_threads"] == 1
    be = create_backend("pytorch", ckpt, device="cpu")
    assert be.name == "pytorch" and be.describe()["skipped"] == []


def test_baselines_take_model_geometry(ckpt: Path) -> None:
    be = create_backend("linear", ckpt)
    assert be.name == "linear" and be.image_size == (64, 64) and be.horizon == 8
    be = create_backend("copy_last", None, image_size=(32, 32), horizon=3)
    assert be.image_size == (32, 32) and be.horizon == 3


def test_bad_requests(ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown backend"):
        create_backend("tflite", ckpt)
    with pytest.raises(ValueError, match="does not take option"):
        create_backend("pytorch", ckpt, device="cpu", intra_op_threads=2)
    with pytest.raises(ModelFileError, match="no model directory"):
        create_backend("auto", None)
    with pytest.raises(ModelFileError, match="does not exist"):
        create_backend("auto", tmp_path / "missing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"\x80\x04garbage")
    (bad / "config.json").write_text((ckpt / "config.json").read_text())
    with pytest.raises(ModelFileError, match="pickle"):
        create_backend("auto", bad, device="cpu", cache_dir=tmp_path / "c")
