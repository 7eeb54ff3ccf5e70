"""Checkpoint I/O: ``model.safetensors`` (weights) + ``config.json`` (model config, metadata, model_id).

Loading never unpickles anything: weights are read with ``safetensors.torch.load_file`` only, and a file
that looks like a pickle / torch.save zip is rejected before it is parsed. ``model_id`` is the first 16 hex
digits of sha256(weights file bytes + canonical config JSON), so two checkpoints with the same id predict
the same, and any edit to either file is detected at load time.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from embodied_wm.errors import EmbodiedWMError
from embodied_wm.model.config import ModelConfig
from embodied_wm.model.world_model import WorldModel

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
#: Modules added after checkpoints were first shipped whose fresh initialisation is an exact no-op (a
#: zero last layer on a residual branch): a checkpoint without them loads and predicts as it did.
OPTIONAL_PREFIXES: tuple[str, ...] = ("encoder.audio_feat.", "encoder.tactile_feat.")


class CheckpointError(EmbodiedWMError, RuntimeError):
    """A checkpoint directory cannot be loaded (missing, corrupt, tampered with or inconsistent)."""


@dataclass
class LoadedModel:
    model: WorldModel
    cfg: ModelConfig
    model_id: str
    metadata: dict[str, Any] = field(default_factory=dict)


def _canonical_config(cfg: ModelConfig) -> bytes:
    return json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":")).encode()


def compute_model_id(weights_path: Path, cfg: ModelConfig) -> str:
    h = hashlib.sha256()
    with open(weights_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    h.update(_canonical_config(cfg))
    return h.hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def save_checkpoint(
    model: torch.nn.Module, cfg: ModelConfig, out_dir: str | Path, metadata: dict[str, Any] | None = None
) -> str:
    """Write weights + config into ``out_dir`` (created); returns the model_id. ``model`` may be wrapped
    (DistributedDataParallel): its ``.module`` is saved."""
    inner = getattr(model, "module", model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in inner.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    # One metadata key only: safetensors writes metadata from a hash map, so several keys come out in
    # varying order and the same weights would hash to different model_ids.
    save_file(tensors, str(tmp), metadata={"format": "pt"})
    os.replace(tmp, out / WEIGHTS_FILE)
    model_id = compute_model_id(out / WEIGHTS_FILE, cfg)
    doc = {
        "format_version": FORMAT_VERSION,
        "model_id": model_id,
        "config": cfg.to_dict(),
        "metadata": metadata or {},
    }
    _atomic_write(out / CONFIG_FILE, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
    return model_id


def _check_weights_file(path: Path) -> None:
    """Cheap structural checks with messages a user can act on (before safetensors parses it)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:2] == b"PK" or head[:1] == b"\x80":
            raise CheckpointError(
                f"{path}: this is a pickle / torch.save file, not safetensors; refusing to load it "
                "(unpickling can run arbitrary code). Convert it with safetensors.torch.save_file."
            )
        if len(head) < 8:
            raise CheckpointError(f"{path}: truncated safetensors file ({size} bytes)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, MAX_HEADER_BYTES):
            raise CheckpointError(
                f"{path}: truncated or not a safetensors file "
                f"(header says {header_len} bytes, file has {size})"
            )
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, ValueError) as exc:
            raise CheckpointError(f"{path}: corrupt safetensors header: {exc}") from exc
    ends = _validated_header_ends(path, header)
    if ends and 8 + header_len + max(ends) > size:
        raise CheckpointError(
            f"{path}: truncated safetensors file (tensor data needs {8 + header_len + max(ends)} bytes, "
            f"file has {size})"
        )


#: safetensors itself refuses headers above 100 MB.
MAX_HEADER_BYTES = 100_000_000


def _validated_header_ends(path: Path, header: Any) -> list[int]:
    """End offsets of every tensor, after checking the header's structure: a JSON object of
    name -> {"dtype": str, "shape": [int >= 0, ...], "data_offsets": [begin, end]} plus an optional
    "__metadata__" object of strings."""
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: safetensors header is a JSON {type(header).__name__}, not an object")
    ends: list[int] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise CheckpointError(f"{path}: safetensors __metadata__ must be an object of strings")
            continue
        if not isinstance(entry, dict):
            raise CheckpointError(f"{path}: safetensors entry {name!r} is not an object")
        dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
        if not isinstance(dtype, str):
            raise CheckpointError(f"{path}: safetensors entry {name!r} has no dtype string")
        if not isinstance(shape, list) or not all(_is_count(x) for x in shape):
            raise CheckpointError(f"{path}: safetensors entry {name!r} has a bad shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_is_count(x) for x in offsets)
            or offsets[0] > offsets[1]
        ):
            raise CheckpointError(f"{path}: safetensors entry {name!r} has bad data_offsets {offsets!r}")
        ends.append(int(offsets[1]))
    return ends


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def load_checkpoint(model_dir: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a checkpoint directory written by ``save_checkpoint``; the model is in eval mode."""
    d = Path(model_dir)
    wpath, cpath = d / WEIGHTS_FILE, d / CONFIG_FILE
    for p in (wpath, cpath):
        if not p.is_file():
            raise CheckpointError(
                f"{d}: missing {p.name} (a checkpoint needs {WEIGHTS_FILE} and {CONFIG_FILE})"
            )
    try:
        doc = json.loads(cpath.read_text())
        if not isinstance(doc, dict):
            raise TypeError(f"expected a JSON object, got {type(doc).__name__}")
        cfg = ModelConfig.from_dict(doc["config"])
        expected_id = str(doc["model_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{cpath}: invalid checkpoint config: {exc}") from exc
    _check_weights_file(wpath)
    try:
        tensors = load_file(str(wpath), device="cpu")
    except Exception as exc:  # safetensors raises its own error types for malformed files
        raise CheckpointError(f"{wpath}: corrupt safetensors file: {exc}") from exc
    model = WorldModel(cfg)
    want = model.state_dict()
    missing = sorted(k for k in set(want) - set(tensors) if not k.startswith(OPTIONAL_PREFIXES))
    unexpected = sorted(set(tensors) - set(want))
    wrong = sorted(k for k in set(want) & set(tensors) if tuple(want[k].shape) != tuple(tensors[k].shape))
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} tensors have other shapes (e.g. {k}: file {tuple(tensors[k].shape)}, "
                f"config {tuple(want[k].shape)})"
            )
        if missing:
            parts.append(f"{len(missing)} tensors missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        raise CheckpointError(
            f"{d}: weights do not match config {cfg.name!r} (weights from another model config?): "
            + "; ".join(parts)
        )
    actual_id = compute_model_id(wpath, cfg)
    if actual_id != expected_id:
        raise CheckpointError(
            f"{d}: model_id mismatch: config.json says {expected_id}, files hash to {actual_id} "
            "(weights or config were modified after saving)"
        )
    absent = [k for k in want if k not in tensors]  # only OPTIONAL_PREFIXES can be absent here
    model.load_state_dict(tensors, strict=not absent)
    model.to(device).eval()
    metadata = doc.get("metadata", {})
    return LoadedModel(
        model=model,
        cfg=cfg,
        model_id=actual_id,
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
    )
