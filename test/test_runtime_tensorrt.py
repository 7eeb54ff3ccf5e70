"""TensorRT backend. Without TensorRT or a GPU (this machine, CI) only the "unavailable" behaviour and the
pure helpers are tested; the engine tests skip with the reason."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_runtime_common import make_observations, shared_model

from embodied_wm.runtime.base import BackendUnavailableError
from embodied_wm.runtime.engine_cache import EngineCache
from embodied_wm.runtime.onnx_export import CANDIDATE_PROFILE
from embodied_wm.runtime.tensorrt_backend import (
    TensorRTBackend,
    engine_shapes,
    import_tensorrt,
    tensorrt_flavour_present,
)
from embodied_wm.runtime.torch_backend import cuda_available

HAS_TRT = tensorrt_flavour_present() is not None
HAS_CUDA = cuda_available()[0]
needs_trt = pytest.mark.skipif(
    not (HAS_TRT and HAS_CUDA),
    reason=f"needs the tensorrt module and a CUDA GPU (tensorrt: {HAS_TRT}, CUDA: {HAS_CUDA})",
)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return shared_model(tmp_path_factory).ckpt


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_missing_tensorrt_is_reported_clearly(ckpt: Path, tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailableError, match=r"^TensorRT: python module 'tensorrt' not found"):
        import_tensorrt()
    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        TensorRTBackend(ckpt, cache_dir=tmp_path)
    assert not (tmp_path / "onnx").exists()  # fails before exporting anything


@pytest.mark.skipif(HAS_TRT, reason="tensorrt is installed here")
def test_build_engine_cli_without_tensorrt(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from embodied_wm.runtime.cli import main

    rc = main(["build-engine", "--model", str(ckpt), "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 1
    assert "build-engine: error: TensorRT: python module 'tensorrt' not found" in err


def test_engine_shapes_from_manifest() -> None:
    manifest = {
        "graphs": {
            "encoder": {"inputs": [{"name": "image", "shape": [1, 3, 64, 64]}]},
            "rollout": {
                "inputs": [{"name": "latent", "shape": [1, 256]}, {"name": "actions", "shape": ["N", 8, 6]}]
            },
        }
    }
    shapes = engine_shapes(manifest, CANDIDATE_PROFILE)
    assert shapes["encoder"] == {"image": [1, 3, 64, 64]}
    assert shapes["rollout"]["latent"] == [1, 256]
    assert shapes["rollout"]["actions"] == [[1, 8, 6], [64, 8, 6], [256, 8, 6]]


@needs_trt
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_build_cache_and_parity(ckpt: Path, tmp_path: Path) -> None:
    """fp32 engines match ONNX Runtime; a second backend loads the cached engines instead of building;
    a corrupted engine file is detected and rebuilt."""
    from embodied_wm.runtime.onnxruntime_backend import OnnxRuntimeBackend

    ref = OnnxRuntimeBackend(ckpt, device="cpu", cache_dir=tmp_path)
    be = TensorRTBackend(ckpt, precision="fp32", cache_dir=tmp_path)
    assert all(s.startswith("built") for s in be.describe()["engines"].values())
    for obs in make_observations(3):
        a, b = ref.predict(obs), be.predict(obs)
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= 2
        assert np.abs(a.affordance - b.affordance).max() <= 1e-3
    cand = np.random.default_rng(0).normal(0, 0.3, (300, 8, 6)).astype(np.float32)  # > profile max: chunked
    ra, rb = ref.rollout(cand[:4]), be.rollout(cand)
    assert rb.frames.shape[0] == 300
    assert np.abs(ra.frames.astype(int) - rb.frames[:4].astype(int)).max() <= 2

    again = TensorRTBackend(ckpt, precision="fp32", cache_dir=tmp_path)
    assert set(again.describe()["engines"].values()) == {"loaded"}
    path = Path(again.describe()["engine_paths"]["rollout"])
    path.write_bytes(path.read_bytes()[:1000])
    rebuilt = TensorRTBackend(ckpt, precision="fp32", cache_dir=tmp_path)
    assert rebuilt.describe()["engines"]["rollout"].startswith("built (cache corrupt")
    forced = TensorRTBackend(ckpt, precision="fp32", cache_dir=tmp_path, force_engine_update=True)
    assert all("forced" in s for s in forced.describe()["engines"].values())
    assert EngineCache(tmp_path / "engines").entries()


@needs_trt
@pytest.mark.tensorrt
@pytest.mark.gpu
def test_fp16_and_cuda_graph(ckpt: Path, tmp_path: Path) -> None:
    from embodied_wm.runtime.onnxruntime_backend import OnnxRuntimeBackend

    ref = OnnxRuntimeBackend(ckpt, device="cpu", cache_dir=tmp_path)
    be = TensorRTBackend(ckpt, precision="fp16", cache_dir=tmp_path, cuda_graph=True)
    for obs in make_observations(3):
        a, b = ref.predict(obs), be.predict(obs)
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).mean() < 2.0
        assert np.abs(a.affordance - b.affordance).max() < 5e-2
    r1 = be.rollout(np.zeros((4, 8, 6), np.float32))
    r2 = be.rollout(np.zeros((4, 8, 6), np.float32))  # graph replay
    assert np.array_equal(r1.frames, r2.frames)


def test_int8_calibration_batches_from_bag(
    ckpt: Path, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The calibration data path is pure Python + ONNX Runtime: bag -> Pipeline -> encoder inputs and
    rollout inputs named and shaped like the engines' inputs."""
    import onnxruntime as ort

    from embodied_wm.eval.synthetic import SceneConfig, write_bag
    from embodied_wm.runtime.learned import read_config
    from embodied_wm.runtime.onnx_export import ensure_onnx
    from embodied_wm.runtime.tensorrt_backend import calibration_batches

    bag = write_bag(tmp_path / "bag", SceneConfig(frames=12))
    export = ensure_onnx(ckpt, cache_dir=shared_model(tmp_path_factory).cache)
    cfg, _ = read_config(export)
    batches = calibration_batches(bag, export, cfg, max_batches=6)
    assert len(batches["encoder"]) == len(batches["rollout"]) == 6
    for graph in ("encoder", "rollout"):
        sess = ort.InferenceSession(str(export / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
        for inp in sess.get_inputs():
            arr = batches[graph][0][inp.name]
            assert arr.dtype == np.float32
            assert list(arr.shape) == [1 if isinstance(d, str) else d for d in inp.shape]
        sess.run(None, batches[graph][-1])  # the batches are valid inputs
    # Motion is seen: later frames have a previous image that differs from the current one.
    enc = batches["encoder"][-1]
    assert np.abs(enc["image"] - enc["prev_image"]).max() > 0.1


# ------------------------------------------------------------------------------------------------------
# TensorRT >= 11 builds strongly typed networks: the fp16 and Q/DQ graphs it is given. Made and checked
# here with ONNX Runtime (what TensorRT makes of them is not verified without TensorRT).
# ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, np.ndarray]]]:
    from embodied_wm.eval.synthetic import SceneConfig, write_bag
    from embodied_wm.runtime.learned import read_config
    from embodied_wm.runtime.tensorrt_backend import calibration_batches

    shared = shared_model(tmp_path_factory)
    bag = write_bag(tmp_path_factory.mktemp("calib") / "bag", SceneConfig(frames=16))
    cfg, _ = read_config(shared.export)
    return calibration_batches(bag, shared.export, cfg, max_batches=16)


def test_fp16_graph_keeps_io_fp32_and_tracks_fp32(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, calib: dict[str, list[dict[str, np.ndarray]]]
) -> None:
    import onnx

    from embodied_wm.runtime.onnx_export import FP16_TOLERANCES
    from embodied_wm.runtime.onnx_precision import fp16_onnx, ort_parity

    export = shared_model(tmp_path_factory).export
    for graph in ("encoder", "rollout"):
        dst = fp16_onnx(export / f"{graph}.onnx", tmp_path / f"{graph}.fp16.onnx")
        model = onnx.load(str(dst))
        io = [*model.graph.input, *model.graph.output]
        assert all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in io)
        sizes: dict[int, int] = {}
        for t in model.graph.initializer:
            n = int(np.prod(t.dims)) if t.dims else 1
            sizes[t.data_type] = sizes.get(t.data_type, 0) + n
        fp16, fp32 = sizes.get(onnx.TensorProto.FLOAT16, 0), sizes.get(onnx.TensorProto.FLOAT, 0)
        assert fp16 > 0.9 * (fp16 + fp32), (graph, fp16, fp32)  # the weights are fp16
        parity = ort_parity(export / f"{graph}.onnx", dst, calib[graph][:4])
        for name in ("frames", "affordance"):
            if name in parity:
                assert parity[name]["max"] < FP16_TOLERANCES[name], (graph, name, parity[name])
        if graph == "encoder":
            assert parity["latent"]["max"] < 2e-2, parity["latent"]


def test_int8_qdq_graph_follows_tensorrt_rules_and_tracks_fp32(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, calib: dict[str, list[dict[str, np.ndarray]]]
) -> None:
    """Explicit quantization: scales from the bag's calibration batches, int8 symmetric Q/DQ only in
    front of Conv/Gemm/MatMul, and on held-out batches the quantized graph stays near fp32."""
    import onnx

    from embodied_wm.runtime.onnx_precision import (
        QDQ_OP_TYPES,
        int8_qdq_onnx,
        ort_parity,
        tensorrt_qdq_problems,
    )

    export = shared_model(tmp_path_factory).export
    for graph in ("encoder", "rollout"):
        src = export / f"{graph}.onnx"
        dst = int8_qdq_onnx(src, tmp_path / f"{graph}.int8.onnx", calib[graph][::2])
        assert tensorrt_qdq_problems(dst) == []
        model = onnx.load(str(dst))
        producers = {o: n for n in model.graph.node for o in n.output}

        def source(tensor: str, producers: dict[str, Any] = producers) -> str:
            """The op that really produces ``tensor``: the exporter shares weights through Identity."""
            node = producers.get(tensor)
            while node is not None and node.op_type == "Identity":
                node = producers.get(node.input[0])
            return node.op_type if node is not None else "initializer/input"

        readers_of_dq = {
            n.op_type
            for n in model.graph.node
            if n.op_type != "Identity" and any(source(i) == "DequantizeLinear" for i in n.input if i)
        }
        assert readers_of_dq and readers_of_dq <= set(QDQ_OP_TYPES), readers_of_dq
        # Data and weight inputs of every linear layer are quantized (biases stay float).
        for n in model.graph.node:
            if n.op_type in QDQ_OP_TYPES:
                assert [source(i) for i in n.input[:2]] == ["DequantizeLinear"] * 2, n.name
        parity = ort_parity(src, dst, calib[graph][1::2])
        if graph == "rollout":
            assert parity["frames"]["mean"] < 0.02, parity  # in [0, 1]: ~5 of 255 grey levels
            assert parity["affordance"]["mean"] < 0.02, parity
        else:
            assert parity["latent"]["mean"] < 0.05, parity


def test_qdq_rule_check_rejects_asymmetric_quantization(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, calib: dict[str, list[dict[str, np.ndarray]]]
) -> None:
    """ONNX Runtime's default (uint8 activations with a zero point) is what TensorRT refuses."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from embodied_wm.runtime.onnx_precision import tensorrt_qdq_problems

    class Reader:
        def __init__(self) -> None:
            self.it = iter(calib["encoder"][:2])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.it, None)

    dst = tmp_path / "asym.onnx"
    src = shared_model(tmp_path_factory).export / "encoder.onnx"
    quantize_static(
        str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8
    )  # type: ignore[arg-type]
    problems = tensorrt_qdq_problems(dst)
    assert problems and all("zero point" in p for p in problems), problems[:3]


def test_reduced_precision_graph_is_made_once(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from embodied_wm.runtime.onnx_precision import reduced_precision_onnx

    src = shared_model(tmp_path_factory).export / "encoder.onnx"
    assert reduced_precision_onnx(src, tmp_path / "x.onnx", "fp32", None) == src
    dst = reduced_precision_onnx(src, tmp_path / "e.fp16.onnx", "fp16", None)
    stamp = dst.stat().st_mtime_ns
    assert reduced_precision_onnx(src, dst, "fp16", None).stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="calibration batches"):
        reduced_precision_onnx(src, tmp_path / "e.int8.onnx", "int8", None)
