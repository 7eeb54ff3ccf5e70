"""The names the runtime answers to: backends, and inference devices (one parser for every caller).

Every command-line choice, node parameter check and ``create_backend`` call takes these tuples and this
parser, so a backend or device spelling is accepted (or refused, with the same words) everywhere alike.
"""

from __future__ import annotations

from typing import Any

#: Everything ``create_backend(name, ...)`` accepts; "auto" picks the fastest that runs (select.py).
BACKENDS: tuple[str, ...] = ("auto", "tensorrt", "onnxruntime", "pytorch", "copy_last", "linear")
#: Backends that run a trained model (need a model directory).
LEARNED_BACKENDS: tuple[str, ...] = ("tensorrt", "onnxruntime", "pytorch")
#: Backends that need no model files: the comparison baselines, and the node's fallback.
BASELINE_BACKENDS: tuple[str, ...] = ("copy_last", "linear")
#: The choices for a command that evaluates a model (a baseline is not one).
MODEL_BACKENDS: tuple[str, ...] = ("auto", *LEARNED_BACKENDS)

DEVICES_HINT = "auto, cpu, cuda or cuda:N"


def device_problem(device: Any) -> str | None:
    """Why ``device`` is not a device name (None when it is): auto, cpu, cuda (alias gpu) or cuda:N."""
    if not isinstance(device, str):
        return f"must be a string; got {device!r}"
    if device in ("auto", "cpu", "cuda", "gpu") or (device.startswith("cuda:") and device[5:].isdigit()):
        return None
    return f"must be {DEVICES_HINT}; got {device!r}"


def is_gpu_device(device: str) -> bool:
    """A device name that asks for CUDA (cuda, gpu, cuda:N); "auto" is not one (it may end on the CPU)."""
    return device in ("cuda", "gpu") or device.startswith("cuda:")
