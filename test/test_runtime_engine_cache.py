"""Engine cache key and on-disk metadata handling (pure Python: no TensorRT needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from embodied_wm.runtime.engine_cache import EngineCache, engine_cache_key, engine_key_inputs

BASE: dict[str, Any] = {
    "model_id": "3f126ab17c88f61c",
    "trt_version": "10.3.0",
    "gpu_name": "Orin",
    "compute_capability": (8, 7),
    "precision": "fp16",
    "shapes": {
        "encoder": {"image": [1, 3, 64, 64]},
        "rollout": {"actions": [[1, 8, 6], [64, 8, 6], [256, 8, 6]]},
    },
}


def key(**changes: Any) -> str:
    return engine_cache_key(**{**BASE, **changes})


def test_key_is_stable_and_order_insensitive() -> None:
    assert key() == key()
    reordered = {"rollout": BASE["shapes"]["rollout"], "encoder": {"image": (1, 3, 64, 64)}}
    assert key(shapes=reordered) == key()  # dict order and tuple-vs-list do not matter
    assert key(compute_capability="8.7") == key()
    assert len(key()) == 24 and all(c in "0123456789abcdef" for c in key())


@pytest.mark.parametrize(
    "change",
    [
        {"model_id": "0000000000000000"},
        {"trt_version": "10.3.1"},
        {"gpu_name": "NVIDIA GeForce RTX 4090"},
        {"compute_capability": (8, 9)},
        {"precision": "fp32"},
        {"precision": "int8"},
        {"shapes": {"encoder": {"image": [1, 3, 128, 128]}, "rollout": BASE["shapes"]["rollout"]}},
        {
            "shapes": {
                "encoder": BASE["shapes"]["encoder"],
                "rollout": {"actions": [[1, 8, 6], [64, 8, 6], [128, 8, 6]]},
            }
        },
        {"extra": {"flavour": "tensorrt_rtx"}},
    ],
)
def test_key_changes_with_every_keyed_input(change: dict[str, Any]) -> None:
    assert key(**change) != key()


def test_bad_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        key(precision="fp8")


def _store(cache: EngineCache, data: bytes = b"ENGINE" * 100) -> tuple[str, dict[str, Any]]:
    k = key()
    ki = engine_key_inputs(**BASE)
    cache.store(BASE["model_id"], k, "rollout", data, ki, info={"build_s": 1.5})
    return k, ki


def test_store_then_load_hit(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    k, ki = _store(cache)
    found = cache.load(BASE["model_id"], k, "rollout", ki)
    assert found.status == "hit" and found.data == b"ENGINE" * 100
    assert found.path == tmp_path / BASE["model_id"] / k / "rollout.engine"
    meta = json.loads((found.path.parent / "rollout.engine.json").read_text())
    assert meta["key"] == k and meta["bytes"] == 600 and meta["build_s"] == 1.5
    assert meta["key_inputs"]["gpu_name"] == "Orin" and meta["key_inputs"]["compute_capability"] == "8.7"
    assert cache.entries() == [found.path.parent]


def test_miss_when_nothing_cached(tmp_path: Path) -> None:
    found = EngineCache(tmp_path).load("m", key(), "encoder")
    assert found.status == "miss"


def test_truncated_engine_is_corrupt(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    k, ki = _store(cache)
    p = cache.engine_path(BASE["model_id"], k, "rollout")
    p.write_bytes(p.read_bytes()[:100])
    found = cache.load(BASE["model_id"], k, "rollout", ki)
    assert found.status == "corrupt" and "truncated" in found.reason and found.data is None


def test_flipped_byte_is_corrupt(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    k, ki = _store(cache)
    p = cache.engine_path(BASE["model_id"], k, "rollout")
    data = bytearray(p.read_bytes())
    data[10] ^= 1
    p.write_bytes(bytes(data))
    found = cache.load(BASE["model_id"], k, "rollout", ki)
    assert found.status == "corrupt" and "sha256" in found.reason


def test_key_mismatch_in_metadata_is_stale(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    k, ki = _store(cache)
    mp = cache.meta_path(BASE["model_id"], k, "rollout")
    meta = json.loads(mp.read_text())
    meta["key"] = "0" * 24
    mp.write_text(json.dumps(meta))
    assert cache.load(BASE["model_id"], k, "rollout", ki).status == "stale"


def test_other_key_inputs_are_named(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    k, _ = _store(cache)
    other = engine_key_inputs(**{**BASE, "gpu_name": "Thor"})
    found = cache.load(BASE["model_id"], k, "rollout", other)
    assert found.status == "stale" and "gpu_name" in found.reason


def test_unreadable_or_missing_metadata_is_stale(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    k, ki = _store(cache)
    mp = cache.meta_path(BASE["model_id"], k, "rollout")
    mp.write_text("{not json")
    assert cache.load(BASE["model_id"], k, "rollout", ki).status == "stale"
    mp.unlink()
    found = cache.load(BASE["model_id"], k, "rollout", ki)
    assert found.status == "stale" and "interrupted" in found.reason


def test_invalidate_and_layout(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    k, ki = _store(cache)
    cache.invalidate(BASE["model_id"], k, "rollout")
    assert cache.load(BASE["model_id"], k, "rollout", ki).status == "miss"
    _store(cache)
    cache.invalidate(BASE["model_id"], k)
    assert not cache.entry_dir(BASE["model_id"], k).exists()
    tc = cache.timing_cache_path("10.3.0", "NVIDIA Jetson AGX Orin", "8.7")
    assert tc == tmp_path / "timing" / "10.3.0-NVIDIA-Jetson-AGX-Orin-sm8.7.cache"
    assert cache.calibration_path("m", k, "encoder").name == "encoder.calibration.cache"


def test_store_overwrites_previous_engine(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    k, ki = _store(cache, b"old")
    _store(cache, b"new engine")
    found = cache.load(BASE["model_id"], k, "rollout", ki)
    assert found.status == "hit" and found.data == b"new engine"
