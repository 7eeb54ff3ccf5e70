"""Helpers shared by the runtime tests (a random tiny checkpoint, realistic Observations) plus a check of
the shared candidate validation. Other test_runtime_* modules import from here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from embodied_wm.observation import ModalitySpec, Observation
from embodied_wm.runtime.base import BackendError, validate_candidates

DT = 100_000_000


def make_tiny_checkpoint(out_dir: Path, seed: int = 0, **config_changes: Any) -> str:
    """A randomly initialised tiny model saved with save_checkpoint (no shipped weights needed);
    ``config_changes`` alter the tiny config (e.g. another ``tactile_shape``).

    Zero-initialised parameters (the frame head starts as exact copy-last) get small random values,
    so parity tests compare graphs whose flow, blend and colour paths all carry signal."""
    import torch

    from embodied_wm.model.checkpoint import save_checkpoint
    from embodied_wm.model.config import load_config
    from embodied_wm.model.world_model import WorldModel

    torch.manual_seed(seed)
    cfg = load_config("tiny")
    if config_changes:
        cfg = cfg.replace(**config_changes)
    model = WorldModel(cfg)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 0 and not p.any():
                p.normal_(0.0, 0.05)
    return save_checkpoint(model, cfg, out_dir)


@dataclass
class SharedModel:
    ckpt: Path
    cache: Path
    export: Path
    manifest: dict


_SHARED: SharedModel | None = None


def shared_model(tmp_path_factory: pytest.TempPathFactory) -> SharedModel:
    """One random tiny checkpoint and its ONNX export for the whole session (exports cost seconds of
    CPU, on a machine shared with other test runs). The export sits where ``ensure_onnx(ckpt, cache)``
    looks for it, so backends given the checkpoint and ``cache_dir=cache`` reuse it."""
    global _SHARED
    if _SHARED is None:
        from embodied_wm.runtime.onnx_export import export_onnx

        root = tmp_path_factory.mktemp("shared_tiny")
        model_id = make_tiny_checkpoint(root / "ckpt")
        export = root / "cache" / "onnx" / f"{model_id}-opset17"
        manifest = export_onnx(root / "ckpt", export, parity_candidates=(1, 4))
        _SHARED = SharedModel(root / "ckpt", root / "cache", export, manifest)
    return _SHARED


def make_observations(n: int, seed: int = 0, hw: tuple[int, int] = (96, 128)) -> list[Observation]:
    """Moving textured square + every modality; the 3rd observation lacks audio and tactile."""
    spec = ModalitySpec()
    rng = np.random.default_rng(seed)
    h, w = hw
    bg = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
    patch = rng.integers(120, 256, (24, 24, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = bg.copy()
        img[20 + 2 * i : 44 + 2 * i, 10 + 4 * i : 34 + 4 * i] = patch
        obs = Observation(
            stamp_ns=i * DT,
            image=img,
            audio=rng.normal(0, 0.1, spec.audio_window_samples).astype(np.float32),
            tactile=rng.random(spec.tactile_shape).astype(np.float32),
            proprio=rng.normal(0, 0.5, spec.proprio_dim).astype(np.float32),
            action=rng.normal(0, 0.1, spec.action_dim).astype(np.float32),
        )
        if i == 2:
            obs.audio = None
            obs.tactile = None
        out.append(obs)
    return out


def test_validate_candidates_accepts_and_converts() -> None:
    out = validate_candidates(np.zeros((3, 8, 6), np.float64), 8, 6)
    assert out.dtype == np.float32 and out.flags.c_contiguous and out.shape == (3, 8, 6)


@pytest.mark.parametrize(
    ("arr", "match"),
    [
        (np.zeros((8, 6)), r"expected shape \(N, 8, 6\)"),
        (np.zeros((2, 7, 6)), r"got \(2, 7, 6\)"),
        (np.zeros((2, 8, 5)), r"got \(2, 8, 5\)"),
        (np.zeros((0, 8, 6)), r"N>=1"),
        (np.array([[["a"] * 6] * 8]), "numeric"),
        (np.full((1, 8, 6), np.inf), "NaN or infinite"),
    ],
)
def test_validate_candidates_errors(arr: np.ndarray, match: str) -> None:
    with pytest.raises(BackendError, match=match):
        validate_candidates(arr, 8, 6)
