"""TensorRT backend (TensorRT >= 10 Python API; TensorRT-RTX where installed).

Flow: checkpoint -> ONNX export (``onnx_export.ensure_onnx``) -> one engine per graph (encoder, rollout),
built with ``tensorrt.Builder`` + ``OnnxParser`` and kept in the engine cache (``engine_cache``), keyed by
model, TensorRT version, GPU, compute capability, precision and shapes. An unchanged setup deserializes the
cached engines; anything else (or ``force_engine_update=True``) rebuilds them.

Execution uses CUDA memory owned by PyTorch: every engine input/output is a torch tensor on the GPU whose
``data_ptr()`` is handed to ``context.set_tensor_address`` and the work is enqueued with
``context.execute_async_v3`` on a torch CUDA stream, so no pycuda / cuda-python is needed. With
``cuda_graph=True`` each engine launch (per candidate count N for the rollout) is captured once into a
``torch.cuda.CUDAGraph`` and replayed, which removes the per-launch CPU overhead that dominates small
batches on Jetson.

Precision: fp16 by default, fp32, or int8 calibrated on a rosbag (``calib_bag``) decoded through the
same path as the live node. How depends on the API generation (``strongly_typed_only``):
  * TensorRT 10.x (JetPack 6.1+, desktop): weak typing. fp16 sets ``BuilderFlag.FP16``; int8 sets
    ``BuilderFlag.INT8`` with an ``IInt8EntropyCalibrator2`` and a calibration cache file (implicit
    quantization: deprecated since 10.1, still there in 10.16).
  * TensorRT 11.x and TensorRT-RTX (``import tensorrt_rtx``): strongly typed only. Those flags and the
    calibrators are gone and an engine has the precision of its ONNX graph, so fp16 builds from a
    mixed-precision fp16 copy of the graph and int8 from a Q/DQ copy whose scales come from the same
    calibration batches (explicit quantization; ``onnx_precision``), both made with ONNX Runtime's
    tooling and cached beside the engines. TensorRT-RTX also has no builder timing cache.
  * TensorRT 8.x (JetPack 5, JetPack 6.0): refused; its network and tensor APIs differ.

What is verified without TensorRT (test_runtime_tensorrt_api.py): every TensorRT name this module uses,
read from the real Python bindings of 10.3, 10.16, 11.0 and 11.4, exists in each with a fitting
signature, on the paths each version can reach. That engines build and run is not verified.

Length (~640 lines): the engine build (with INT8 calibration), the engine cache round trip and the
execution path of one backend belong together; split when the TensorRT work settles.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.model.preprocess import encoder_inputs, modality_spec
from embodied_wm.pipeline.sources import bag_observations
from embodied_wm.runtime.base import BackendError, BackendUnavailableError
from embodied_wm.runtime.engine_cache import EngineCache, engine_cache_key, engine_key_inputs
from embodied_wm.runtime.learned import LearnedBackend, read_config
from embodied_wm.runtime.onnx_export import CANDIDATE_PROFILE, ensure_onnx, load_manifest
from embodied_wm.runtime.onnx_precision import converter_identity, ort_parity, reduced_precision_onnx
from embodied_wm.runtime.torch_backend import torch_outputs_to_numpy

log = logging.getLogger(__name__)

MIN_TRT_MAJOR = 10
TRT_MODULES = ("tensorrt_rtx", "tensorrt")
NOT_FOUND_MSG = (
    "TensorRT: python module 'tensorrt' not found (Jetson: JetPack 6.1+ ships it as python3-libnvinfer; "
    "desktop: pip install tensorrt-cu12 from NVIDIA's index; see docs/jetson.md)"
)


class EngineBuildError(BackendError):
    """TensorRT could not parse the ONNX graph or build an engine from it."""


def tensorrt_flavour_present() -> str | None:
    """Which TensorRT python module is importable ('tensorrt_rtx' preferred, then 'tensorrt'), without
    importing it (importing loads hundreds of MB of libraries)."""
    forced = os.environ.get("EMBODIED_WM_TENSORRT")
    for mod in (forced,) if forced else TRT_MODULES:
        if mod and importlib.util.find_spec(mod) is not None:
            return mod
    return None


def import_tensorrt(flavour: str | None = None) -> tuple[Any, str]:
    """(module, flavour). Raises BackendUnavailableError naming what is missing or too old."""
    name = flavour or tensorrt_flavour_present()
    if name is None:
        raise BackendUnavailableError(NOT_FOUND_MSG)
    try:
        trt = importlib.import_module(name)
    except ImportError as exc:  # e.g. the wheel is there but libnvinfer.so is not
        raise BackendUnavailableError(f"TensorRT: 'import {name}' failed: {exc}") from exc
    version = str(getattr(trt, "__version__", "0"))
    if name == "tensorrt":
        try:
            major = int(version.split(".")[0])
        except ValueError:
            major = 0
        if major < MIN_TRT_MAJOR:
            raise BackendUnavailableError(
                f"TensorRT {version} found; this backend needs TensorRT >= {MIN_TRT_MAJOR} "
                "(JetPack 6.1 or newer; JetPack 6.0 ships 8.6, JetPack 5 ships 8.5)"
            )
    return trt, name


def cuda_device_info(torch: Any, device: str = "cuda") -> tuple[str, tuple[int, int]]:
    idx = torch.device(device).index or 0
    return str(torch.cuda.get_device_name(idx)), tuple(torch.cuda.get_device_capability(idx))  # type: ignore[return-value]


def strongly_typed_only(trt: Any, flavour: str) -> bool:
    """True where the builder has no weak-typing precision flags or INT8 calibrators (TensorRT-RTX,
    TensorRT >= 11): precision must then come from the ONNX graph."""
    return (
        flavour == "tensorrt_rtx"
        or not hasattr(trt.BuilderFlag, "FP16")
        or not hasattr(trt, "IInt8EntropyCalibrator2")
    )


# ------------------------------------------------------------------------------------------------------
# INT8 calibration data: Observations decoded from a bag exactly as the live node decodes them.
# ------------------------------------------------------------------------------------------------------
def iter_bag_observations(bag: str | Path, cfg: Any) -> Iterator[Any]:
    """Observations from a rosbag through ``pipeline.sources.bag_observations`` (the inputs and decode
    path of the offline evaluation and the live node), aligned to the model's own ModalitySpec, so
    calibration sees exactly what inference will see."""
    # The one upward import of runtime/ (allowed by name in the import contract, .importlinter): reading a
    # bag is the pipeline's job, and only an INT8 build from a calibration bag needs it.

    return bag_observations(bag, modality_spec(cfg))


def calibration_batches(
    bag: str | Path, export_dir: Path, cfg: Any, max_batches: int = 256, stride: int = 1
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Calibration inputs for both engines: encoder inputs per observation, and for the rollout the fp32
    encoder state (ONNX Runtime on the CPU) plus the held action. Every ``stride``-th observation."""
    # lazy: onnxruntime loads only with the backend that uses it
    import onnxruntime as ort

    enc = ort.InferenceSession(str(export_dir / "encoder.onnx"), providers=["CPUExecutionProvider"])
    state_names = [o.name for o in enc.get_outputs()]
    out: dict[str, list[dict[str, np.ndarray]]] = {"encoder": [], "rollout": []}
    prev = None
    for i, obs in enumerate(iter_bag_observations(bag, cfg)):
        if i % stride == 0:
            inputs = encoder_inputs(obs, prev, cfg)
            state = enc.run(None, inputs)
            act = np.zeros(cfg.action_dim, np.float32)
            if obs.action is not None:
                a = np.asarray(obs.action, np.float32).reshape(-1)[: cfg.action_dim]
                act[: a.size] = a
            actions = np.repeat(act[None, None], cfg.horizon, axis=1)
            out["encoder"].append(inputs)
            out["rollout"].append({**dict(zip(state_names, state)), "actions": actions})
            if len(out["encoder"]) >= max_batches:
                break
        prev = obs if obs.image is not None else None  # as LearnedBackend: no motion across an outage
    if not out["encoder"]:
        raise BackendError(f"{bag}: no observations decoded for INT8 calibration")
    return out


def make_calibrator(
    trt: Any, torch: Any, batches: list[dict[str, np.ndarray]], cache_path: Path, device: str
) -> Any:
    """An IInt8EntropyCalibrator2 that serves ``batches`` (batch 1 each, explicit-batch network) from
    torch CUDA tensors and persists TensorRT's calibration table in ``cache_path``."""

    class _Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)  # pybind base classes need an explicit init
            self._it = iter(batches)
            self._alive: list[Any] = []  # device buffers must outlive the calibration step using them

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._it)
            except StopIteration:
                return None
            self._alive = [torch.from_numpy(np.ascontiguousarray(batch[n])).to(device) for n in names]
            torch.cuda.synchronize(device)
            return [int(t.data_ptr()) for t in self._alive]

        def read_calibration_cache(self) -> bytes | None:
            return cache_path.read_bytes() if cache_path.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_path.with_suffix(".tmp")
            tmp.write_bytes(bytes(cache))
            os.replace(tmp, cache_path)

    return _Calibrator()


# ------------------------------------------------------------------------------------------------------
# Engine build
# ------------------------------------------------------------------------------------------------------
def build_serialized_engine(
    trt: Any,
    flavour: str,
    onnx_path: Path,
    precision: str,
    profile_shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]],
    timing_cache_path: Path | None,
    workspace_bytes: int,
    calibrator: Any = None,
) -> bytes:
    """Parse ``onnx_path`` and build one serialized engine. ``profile_shapes`` gives (min, opt, max) for
    every input with a dynamic dimension. Strongly typed builds take ``precision`` from the graph
    (``onnx_path`` is then the fp16 or Q/DQ graph); weakly typed ones set builder flags and, for int8,
    ``calibrator``."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = strongly_typed_only(trt, flavour)
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)  # explicit batch is the only mode in TensorRT >= 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineBuildError(f"TensorRT ONNX parser rejected {onnx_path}: {errors or 'no details'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if not strong and precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # int8 engines fall back to fp16 (not fp32) where int8 can't go
    if not strong and precision == "int8":
        if calibrator is None:
            raise EngineBuildError("TensorRT 10 int8 needs a calibrator")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
    dynamic = {
        network.get_input(i).name
        for i in range(network.num_inputs)
        if any(int(d) < 0 for d in network.get_input(i).shape)
    }
    missing = sorted(dynamic - set(profile_shapes))
    if missing:
        raise EngineBuildError(f"{onnx_path.name}: no optimisation profile for dynamic inputs {missing}")
    if dynamic:
        profile = builder.create_optimization_profile()
        for name in dynamic:
            lo, opt, hi = profile_shapes[name]
            profile.set_shape(name, lo, opt, hi)
        config.add_optimization_profile(profile)
        if not strong and precision == "int8":
            # Calibration runs at one shape: batches are N=1.
            calib = builder.create_optimization_profile()
            for name in dynamic:
                lo = profile_shapes[name][0]
                calib.set_shape(name, lo, lo, lo)
            config.set_calibration_profile(calib)
    timing_cache = None
    if timing_cache_path is not None and hasattr(config, "create_timing_cache"):
        blob = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
        timing_cache = config.create_timing_cache(blob)
        # The file is per TensorRT version + GPU + compute capability, so a header mismatch means another
        # device with the same name: do not mix its timings in (TensorRT warns that this can misbehave).
        config.set_timing_cache(timing_cache, False)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(
            f"TensorRT failed to build an engine from {onnx_path} ({precision}); see log above"
        )
    if timing_cache is not None and timing_cache_path is not None:
        timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = timing_cache_path.with_suffix(".tmp")
        tmp.write_bytes(bytes(config.get_timing_cache().serialize()))
        os.replace(tmp, timing_cache_path)
    return bytes(serialized)


@dataclass
class EngineSet:
    engines: dict[str, Any]
    key: str
    key_inputs: dict[str, Any]
    #: (trt.Runtime, trt.Logger) the engines came from: they must outlive the engines, so they live here.
    runtime: Any = None
    status: dict[str, str] = field(default_factory=dict)  # per engine: "loaded" | "built (<reason>)"
    paths: dict[str, str] = field(default_factory=dict)
    build_s: float = 0.0


def engine_shapes(manifest: dict[str, Any], profile: tuple[int, int, int]) -> dict[str, dict[str, Any]]:
    """Keyed shapes: static inputs as-is, the candidate axis as its (min, opt, max) profile."""
    out: dict[str, dict[str, Any]] = {}
    for graph in ("encoder", "rollout"):
        shapes: dict[str, Any] = {}
        for inp in manifest["graphs"][graph]["inputs"]:
            shape = inp["shape"]
            if any(isinstance(d, str) for d in shape):
                shapes[inp["name"]] = [[p if isinstance(d, str) else d for d in shape] for p in profile]
            else:
                shapes[inp["name"]] = list(shape)
        out[graph] = shapes
    return out


def ensure_engines(
    export_dir: Path,
    precision: str = "fp16",
    cache_dir: str | Path | None = None,
    force: bool = False,
    calib_bag: str | Path | None = None,
    workspace_mb: int = 1024,
    profile: tuple[int, int, int] = CANDIDATE_PROFILE,
    flavour: str | None = None,
    device: str = "cuda",
) -> EngineSet:
    """Load the engines for ``export_dir`` from the cache or build (and cache) them."""
    trt, flavour = import_tensorrt(flavour)
    torch = _cuda_torch()
    if precision not in ("fp16", "fp32", "int8"):
        raise ConfigError(f"precision must be fp16, fp32 or int8, got {precision!r}")
    strong = strongly_typed_only(trt, flavour)
    if precision == "int8" and calib_bag is None:
        raise BackendError("TensorRT int8 needs calibration data: pass calib_bag (--calib-bag BAG)")
    manifest = load_manifest(export_dir)
    cfg, model_id = read_config(export_dir)
    gpu, cc = cuda_device_info(torch, device)
    cc_str = f"{cc[0]}.{cc[1]}"
    shapes = engine_shapes(manifest, profile if manifest.get("dynamic_candidates", True) else (1, 1, 1))
    extra: dict[str, Any] = {
        "flavour": flavour,
        "opset": manifest.get("opset"),
        "onnx_sha256": {g: manifest["graphs"][g]["sha256"] for g in ("encoder", "rollout")},
        "typing": "strong" if strong else "weak",
    }
    if strong and precision != "fp32":
        extra["onnx_precision"] = converter_identity(precision)
    if precision == "int8" and calib_bag is not None:
        st = Path(calib_bag).stat()
        extra["calibration"] = {
            "bag": str(Path(calib_bag).resolve()),
            "bytes": st.st_size,
            "mtime_ns": st.st_mtime_ns,
        }
    key = engine_cache_key(model_id, trt.__version__, gpu, cc_str, precision, shapes, extra)
    key_inputs = engine_key_inputs(model_id, trt.__version__, gpu, cc_str, precision, shapes, extra)
    cache = EngineCache(Path(cache_dir) / "engines" if cache_dir is not None else None)
    timing_path = None if flavour == "tensorrt_rtx" else cache.timing_cache_path(trt.__version__, gpu, cc_str)
    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    result = EngineSet(engines={}, runtime=(runtime, logger), key=key, key_inputs=key_inputs)
    calib: dict[str, list[dict[str, np.ndarray]]] | None = None
    for graph in ("encoder", "rollout"):
        reason = "forced (force_engine_update)"
        if not force:
            found = cache.load(model_id, key, graph, key_inputs)
            if found.status == "hit" and found.data is not None:
                engine = runtime.deserialize_cuda_engine(found.data)
                if engine is not None:
                    result.engines[graph] = engine
                    result.status[graph] = "loaded"
                    result.paths[graph] = str(found.path)
                    continue
                reason = "cached engine failed to deserialize (other TensorRT build?)"
            else:
                reason = f"cache {found.status}: {found.reason}"
            if found.status in ("corrupt", "stale"):
                log.warning("TensorRT %s engine: %s; rebuilding", graph, reason)
        log.info("building TensorRT %s engine (%s, %s on %s): %s", graph, precision, flavour, gpu, reason)
        t0 = time.perf_counter()
        calibrator = None
        fp32_path = onnx_path = export_dir / manifest["graphs"][graph]["file"]
        parity: dict[str, dict[str, float]] = {}
        if precision == "int8" and calib is None:
            calib = calibration_batches(calib_bag, export_dir, cfg)  # type: ignore[arg-type]
        if strong and precision != "fp32":
            # Strong typing (TensorRT >= 11, RTX): the precision is in the graph (explicit quantization
            # for int8), made once per cache key and kept beside the engine.
            dst = cache.precision_onnx_path(model_id, key, graph, precision)
            if force:
                dst.unlink(missing_ok=True)
            onnx_path = reduced_precision_onnx(onnx_path, dst, precision, calib[graph] if calib else None)
            if calib:  # what quantization costs, in ONNX Runtime on the CPU (the engine may differ)
                parity = ort_parity(fp32_path, onnx_path, calib[graph][:8])
                log.info("%s %s graph vs fp32 (ONNX Runtime): %s", graph, precision, parity)
        if not strong and precision == "int8":  # TensorRT 10: implicit quantization with a calibrator
            calibrator = make_calibrator(
                trt,
                torch,
                calib[graph],  # type: ignore[index]
                cache.calibration_path(model_id, key, graph),
                device,
            )
        dyn_profile = {
            name: tuple(tuple(int(d) for d in s) for s in shape)
            for name, shape in shapes[graph].items()
            if shape and isinstance(shape[0], list)
        }
        data = build_serialized_engine(
            trt,
            flavour,
            onnx_path,
            precision,
            dyn_profile,  # type: ignore[arg-type]
            timing_path,
            workspace_mb << 20,
            calibrator,
        )
        result.build_s += time.perf_counter() - t0
        path = cache.store(
            model_id,
            key,
            graph,
            data,
            key_inputs,
            info={
                "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "build_s": time.perf_counter() - t0,
                "onnx": onnx_path.name,
                "onnx_parity_vs_fp32": parity,
            },
        )
        engine = runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise EngineBuildError(f"{path}: TensorRT cannot deserialize the engine it just built")
        result.engines[graph] = engine
        result.status[graph] = f"built ({reason})"
        result.paths[graph] = str(path)
    return result


def _cuda_torch() -> Any:
    try:
        # lazy: optional: absent here is handled below
        import torch
    except ImportError as exc:
        raise BackendUnavailableError(
            "TensorRT backend: needs PyTorch (with CUDA) for device buffers"
        ) from exc
    if not torch.cuda.is_available():
        raise BackendUnavailableError(
            "TensorRT backend: no CUDA device visible to PyTorch (PyTorch "
            f"{torch.__version__}, CUDA build: {torch.backends.cuda.is_built()})"
        )
    return torch


# ------------------------------------------------------------------------------------------------------
# Execution
# ------------------------------------------------------------------------------------------------------
class _Runner:
    """One engine with torch-owned I/O buffers; optionally each input-shape signature is captured once
    into a CUDA graph and replayed.

    A captured graph has the tensor addresses and the context's scratch memory baked in, so every graph
    gets its own execution context and static buffers (a shared context re-bound to another shape could
    invalidate graphs captured earlier). At most ``MAX_GRAPHS`` signatures are captured (each context
    holds scratch memory for the profile's max shape); further shapes run without a graph."""

    MAX_GRAPHS = 4

    def __init__(self, trt: Any, torch: Any, engine: Any, stream: Any, device: str, cuda_graph: bool) -> None:
        self.trt, self.torch, self.engine, self.stream, self.device = trt, torch, engine, stream, device
        self.context = self._new_context()
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self.dtypes: dict[str, Any] = {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            np_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            self.dtypes[name] = torch.from_numpy(np.empty(0, np_dtype)).dtype
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
        self.cuda_graph = cuda_graph
        # Per input-shape signature: (graph, its context, static input buffers, static output buffers).
        self._graphs: dict[tuple[tuple[int, ...], ...], tuple[Any, Any, dict[str, Any], dict[str, Any]]] = {}

    def _new_context(self) -> Any:
        ctx = self.engine.create_execution_context()
        if ctx is None:
            raise BackendError("TensorRT: could not create an execution context (out of GPU memory?)")
        return ctx

    def _bind(self, ctx: Any, feeds: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        for name in self.inputs:
            t = feeds[name]
            ctx.set_input_shape(name, tuple(t.shape))
            ctx.set_tensor_address(name, int(t.data_ptr()))
        outs = {}
        for name in self.outputs:
            shape = tuple(ctx.get_tensor_shape(name))
            outs[name] = torch.empty(shape, dtype=self.dtypes[name], device=self.device)
            ctx.set_tensor_address(name, int(outs[name].data_ptr()))
        return outs

    def _launch(self, ctx: Any) -> None:
        if not ctx.execute_async_v3(self.stream.cuda_stream):
            raise BackendError("TensorRT: execute_async_v3 failed (see TensorRT log)")

    def run(self, feeds: dict[str, Any]) -> dict[str, Any]:
        """``feeds``: contiguous CUDA tensors of the engine's dtypes. Returns outputs, finished."""
        torch = self.torch
        # Inputs were written on the caller's stream; TensorRT must not read them before that finishes.
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        sig = tuple(tuple(feeds[n].shape) for n in self.inputs)
        if not self.cuda_graph or (sig not in self._graphs and len(self._graphs) >= self.MAX_GRAPHS):
            with torch.cuda.stream(self.stream):
                outs = self._bind(self.context, feeds)
                self._launch(self.context)
            self.stream.synchronize()
            return outs
        entry = self._graphs.get(sig)
        if entry is None:
            ctx = self._new_context()
            static_in = {n: feeds[n].clone() for n in self.inputs}
            with torch.cuda.stream(self.stream):
                static_out = self._bind(ctx, static_in)
                self._launch(ctx)  # first launch outside capture: TensorRT may allocate/sync on a new shape
            self.stream.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=self.stream):
                self._launch(ctx)
            entry = (graph, ctx, static_in, static_out)
            self._graphs[sig] = entry
        graph, _ctx, static_in, static_out = entry
        with torch.cuda.stream(self.stream):
            for n in self.inputs:
                static_in[n].copy_(feeds[n], non_blocking=True)
            graph.replay()
        self.stream.synchronize()
        # Clones: the static buffers are overwritten by the next replay while callers may keep results.
        return {n: t.clone() for n, t in static_out.items()}


class TensorRTBackend(LearnedBackend):
    name = "tensorrt"

    def __init__(
        self,
        model_dir: str | Path,
        precision: str = "fp16",
        cache_dir: str | Path | None = None,
        force_engine_update: bool = False,
        calib_bag: str | Path | None = None,
        cuda_graph: bool = False,
        device: str = "cuda",
        workspace_mb: int = 1024,
        candidate_profile: tuple[int, int, int] = CANDIDATE_PROFILE,
        flavour: str | None = None,
    ) -> None:
        trt, self.flavour = import_tensorrt(flavour)  # first, so a machine without TensorRT fails fast
        torch = _cuda_torch()
        if device in ("auto", "gpu"):
            device = "cuda"
        if not device.startswith("cuda"):
            raise BackendUnavailableError(f"TensorRT runs on CUDA devices only, not {device!r}")
        export_dir = ensure_onnx(model_dir, cache_dir=cache_dir)
        manifest = load_manifest(export_dir, verify_hashes=False)
        cfg, model_id = read_config(export_dir)
        super().__init__(cfg, model_id)
        self._trt, self._torch, self.device, self.precision = trt, torch, device, precision
        self.export_dir = export_dir
        self.cuda_graph = cuda_graph
        t0 = time.perf_counter()
        self.engines = ensure_engines(
            export_dir,
            precision,
            cache_dir,
            force_engine_update,
            calib_bag,
            workspace_mb,
            candidate_profile,
            self.flavour,
            device,
        )
        self.setup_s = time.perf_counter() - t0
        dynamic = manifest.get("dynamic_candidates", True)
        self.max_candidates = (
            int(candidate_profile[2]) if dynamic else int(manifest["candidate_axis"]["tensorrt_profile"][0])
        )
        self._static_n = None if dynamic else self.max_candidates
        self._stream = torch.cuda.Stream(device=device)
        self._enc = _Runner(trt, torch, self.engines.engines["encoder"], self._stream, device, cuda_graph)
        self._roll = _Runner(trt, torch, self.engines.engines["rollout"], self._stream, device, cuda_graph)
        # lazy: torch is heavy and optional here: loaded only when this path runs
        from embodied_wm.model.world_model import ENCODER_OUTPUTS

        self._state_names = list(ENCODER_OUTPUTS)
        log.info(
            "tensorrt backend: model %s, %s %s, %s; engines %s in %.1f s",
            model_id,
            self.flavour,
            trt.__version__,
            precision,
            self.engines.status,
            self.setup_s,
        )

    def _to_device(self, name: str, runner: _Runner, arr: np.ndarray) -> Any:
        t = self._torch.from_numpy(np.ascontiguousarray(arr)).to(self.device, non_blocking=True)
        return t.to(runner.dtypes[name]).contiguous()

    def _encode(self, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
        feeds = {n: self._to_device(n, self._enc, inputs[n]) for n in self._enc.inputs}
        return self._enc.run(feeds)

    def _latent(self, state: dict[str, Any]) -> np.ndarray:
        return state["latent"][0].float().cpu().numpy()

    def _run_rollout(self, state: dict[str, Any], actions: np.ndarray) -> tuple[Any, Any]:
        n = actions.shape[0]
        if self._static_n is not None and n != self._static_n:
            actions = np.concatenate(
                [actions, np.zeros((self._static_n - n, *actions.shape[1:]), np.float32)]
            )
        feeds = {name: state[name] for name in self._state_names}
        feeds["actions"] = self._to_device("actions", self._roll, actions)
        outs = self._roll.run(feeds)
        return outs["frames"][:n], outs["affordance"][:n]

    def _postprocess(self, outputs: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
        return torch_outputs_to_numpy(self._torch, *outputs)

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        gpu, cc = cuda_device_info(torch, self.device)
        return {
            **super().describe(),
            "device": self.device,
            "device_name": gpu,
            "compute_capability": f"{cc[0]}.{cc[1]}",
            "precision": self.precision,
            "tensorrt": f"{self.flavour} {self._trt.__version__}",
            "engine_key": self.engines.key,
            "engines": self.engines.status,
            "engine_paths": self.engines.paths,
            "setup_s": round(self.setup_s, 3),
            "cuda_graph": self.cuda_graph,
            "max_candidates": self.max_candidates,
            "export_dir": str(self.export_dir),
        }


def build_engines_report(es: EngineSet) -> str:
    return json.dumps(
        {"key": es.key, "engines": es.status, "paths": es.paths, "build_s": round(es.build_s, 2)}, indent=2
    )


__all__ = [
    "NOT_FOUND_MSG",
    "EngineBuildError",
    "EngineSet",
    "TensorRTBackend",
    "ensure_engines",
    "import_tensorrt",
    "tensorrt_flavour_present",
]
