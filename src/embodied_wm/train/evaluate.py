"""Held-out evaluation of a world model on decoded episodes, with the project's metric definitions
(``eval.metrics``: per-frame moving-pixel PSNR averaged per horizon step, pooled-pixel AUROC).

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

from embodied_wm.eval.metrics import ScoreHistogram, score_frames
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


def _linear_frames(prev: np.ndarray, cur: np.ndarray, horizon: int, dt_ns: int) -> np.ndarray | None:
    s = cur.shape[0]
    be = LinearBackend(image_size=(s, s), horizon=horizon, dt_ns=dt_ns)
    be.predict(Observation(stamp_ns=1, image=prev))
    return be.predict(Observation(stamp_ns=1 + dt_ns, image=cur)).frames


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
) -> dict[str, Any]:
    """Metrics over the K-step windows of ``episodes`` (every window, or ``max_samples`` evenly spaced)."""
    cfg = model.cfg
    mods = ABLATIONS[ablate] if isinstance(ablate, str) else tuple(ablate)
    ds = WindowDataset(episodes, cfg, with_future_inputs=False)
    idx = sample_indices(len(ds), max_samples)
    k = cfg.horizon
    methods = ["model", "copy_last"] + (["linear"] if baselines else [])
    psnrs: dict[str, list[list[float]]] = {m: [[] for _ in range(k)] for m in methods}
    whole: dict[str, list[list[float]]] = {m: [[] for _ in range(k)] for m in methods}
    hists = {c: ScoreHistogram() for c in cfg.affordance_channels}
    moving_frac = [0.0] * k
    model.eval().to(device)
    have_linear = baselines
    for start in range(0, len(idx), batch_size):
        items = [ds[int(i)] for i in idx[start : start + batch_size]]
        batch = {n: torch.from_numpy(np.stack([it[n] for it in items])).to(device) for n in items[0]}
        _ablate(batch, mods)
        state = model.encoder(*(batch[n] for n in ENCODER_INPUTS))
        frames, aff = model.rollout_net(*state, batch["actions"])
        pred = (frames.clamp(0, 1) * 255.0).round().byte().permute(0, 1, 3, 4, 2).cpu().numpy()
        affn = aff.cpu().numpy()
        for b, it in enumerate(items):
            cur = np.moveaxis(np.round(it["image"] * 255.0), 0, -1).astype(np.uint8)
            prev = np.moveaxis(np.round(it["prev_image"] * 255.0), 0, -1).astype(np.uint8)
            lin = _linear_frames(prev, cur, k, cfg.dt_ns) if have_linear else None
            if have_linear and lin is None:
                have_linear = False
                methods.remove("linear")
                psnrs.pop("linear")
                whole.pop("linear")
            future = np.asarray(it["future"])
            cands = {"model": pred[b], "copy_last": np.broadcast_to(cur, future.shape)}
            if lin is not None:
                cands["linear"] = lin
            for m, frames_k in cands.items():
                scores = score_frames(frames_k, future, cur, with_ssim=False)
                for j in range(k):
                    whole[m][j].append(scores.psnr[j])
                    if scores.psnr_moving[j] is not None:
                        psnrs[m][j].append(scores.psnr_moving[j])  # type: ignore[arg-type]
                    if m == "model":
                        moving_frac[j] += float(scores.moving_fraction[j] or 0.0)
            if it["aff_valid"] > 0:
                for c, name in enumerate(cfg.affordance_channels):
                    hists[name].add(affn[b, c], it["affordance"][c] > 0.5)
    per_step = {m: [float(np.mean(v)) if v else math.nan for v in psnrs[m]] for m in methods}
    out: dict[str, Any] = {
        "samples": len(idx),
        "episodes": len(episodes),
        "ablate": list(mods),
        "psnr_moving_per_step": per_step,
        "psnr_moving_mean": {m: float(np.nanmean(v)) for m, v in per_step.items()},
        "moving_fraction_per_step": [f / max(len(idx), 1) for f in moving_frac],
        "psnr_per_step": {m: [float(np.mean(v)) if v else math.nan for v in whole[m]] for m in methods},
    }
    means = out["psnr_moving_mean"]
    out["psnr_moving_gain_vs_copy_last"] = means["model"] - means["copy_last"]
    out["psnr_moving_min_step_gain_vs_copy_last"] = float(
        np.nanmin(np.asarray(per_step["model"]) - np.asarray(per_step["copy_last"]))
    )
    for name, h in hists.items():
        out[f"{name}_auroc"] = h.auroc()
        out[f"{name}_ap"] = h.average_precision()
        out[f"{name}_positive_fraction"] = h.n_pos / max(h.n_pos + h.n_neg, 1)
    return out


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
