"""TensorRT engine cache: which engine fits this model on this GPU with this TensorRT, where it lives, and
whether the file on disk is still the one that was built.

A serialized engine is only valid for the exact TensorRT version and GPU (compute capability, and in
practice the device model) it was built on, and of course for one model, precision and set of shapes.
All of those go into the cache key, so a changed model or GPU builds a new engine while an unchanged one
is deserialized in well under a second instead of rebuilt in minutes.

Layout under the cache root (default ``~/.cache/embodied_wm/engines``)::

    <root>/<model_id>/<key>/encoder.engine        serialized engine
    <root>/<model_id>/<key>/encoder.engine.json   metadata: key, the keyed inputs, size, sha256, build info
    <root>/<model_id>/<key>/rollout.engine(.json)
    <root>/<model_id>/<key>/<name>.calibration.cache  INT8 calibration table (TensorRT 10 int8)
    <root>/<model_id>/<key>/<name>.<precision>.onnx   fp16 / Q/DQ graph a strongly typed build (TensorRT
                                                      >= 11, TensorRT-RTX) was made from
    <root>/timing/<trt_version>-<gpu>-sm<cc>.cache   builder timing cache, shared by all models

Everything here is pure Python (no TensorRT import), so it is tested on machines without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from embodied_wm.errors import ConfigError
from embodied_wm.runtime.learned import default_cache_dir

CACHE_FORMAT = 1
PRECISIONS = ("fp32", "fp16", "int8")


def _canonical(obj: Any) -> Any:
    """JSON-stable form: tuples -> lists, mapping keys sorted by json.dumps."""
    if isinstance(obj, Mapping):
        return {str(k): _canonical(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_canonical(v) for v in obj]
    return obj


def engine_key_inputs(
    model_id: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int] | str,
    precision: str,
    shapes: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict that ``engine_cache_key`` hashes (also stored in the metadata, so a mismatch can be named)."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    cc = (
        compute_capability
        if isinstance(compute_capability, str)
        else f"{compute_capability[0]}.{compute_capability[1]}"
    )
    return {
        "cache_format": CACHE_FORMAT,
        "model_id": str(model_id),
        "trt_version": str(trt_version),
        "gpu_name": str(gpu_name).strip(),
        "compute_capability": cc,
        "precision": precision,
        "shapes": _canonical(shapes),
        "extra": _canonical(extra or {}),
    }


def engine_cache_key(
    model_id: str,
    trt_version: str,
    gpu_name: str,
    compute_capability: tuple[int, int] | str,
    precision: str,
    shapes: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> str:
    """A 24-hex-digit key that changes whenever any input changes. ``shapes`` maps each engine input
    to its static shape or its (min, opt, max) profile; ``extra`` holds other build settings that change
    the engine (opset, workspace, calibration data identity, tensorrt vs tensorrt_rtx)."""
    inputs = engine_key_inputs(model_id, trt_version, gpu_name, compute_capability, precision, shapes, extra)
    blob = json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "unknown"


@dataclass
class CacheLookup:
    """Result of looking an engine up. ``status``: hit (``data`` holds the verified bytes), miss (nothing
    there), stale (built for other key inputs, or unreadable metadata) or corrupt (the engine file is not
    the one the metadata describes: truncated, overwritten, bit rot). ``reason`` says which, for logs."""

    status: Literal["hit", "miss", "stale", "corrupt"]
    reason: str
    path: Path
    data: bytes | None = None
    meta: dict[str, Any] | None = None


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class EngineCache:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_dir() / "engines"

    def entry_dir(self, model_id: str, key: str) -> Path:
        return self.root / _slug(model_id) / key

    def engine_path(self, model_id: str, key: str, name: str) -> Path:
        return self.entry_dir(model_id, key) / f"{name}.engine"

    def meta_path(self, model_id: str, key: str, name: str) -> Path:
        return self.entry_dir(model_id, key) / f"{name}.engine.json"

    def calibration_path(self, model_id: str, key: str, name: str) -> Path:
        """INT8 calibration table of engine ``name`` (reused when the same engine is rebuilt)."""
        return self.entry_dir(model_id, key) / f"{name}.calibration.cache"

    def precision_onnx_path(self, model_id: str, key: str, name: str, precision: str) -> Path:
        """The reduced-precision graph (fp16, or int8 with Q/DQ nodes) a strongly typed engine is built
        from; keyed like the engine, so it is reused exactly when the engine would be."""
        return self.entry_dir(model_id, key) / f"{name}.{_slug(precision)}.onnx"

    def timing_cache_path(self, trt_version: str, gpu_name: str, compute_capability: str) -> Path:
        return (
            self.root
            / "timing"
            / f"{_slug(trt_version)}-{_slug(gpu_name)}-sm{_slug(compute_capability)}.cache"
        )

    def load(
        self, model_id: str, key: str, name: str, key_inputs: Mapping[str, Any] | None = None
    ) -> CacheLookup:
        """Look up engine ``name`` ('encoder' / 'rollout') and verify it (see CacheLookup)."""
        path = self.engine_path(model_id, key, name)
        mpath = self.meta_path(model_id, key, name)
        if not path.is_file() and not mpath.is_file():
            return CacheLookup("miss", f"no cached {name} engine", path)
        if not mpath.is_file():
            return CacheLookup(
                "stale", f"{mpath.name} missing (engine written by an interrupted build?)", path
            )
        if not path.is_file():
            return CacheLookup("miss", f"{path.name} missing beside its metadata", path)
        try:
            meta = json.loads(mpath.read_text())
            stored_key = meta["key"]
            want_sha, want_size = meta["sha256"], int(meta["bytes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return CacheLookup("stale", f"{mpath.name} unreadable: {exc}", path)
        if stored_key != key:
            return CacheLookup("stale", f"metadata key {stored_key} != {key}", path, meta=meta)
        if key_inputs is not None and meta.get("key_inputs") != _canonical(dict(key_inputs)):
            diff = sorted(
                k
                for k in set(meta.get("key_inputs", {})) | set(key_inputs)
                if meta.get("key_inputs", {}).get(k) != _canonical(dict(key_inputs)).get(k)
            )
            return CacheLookup("stale", f"built for other {', '.join(diff)}", path, meta=meta)
        try:
            data = path.read_bytes()
        except OSError as exc:
            return CacheLookup("corrupt", f"{path.name} unreadable: {exc}", path, meta=meta)
        if len(data) != want_size:
            return CacheLookup(
                "corrupt",
                f"{path.name} is {len(data)} bytes, metadata says {want_size} (truncated?)",
                path,
                meta=meta,
            )
        if hashlib.sha256(data).hexdigest() != want_sha:
            return CacheLookup(
                "corrupt",
                f"{path.name} sha256 differs from its metadata (corrupt or replaced)",
                path,
                meta=meta,
            )
        return CacheLookup("hit", "verified", path, data=data, meta=meta)

    def store(
        self,
        model_id: str,
        key: str,
        name: str,
        data: bytes,
        key_inputs: Mapping[str, Any],
        info: Mapping[str, Any] | None = None,
    ) -> Path:
        """Write engine then metadata (metadata last: an engine without metadata is never trusted)."""
        d = self.entry_dir(model_id, key)
        d.mkdir(parents=True, exist_ok=True)
        path = self.engine_path(model_id, key, name)
        mpath = self.meta_path(model_id, key, name)
        mpath.unlink(missing_ok=True)
        _atomic_write(path, bytes(data))
        meta = {
            "key": key,
            "key_inputs": _canonical(dict(key_inputs)),
            "engine": path.name,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            **_canonical(dict(info or {})),
        }
        _atomic_write(mpath, (json.dumps(meta, indent=2, sort_keys=True) + "\n").encode())
        return path

    def invalidate(self, model_id: str, key: str, name: str | None = None) -> None:
        """Drop one engine (or the whole entry) so the next load misses."""
        if name is None:
            shutil.rmtree(self.entry_dir(model_id, key), ignore_errors=True)
            return
        for p in (self.meta_path(model_id, key, name), self.engine_path(model_id, key, name)):
            p.unlink(missing_ok=True)

    def entries(self, model_id: str | None = None) -> list[Path]:
        """Cached entry directories (for listing / pruning)."""
        if not self.root.is_dir():
            return []
        models = (
            [self.root / _slug(model_id)]
            if model_id
            else [p for p in self.root.iterdir() if p.name != "timing"]
        )
        return sorted(e for m in models if m.is_dir() for e in m.iterdir() if e.is_dir())
