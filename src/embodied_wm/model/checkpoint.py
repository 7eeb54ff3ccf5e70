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
        if header_len > size - 8:
            raise CheckpointError(
                f"{path}: truncated or not a safetensors file "
                f"(header says {header_len} bytes, file has {size})"
            )
        try:
            header = json.loads(f.read(header_len))
        except ValueError as exc:
            raise CheckpointError(f"{path}: corrupt safetensors header: {exc}") from exc
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    if ends and 8 + header_len + max(ends) > size:
        raise CheckpointError(
            f"{path}: truncated safetensors file (tensor data needs {8 + header_len + max(ends)} bytes, "
            f"file has {size})"
        )


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
    return LoadedModel(model=model, cfg=cfg, model_id=actual_id, metadata=dict(doc.get("metadata", {})))
