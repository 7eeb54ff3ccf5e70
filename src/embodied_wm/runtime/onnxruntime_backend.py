"""ONNX Runtime backend: runs encoder.onnx and rollout.onnx from an export directory (or exports a
checkpoint on the fly into the cache).

Execution providers, best first: TensorrtExecutionProvider (only when ORT was built with it and TensorRT's
libraries load), CUDAExecutionProvider, CPUExecutionProvider. ORT silently falls back to the next provider
when one fails to load, so the providers actually in use are read back from the session and reported by
``describe()``; asking for ``device="cuda"`` and getting only the CPU is an error, not a silent fallback.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.runtime.base import BackendUnavailableError, ModelFileError
from embodied_wm.runtime.learned import LearnedBackend, read_config
from embodied_wm.runtime.onnx_export import (
    CANDIDATE_PROFILE,
    ENCODER_FILE,
    ROLLOUT_FILE,
    SCORE_FILE,
    ensure_onnx,
    load_manifest,
)
from embodied_wm.runtime.registry import is_gpu_device

log = logging.getLogger(__name__)

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def import_onnxruntime() -> Any:
    try:
        # lazy: optional: absent here is handled below
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError(
            "ONNX Runtime: python module 'onnxruntime' not found (pip install onnxruntime)"
        ) from exc
    return ort


def available_providers() -> list[str]:
    """Providers this onnxruntime build offers (a listed GPU provider may still fail to load)."""
    try:
        return list(import_onnxruntime().get_available_providers())
    except BackendUnavailableError:
        return []


def providers_for(device: str, available: list[str]) -> list[str]:
    """Providers for ``device`` ('auto' / 'cpu' / 'cuda'), best first; BackendUnavailableError if none."""
    if device == "cpu":
        return ["CPUExecutionProvider"]
    gpu = [p for p in GPU_PROVIDERS if p in available]
    if is_gpu_device(device):
        if not gpu:
            raise BackendUnavailableError(
                "ONNX Runtime: no CUDA execution provider in this onnxruntime build "
                f"(available: {', '.join(available) or 'none'}; install onnxruntime-gpu)"
            )
        return [*gpu, "CPUExecutionProvider"]
    if device != "auto":
        raise ConfigError(f"device must be auto, cpu or cuda, got {device!r}")
    return [*gpu, "CPUExecutionProvider"]


class OnnxRuntimeBackend(LearnedBackend):
    name = "onnxruntime"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "auto",
        providers: list[str] | None = None,
        intra_op_threads: int | None = None,
        cache_dir: str | Path | None = None,
        trt_fp16: bool = True,
        spin: bool = False,
        cpu_mem_arena: bool = False,
    ) -> None:
        ort = import_onnxruntime()
        export_dir = ensure_onnx(model_dir, cache_dir=cache_dir)
        manifest = load_manifest(export_dir, verify_hashes=False)  # ensure_onnx verified them just now
        cfg, model_id = read_config(export_dir)
        super().__init__(cfg, model_id)
        self.export_dir = export_dir
        self.manifest = manifest
        self.device_request = device
        wanted = providers or providers_for(device, list(ort.get_available_providers()))
        so = ort.SessionOptions()
        so.log_severity_level = 3  # ORT warns about every provider it falls back from; we report it ourselves
        if intra_op_threads:
            so.intra_op_num_threads = int(intra_op_threads)
        # ORT's pool threads busy-wait after each run by default. Between our runs the main thread does
        # preprocessing and the node does ROS work; on small shared CPUs (Jetson, 2-core CI) the spinning
        # threads steal that time (measured here: preprocess 1.6 ms alone, ~10 ms next to spinning
        # threads). Off by default; ``spin=True`` trades CPU for a little latency on idle big machines.
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        self.spin = spin
        # ORT's CPU arena keeps its high-water mark for the life of the session: one large rollout left
        # the node gigabytes bigger for good. Without it, freed buffers go back to the heap (and to the
        # OS with runtime.memory.trim_heap). Measured on models/tiny, 3 x 64 candidates in chunks of 8:
        # arena +87 MB kept after the calls, no arena -7 MB (after trim_heap); predict() latency alike.
        so.enable_cpu_mem_arena = bool(cpu_mem_arena)
        self.cpu_mem_arena = bool(cpu_mem_arena)
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.intra_op_threads = intra_op_threads
        trt_cache = Path(cache_dir) if cache_dir is not None else export_dir
        k, a = cfg.horizon, cfg.action_dim
        lo, opt, hi = CANDIDATE_PROFILE
        provider_opts: dict[str, dict[str, Any]] = {
            "TensorrtExecutionProvider": {
                "trt_fp16_enable": trt_fp16,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(trt_cache / "ort_trt_cache"),
                "trt_timing_cache_enable": True,
            },
        }
        rollout_trt = dict(provider_opts["TensorrtExecutionProvider"])
        if manifest.get("dynamic_candidates", True):
            rollout_trt.update(
                trt_profile_min_shapes=f"actions:{lo}x{k}x{a}",
                trt_profile_opt_shapes=f"actions:{opt}x{k}x{a}",
                trt_profile_max_shapes=f"actions:{hi}x{k}x{a}",
            )

        def session(fname: str, trt_opts: dict[str, Any]) -> Any:
            plist = [
                (p, trt_opts if p == "TensorrtExecutionProvider" else provider_opts.get(p, {}))
                for p in wanted
            ]
            try:
                return ort.InferenceSession(str(export_dir / fname), so, providers=plist)
            except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf/InvalidGraph types
                raise ModelFileError(f"{export_dir / fname}: ONNX Runtime cannot load it: {exc}") from exc

        self._enc = session(ENCODER_FILE, provider_opts["TensorrtExecutionProvider"])
        self._roll = session(ROLLOUT_FILE, rollout_trt)
        # The scores-only graph (pixel and latent goals); exports older than format 2 lack it.
        self._score = session(SCORE_FILE, rollout_trt) if (export_dir / SCORE_FILE).is_file() else None
        self.providers = list(self._roll.get_providers())
        if device != "auto" and device != "cpu" and not any(p in GPU_PROVIDERS for p in self.providers):
            raise BackendUnavailableError(
                f"ONNX Runtime: asked for {device} but no GPU provider could be initialised "
                f"(requested {wanted}, got {self.providers}; check CUDA/cuDNN libraries)"
            )
        self.device = "cuda" if any(p in GPU_PROVIDERS for p in self.providers) else "cpu"
        self._enc_inputs = [i.name for i in self._enc.get_inputs()]
        self._state_names = [o.name for o in self._enc.get_outputs()]
        self.max_candidates = (
            None
            if manifest.get("dynamic_candidates", True)
            else int(manifest["candidate_axis"]["tensorrt_profile"][0])
        )
        log.info("onnxruntime backend: model %s, providers %s", model_id, self.providers)

    def _encode(self, inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return list(self._enc.run(None, {k: inputs[k] for k in self._enc_inputs}))

    def _latent(self, state: list[np.ndarray]) -> np.ndarray:
        return np.asarray(state[0][0], np.float32).copy()

    def _run_rollout(self, state: list[np.ndarray], actions: np.ndarray) -> Any:
        if self.max_candidates is not None and actions.shape[0] != self.max_candidates:
            # A static-N export: pad the batch to its N (results for the padding are dropped).
            pad = np.zeros((self.max_candidates - actions.shape[0], *actions.shape[1:]), np.float32)
            frames, aff = self._roll.run(
                None, {**dict(zip(self._state_names, state)), "actions": np.concatenate([actions, pad])}
            )
            return frames[: actions.shape[0]], aff[: actions.shape[0]]
        feeds = dict(zip(self._state_names, state))
        feeds["actions"] = actions
        return tuple(self._roll.run(None, feeds))

    def _run_score(
        self, state: list[np.ndarray], actions: np.ndarray, designated: np.ndarray, goals: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._score is None:
            raise BackendUnavailableError(
                f"ONNX Runtime: {self.export_dir} has no {SCORE_FILE} (an export older than pixel goals); "
                "re-run `embodied-wm export`"
            )
        n = actions.shape[0]
        if self.max_candidates is not None and n != self.max_candidates:
            pad = np.zeros((self.max_candidates - n, *actions.shape[1:]), np.float32)
            actions = np.concatenate([actions, pad])
        feeds = dict(zip(self._state_names, state))
        feeds.update(actions=actions, designated_pixels=designated, goal_pixels=goals)
        pos, dist, lat = self._score.run(None, feeds)
        return pos[:n], dist[:n], lat[:n]

    def describe(self) -> dict[str, Any]:
        # lazy: onnxruntime loads only with the backend that uses it
        import onnxruntime as ort

        return {
            **super().describe(),
            "device": self.device,
            "providers": self.providers,
            "precision": "fp32"
            if "TensorrtExecutionProvider" not in self.providers
            else "fp16 (TensorRT EP)",
            "intra_op_threads": self.intra_op_threads,
            "spin": self.spin,
            "cpu_mem_arena": self.cpu_mem_arena,
            "export_dir": str(self.export_dir),
            "opset": self.manifest.get("opset"),
            "onnxruntime": ort.__version__,
        }
