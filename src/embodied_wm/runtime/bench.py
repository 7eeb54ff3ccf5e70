"""Latency benchmark of one backend: per-stage p50/p99 of ``predict`` and throughput of K-step rollouts
at batch 1 and at N candidates (the planner's MPC query), written as one JSON document together with what
it ran on (CPU/GPU model, thread counts, backend describe(), library versions).

The scores-only rollout (``Backend.score_pixels``: pixel and latent goals, no frames decoded) is measured
the same way (``score``, one designated pixel), and as a CEM control step: 3 iterations of 64 candidates
(``cem_step``), against the targets in SCORE_TARGETS_MS.

Inputs are synthetic but realistic in size: a 640x480 camera frame with a moving textured square (so
preprocess includes the resize the live node pays for), 0.1 s of audio, a tactile grid, proprio and
action vectors. Sections stop early after ``max_seconds`` so a slow CPU backend cannot run for hours;
the JSON records how many iterations each figure is based on.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from embodied_wm.observation import ModalitySpec, Observation
from embodied_wm.runtime.base import Backend
from embodied_wm.runtime.machine import cpu_model

STAGES = ("preprocess", "encode", "rollout", "postprocess")
#: Targets of the scores-only path on 2 CPU cores (issue 13): 64 candidates x K steps, and one CEM step.
SCORE_TARGETS_MS: dict[str, float] = {"score_64": 100.0, "cem_step_3x64": 300.0}


def synthetic_observations(
    n: int, camera_hw: tuple[int, int] = (480, 640), dt_ns: int = 100_000_000, seed: int = 0
) -> list[Observation]:
    spec = ModalitySpec()
    rng = np.random.default_rng(seed)
    h, w = camera_hw
    background = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    side = max(8, min(h, w) // 5)
    patch = rng.integers(120, 256, (side, side, 3), dtype=np.uint8)
    out = []
    for i in range(n):
        img = background.copy()
        x = (10 + 7 * i) % max(1, w - side)
        y = (20 + 3 * i) % max(1, h - side)
        img[y : y + side, x : x + side] = patch
        out.append(
            Observation(
                stamp_ns=i * dt_ns,
                image=img,
                audio=(rng.normal(0, 0.05, spec.audio_window_samples)).astype(np.float32),
                tactile=rng.random(spec.tactile_shape).astype(np.float32),
                proprio=rng.normal(0, 0.5, spec.proprio_dim).astype(np.float32),
                action=rng.normal(0, 0.05, spec.action_dim).astype(np.float32),
            )
        )
    return out


def stats_ms(samples: Sequence[float]) -> dict[str, float | int]:
    a = np.asarray(samples, np.float64)
    if a.size == 0:
        return {"n": 0}
    return {
        "p50": round(float(np.percentile(a, 50)), 3),
        "p99": round(float(np.percentile(a, 99)), 3),
        "mean": round(float(a.mean()), 3),
        "min": round(float(a.min()), 3),
        "n": int(a.size),
    }


def device_info(backend: Backend) -> dict[str, Any]:
    desc = backend.describe()
    info: dict[str, Any] = {"cpu": cpu_model(), "machine": platform.machine()}
    dev = str(desc.get("device", "cpu"))
    if dev.startswith("cuda") and "torch" in sys.modules:
        # lazy: torch is heavy and optional here: loaded only when this path runs
        import torch

        if torch.cuda.is_available():
            idx = torch.device(dev).index or 0
            info["gpu"] = torch.cuda.get_device_name(idx)
            info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(idx)))
    info["device"] = info.get("gpu", info["cpu"]) if dev.startswith("cuda") else info["cpu"]
    return info


def thread_info() -> dict[str, Any]:
    info: dict[str, Any] = {"os_cpu_count": os.cpu_count()}
    try:
        info["affinity_cpus"] = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        pass
    if "torch" in sys.modules:
        # lazy: torch is heavy and optional here: loaded only when this path runs
        import torch

        info["torch_threads"] = torch.get_num_threads()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.get(var):
            info[var] = os.environ[var]
    return info


def versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "numpy": np.__version__}
    try:
        # lazy: optional: absent here is handled below
        from importlib.metadata import PackageNotFoundError, version
    except ImportError:  # pragma: no cover - py3.8+
        return out
    for dist in (
        "embodied_wm",
        "torch",
        "onnxruntime",
        "onnxruntime-gpu",
        "onnx",
        "opencv-python-headless",
        "tensorrt",
        "tensorrt_rtx",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def run_bench(
    backend: Backend,
    iters: int = 50,
    warmup: int = 5,
    candidates: Sequence[int] = (1, 64),
    camera_hw: tuple[int, int] = (480, 640),
    max_seconds: float = 60.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Benchmark ``backend``; returns the JSON-able report (see module doc)."""
    obs = synthetic_observations(warmup + iters, camera_hw, backend.dt_ns, seed)
    backend.reset()
    for o in obs[:warmup]:
        backend.predict(o)
    stage_ms: dict[str, list[float]] = {s: [] for s in STAGES}
    total_ms: list[float] = []
    t_section = time.perf_counter()
    for o in obs[warmup:]:
        t0 = time.perf_counter()
        pred = backend.predict(o)
        total_ms.append((time.perf_counter() - t0) * 1e3)
        for s in STAGES:
            stage_ms[s].append(float(pred.timings_ms.get(s, 0.0)))
        if time.perf_counter() - t_section > max_seconds:
            break
    p50_total = float(np.percentile(total_ms, 50))
    report: dict[str, Any] = {
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device_info(backend),
        "threads": thread_info(),
        "backend": backend.describe(),
        "versions": versions(),
        "settings": {
            "iters": iters,
            "warmup": warmup,
            "candidates": list(candidates),
            "camera_hw": list(camera_hw),
            "horizon": backend.horizon,
            "image_size": list(backend.image_size),
            "max_seconds_per_section": max_seconds,
        },
        "predict": {
            "stages_ms": {s: stats_ms(v) for s, v in stage_ms.items()},
            "total_ms": stats_ms(total_ms),
            # One K-step prediction per call, from a raw camera frame to uint8 frames.
            "predictions_per_s": round(1000.0 / p50_total, 2) if p50_total > 0 else None,
        },
        "rollout": {},
    }
    rng = np.random.default_rng(seed + 1)
    for n in candidates:
        cand = rng.normal(0, 0.05, (n, backend.horizon, backend.action_dim)).astype(np.float32)
        backend.rollout(cand)  # warm-up (TensorRT/ORT allocate per new shape)
        wall: list[float] = []
        roll: list[float] = []
        t_section = time.perf_counter()
        for _ in range(iters):
            t0 = time.perf_counter()
            r = backend.rollout(cand)
            wall.append((time.perf_counter() - t0) * 1e3)
            roll.append(float(r.timings_ms.get("rollout", 0.0)))
            if time.perf_counter() - t_section > max_seconds:
                break
        p50 = float(np.percentile(wall, 50))
        report["rollout"][str(n)] = {
            "total_ms": stats_ms(wall),
            "rollout_stage_ms": stats_ms(roll),
            # Candidate K-step rollouts evaluated per second from one encoded state.
            "predictions_per_s": round(n * 1000.0 / p50, 2) if p50 > 0 else None,
        }
    h, w = backend.image_size
    designated = np.array([[w * 0.4, h * 0.5]], np.float32)
    goals = np.array([[w * 0.6, h * 0.5]], np.float32)
    report["score"] = {}
    for n in sorted({*candidates, 64}):
        cand = rng.normal(0, 0.05, (n, backend.horizon, backend.action_dim)).astype(np.float32)
        backend.score_pixels(cand, designated, goals)  # warm-up
        wall = []
        t_section = time.perf_counter()
        for _ in range(iters):
            t0 = time.perf_counter()
            backend.score_pixels(cand, designated, goals)
            wall.append((time.perf_counter() - t0) * 1e3)
            if time.perf_counter() - t_section > max_seconds:
                break
        report["score"][str(n)] = {"total_ms": stats_ms(wall)}
    cem: list[float] = []
    t_section = time.perf_counter()
    for _ in range(max(1, iters // 5)):
        t0 = time.perf_counter()
        for _ in range(3):  # CEM: sample, score, refit (the refit is microseconds of numpy)
            cand = rng.normal(0, 0.05, (64, backend.horizon, backend.action_dim)).astype(np.float32)
            backend.score_pixels(cand, designated, goals)
        cem.append((time.perf_counter() - t0) * 1e3)
        if time.perf_counter() - t_section > max_seconds:
            break
    report["cem_step"] = {"iterations": 3, "candidates": 64, "total_ms": stats_ms(cem)}
    p50s = {
        "score_64": float(report["score"]["64"]["total_ms"].get("p50", np.inf)),
        "cem_step_3x64": float(report["cem_step"]["total_ms"].get("p50", np.inf)),
    }
    report["score_targets"] = {
        k: {"target_ms": v, "p50_ms": p50s[k], "met": p50s[k] <= v} for k, v in SCORE_TARGETS_MS.items()
    }
    return report
