"""PyTorch backend: the checkpoint's WorldModel, eager (optionally torch.compile'd), on CPU or CUDA.

On CUDA it runs under fp16 autocast by default (LayerNorm/GroupNorm and the softmax-free heads stay in
fp32 under autocast's rules, so this is safer than casting the weights to half). The encoded state stays
on the device between ``predict`` and ``rollout`` calls; frames are converted to uint8 on the device so
only a quarter of the bytes cross to the host.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.runtime.base import BackendError, BackendUnavailableError, ModelFileError
from embodied_wm.runtime.learned import LearnedBackend, is_checkpoint_dir, require_model_dir
from embodied_wm.runtime.registry import is_gpu_device

log = logging.getLogger(__name__)


def import_torch() -> Any:
    try:
        # lazy: optional: absent here is handled below
        import torch
    except ImportError as exc:
        raise BackendUnavailableError("PyTorch: python module 'torch' not found") from exc
    return torch


def cuda_available() -> tuple[bool, str]:
    """(usable, reason) for CUDA through PyTorch."""
    try:
        torch = import_torch()
    except BackendUnavailableError as exc:
        return False, str(exc)
    if not torch.backends.cuda.is_built():
        return False, f"PyTorch {torch.__version__} is built without CUDA"
    if not torch.cuda.is_available():
        return False, "PyTorch has CUDA support but no CUDA device is visible"
    return True, torch.cuda.get_device_name(0)


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when usable else 'cpu'; 'cuda[:i]' checked; BackendUnavailableError otherwise."""
    if device == "auto":
        return "cuda" if cuda_available()[0] else "cpu"
    if device == "cpu":
        return "cpu"
    if is_gpu_device(device):
        ok, why = cuda_available()
        if not ok:
            raise BackendUnavailableError(f"PyTorch CUDA: {why}")
        return "cuda" if device == "gpu" else device
    raise ConfigError(f"device must be auto, cpu or cuda[:N], got {device!r}")


def torch_outputs_to_numpy(torch: Any, frames: Any, aff: Any) -> tuple[np.ndarray, np.ndarray]:
    """Device tensors (frames [N,K,3,H,W] in [0,1], affordance [N,C,H,W]) -> (uint8 [N,K,H,W,3], float32).
    The uint8 conversion runs on the device so only a quarter of the bytes cross to the host; same rounding
    as ``learned.frames_to_uint8`` (floor(x*255 + 0.5), clamped)."""
    with torch.inference_mode():
        u8 = (frames.float() * 255.0 + 0.5).clamp_(0.0, 255.0).to(torch.uint8).permute(0, 1, 3, 4, 2)
        return u8.contiguous().cpu().numpy(), aff.float().cpu().numpy()


class TorchBackend(LearnedBackend):
    name = "pytorch"

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "auto",
        precision: str | None = None,
        compile: bool = False,
        threads: int | None = None,
    ) -> None:
        torch = import_torch()
        d = require_model_dir(model_dir)
        if not is_checkpoint_dir(d):
            raise BackendUnavailableError(
                f"PyTorch: {d} holds only an ONNX export; the PyTorch backend needs the checkpoint "
                "(model.safetensors + config.json)"
            )
        # lazy: torch is heavy and optional here: loaded only when this path runs
        from embodied_wm.model.checkpoint import CheckpointError, load_checkpoint

        self.device = resolve_device(device)
        on_gpu = self.device.startswith("cuda")
        self.precision = precision or ("fp16" if on_gpu else "fp32")
        if self.precision == "int8":
            raise BackendUnavailableError("PyTorch: no int8 path (int8 is TensorRT only); use fp16 or fp32")
        if self.precision not in ("fp32", "fp16", "bf16"):
            raise ConfigError(f"precision must be fp32, fp16 or bf16, got {self.precision!r}")
        if self.precision == "fp16" and not on_gpu:
            # CPU fp16 kernels are slow or missing for several ops here; refuse rather than crawl.
            raise BackendUnavailableError(
                "PyTorch: fp16 needs CUDA; use precision='fp32' (or 'bf16') on the CPU"
            )
        if threads:
            torch.set_num_threads(int(threads))  # process-wide: PyTorch has no per-module thread pools
        elif not on_gpu:
            # Leave one core to the caller (ROS executor, preprocessing): with every core in PyTorch's
            # OpenMP pool, any other busy thread stalls its barriers. Measured on a loaded 2-core VM:
            # tiny encode 108 ms / rollout 458 ms with 2 threads, 1.9 ms / 27 ms with 1.
            torch.set_num_threads(min(torch.get_num_threads(), max(1, _available_cpus() - 1)))
        try:
            loaded = load_checkpoint(d, device=self.device)
        except CheckpointError as exc:
            raise ModelFileError(str(exc)) from exc
        super().__init__(loaded.cfg, loaded.model_id)
        self.model = loaded.model.eval()
        self._encoder: Any = self.model.encoder
        self._rollout_net: Any = self.model.rollout_net
        self.compiled = False
        if compile:
            try:
                self._encoder = torch.compile(self.model.encoder)
                # The candidate axis varies between calls: compile it as dynamic instead of per-N.
                self._rollout_net = torch.compile(self.model.rollout_net, dynamic=True)
                self.compiled = True
            except Exception as exc:  # backend compilers raise assorted errors (missing compiler, dynamo)
                raise BackendError(f"PyTorch: torch.compile failed: {exc}") from exc
        self._dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(self.precision)
        self._torch = torch
        log.info("pytorch backend: model %s on %s (%s)", self.model_id, self.device, self.precision)

    def _ctx(self) -> contextlib.AbstractContextManager[Any]:
        torch = self._torch
        if self._dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.split(":")[0], dtype=self._dtype)

    def _sync(self) -> None:
        if self.device.startswith("cuda"):
            self._torch.cuda.synchronize(self.device)

    def _encode(self, inputs: dict[str, np.ndarray]) -> tuple[Any, ...]:
        torch = self._torch
        # lazy: torch is heavy and optional here: loaded only when this path runs
        from embodied_wm.model.world_model import ENCODER_INPUTS

        with torch.inference_mode(), self._ctx():
            args = [torch.from_numpy(inputs[k]).to(self.device, non_blocking=True) for k in ENCODER_INPUTS]
            state = tuple(s.float() for s in self._encoder(*args))
        self._sync()
        return state

    def _latent(self, state: tuple[Any, ...]) -> np.ndarray:
        return state[0][0].float().cpu().numpy()

    def _run_rollout(self, state: tuple[Any, ...], actions: np.ndarray) -> tuple[Any, Any]:
        torch = self._torch
        with torch.inference_mode(), self._ctx():
            acts = torch.from_numpy(actions).to(self.device)
            frames, aff = self._rollout_net(*state, acts)
        self._sync()
        return frames, aff

    def _postprocess(self, outputs: tuple[Any, Any]) -> tuple[np.ndarray, np.ndarray]:
        return torch_outputs_to_numpy(self._torch, *outputs)

    def _run_score(
        self, state: tuple[Any, ...], actions: np.ndarray, designated: np.ndarray, goals: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        torch = self._torch
        with torch.inference_mode(), self._ctx():
            args = [torch.from_numpy(a).to(self.device) for a in (actions, designated, goals)]
            out = self.model.rollout_net.score(*state, *args)
            return tuple(o.float().cpu().numpy() for o in out)  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        torch = self._torch
        dev = torch.cuda.get_device_name(self.device) if self.device.startswith("cuda") else "cpu"
        return {
            **super().describe(),
            "device": self.device,
            "device_name": dev,
            "precision": self.precision,
            "compiled": self.compiled,
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
        }
