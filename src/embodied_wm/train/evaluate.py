"""Held-out evaluation of a world model on decoded episodes, scored by eval's one scorer
(``eval.scoring.HorizonScorer``: frames matched by stamp, per-frame moving-pixel PSNR averaged per
horizon step) plus pooled-pixel affordance AUROC.

Reported next to the baselines on the same windows: copy-last-frame and linear motion extrapolation
(``runtime.baselines``). ``ablate`` masks modalities out (as a missing sensor, through the mask input)
to measure what they contribute, e.g. contact AUROC with and without audio + touch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from embodied_wm.eval.metrics import ScoreHistogram
from embodied_wm.eval.scoring import HorizonScorer, MethodStats, PendingPrediction
from embodied_wm.io.bag import bag_paths
from embodied_wm.model.checkpoint import load_checkpoint
from embodied_wm.model.world_model import ENCODER_INPUTS, WorldModel
from embodied_wm.observation import MODALITIES, Observation
from embodied_wm.runtime.baselines import LinearBackend
from embodied_wm.train.dataset import Episode, WindowDataset, load_episodes

#: Modality groups accepted by ``ablate``.
ABLATIONS: dict[str, tuple[str, ...]] = {
    "none": (),
    "audio": ("audio",),
    "touch": ("tactile",),
    "audio_touch": ("audio", "tactile"),
    "proprio": ("proprio",),
}


def _ablate(batch: dict[str, torch.Tensor], modalities: Sequence[str]) -> None:
    """Mask modalities out in place: mask 0 and input zeroed, exactly like preprocess does for a missing
    sensor."""
    name_of = {"audio": "audio_mel", "tactile": "tactile", "proprio": "proprio", "action": "action"}
    for m in modalities:
        i = MODALITIES.index(m)
        batch["mask"][:, i] = 0.0
        key = name_of.get(m)
        if key:
            batch[key].zero_()


def sample_indices(n: int, max_samples: int | None) -> np.ndarray:
    if max_samples is None or n <= max_samples:
        return np.arange(n)
    return np.linspace(0, n - 1, max_samples).round().astype(int)


def _linear_frames(
    prev: np.ndarray, cur: np.ndarray, horizon: int, dt_ns: int, prev_ns: int, cur_ns: int
) -> np.ndarray:
    """The linear baseline from the previous camera frame (at its real stamp: one camera period back,
    which is not dt when the camera is faster than the model) and the current one."""
    s = cur.shape[0]
    be = LinearBackend(image_size=(s, s), horizon=horizon, dt_ns=dt_ns)
    if prev_ns < cur_ns:
        be.predict(Observation(stamp_ns=prev_ns, image=prev))
    return be.predict(Observation(stamp_ns=cur_ns, image=cur)).frames


@torch.no_grad()
def evaluate_model(
    model: WorldModel,
    episodes: Sequence[Episode],
    *,
    ablate: str | Sequence[str] = "none",
    max_samples: int | None = None,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    baselines: bool = True,
    actions: str = "recorded",
) -> dict[str, Any]:
    """Metrics over the K-step windows of ``episodes`` (every window, or ``max_samples`` evenly spaced).

    Frames are scored by ``eval.scoring.HorizonScorer`` (the offline and online evaluation's scorer):
    each prediction's frames are stamped t + k·dt and matched to the episode's camera frames by stamp
    with its half-open dt/2 tolerance, so the trainer's validation and ``embodied-wm eval`` measure the
    same thing. ``actions="held"`` drives every step with the command at t, as the node and
    ``embodied-wm eval`` do (they do not know the future commands); "recorded" uses the commands that
    were actually sent (what a planner's candidate would be)."""
    if actions not in ("recorded", "held"):
        raise ValueError(f"actions must be 'recorded' or 'held', got {actions!r}")
    cfg = model.cfg
    mods = ABLATIONS[ablate] if isinstance(ablate, str) else tuple(ablate)
    ds = WindowDataset(episodes, cfg, with_future_inputs=False)
    idx = sample_indices(len(ds), max_samples)
    k = cfg.horizon
    methods = ["model", "copy_last"] + (["linear"] if baselines else [])
    stats = {m: MethodStats(k) for m in methods}
    hists = {c: ScoreHistogram() for c in cfg.affordance_channels}
    scorers: dict[int, HorizonScorer] = {}
    model.eval().to(device)
    offsets = cfg.dt_ns * np.arange(1, k + 1, dtype=np.int64)
    for start in range(0, len(idx), batch_size):
        chunk = [int(i) for i in idx[start : start + batch_size]]
        items = [ds[i] for i in chunk]
        batch = {n: torch.from_numpy(np.stack([it[n] for it in items])).to(device) for n in items[0]}
        _ablate(batch, mods)
        if actions == "held":
            batch["actions"] = batch["actions"][:, :1].expand_as(batch["actions"]).contiguous()
        state = model.encoder(*(batch[n] for n in ENCODER_INPUTS))
        frames, aff = model.rollout_net(*state, batch["actions"])
        pred = (frames.clamp(0, 1) * 255.0).round().byte().permute(0, 1, 3, 4, 2).cpu().numpy()
        affn = aff.cpu().numpy()
        for b, it in enumerate(items):
            ei, t = ds.index[chunk[b]]
            ep, _, prev_idx = ds.eps[ei]
            t_ns, prev_ns = int(ep.stamps_ns[t]), int(ep.stamps_ns[prev_idx[t]])
            scorer = scorers.get(ei)
            if scorer is None:
                # One scorer per episode: episodes may share stamps (every simulated bag starts at t0).
                scorers.clear()
                scorer = scorers[ei] = HorizonScorer(with_ssim=False)
                for st, img in zip(ep.stamps_ns, ep.raw["image"], strict=True):
                    scorer.add_frame(int(st), img)
            cur = np.moveaxis(np.round(it["image"] * 255.0), 0, -1).astype(np.uint8)
            prev = np.moveaxis(np.round(it["prev_image"] * 255.0), 0, -1).astype(np.uint8)
            cands = {"model": pred[b], "copy_last": np.repeat(cur[None], k, axis=0)}
            if baselines:
                cands["linear"] = _linear_frames(prev, cur, k, cfg.dt_ns, prev_ns, t_ns)
            for m, fr in cands.items():
                pending = PendingPrediction(m, t_ns, t_ns + offsets, fr)
                stats[m].add(scorer.score(pending), latency=False)
            if it["aff_valid"] > 0:
                for c, name in enumerate(cfg.affordance_channels):
                    hists[name].add(affn[b, c], it["affordance"][c] > 0.5)

    def per_step(m: str, metric: str) -> list[float]:
        return [math.nan if v is None else float(v) for v in stats[m].means(metric)]

    psnr_moving = {m: per_step(m, "psnr_moving") for m in methods}
    out: dict[str, Any] = {
        "samples": len(idx),
        "episodes": len(episodes),
        "ablate": list(mods),
        "actions": actions,
        "dt_s": cfg.dt_s,
        "psnr_moving_per_step": psnr_moving,
        "psnr_moving_mean": {m: _nanmean(v) for m, v in psnr_moving.items()},
        "moving_fraction_per_step": per_step("model", "moving_fraction"),
        "psnr_per_step": {m: per_step(m, "psnr") for m in methods},
    }
    means = out["psnr_moving_mean"]
    out["psnr_moving_gain_vs_copy_last"] = means["model"] - means["copy_last"]
    gains = np.asarray(psnr_moving["model"]) - np.asarray(psnr_moving["copy_last"])
    finite = np.isfinite(gains).any()
    out["psnr_moving_min_step_gain_vs_copy_last"] = float(np.nanmin(gains)) if finite else math.nan
    for name, h in hists.items():
        out[f"{name}_auroc"] = h.auroc()
        out[f"{name}_ap"] = h.average_precision()
        out[f"{name}_positive_fraction"] = h.n_pos / max(h.n_pos + h.n_neg, 1)
    return out


def _nanmean(v: Sequence[float]) -> float:
    a = np.asarray(v, np.float64)
    return float(np.nanmean(a)) if np.isfinite(a).any() else math.nan


def evaluate_checkpoint(
    model_dir: str | Path,
    data: Sequence[str | Path],
    ablate: str | Sequence[str] = "none",
    *,
    max_samples: int | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
    baselines: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint and evaluate it on the bags in ``data`` (files, bag dirs or dirs of bags)."""

    loaded = load_checkpoint(model_dir, device=device)
    episodes = load_episodes(data, loaded.cfg, cache_dir)
    res = evaluate_model(
        loaded.model, episodes, ablate=ablate, max_samples=max_samples, device=device, baselines=baselines
    )
    res["model_id"] = loaded.model_id
    return res


def evaluate_report(
    model_dir: str | Path,
    data: Sequence[str | Path],
    ablations: Sequence[str] = ("audio_touch",),
    *,
    max_samples: int | None = None,
    cache_dir: str | Path | None = None,
    device: str = "cpu",
) -> dict[str, Any]:
    """The numbers shipped with a model: full evaluation with baselines, plus affordance AUROC/AP with
    each modality group of ``ablations`` masked out."""

    loaded = load_checkpoint(model_dir, device=device)
    episodes = load_episodes(data, loaded.cfg, cache_dir)
    full = evaluate_model(loaded.model, episodes, max_samples=max_samples, device=device, baselines=True)
    report: dict[str, Any] = {
        "model_id": loaded.model_id,
        "config": loaded.cfg.name,
        "params": loaded.model.num_params(),
        "eval_bags": [str(p) for p in bag_paths(data)],
        **full,
        "ablation": {},
        "training": {
            k: loaded.metadata.get(k) for k in ("command", "step") if k in loaded.metadata
        },
    }
    for ab in ablations:
        res = evaluate_model(loaded.model, episodes, ablate=ab, max_samples=max_samples, device=device,
                             baselines=False)
        report["ablation"][ab] = {
            "masked": res["ablate"],
            **{k: v for k, v in res.items() if k.endswith(("_auroc", "_ap"))},
            "psnr_moving_mean_model": res["psnr_moving_mean"]["model"],
        }
    return report
