"""Training loop: single process (CPU or one GPU) or torchrun (DistributedDataParallel, one process per
GPU, DistributedSampler shards the windows).

The output directory IS a checkpoint directory (``model.safetensors`` + ``config.json``, loadable with
``load_checkpoint``), plus ``optimizer.safetensors`` / ``train_state.json`` for ``--resume``, ``best/``
(the checkpoint with the best validation moving-region PSNR) and ``metrics.json``. Nothing is pickled.

Reproducibility: parameters are initialised from ``seed``; the window order of epoch e is a permutation
seeded by (seed, e), so a resumed run continues exactly the batch sequence of an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shlex
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DistributedSampler
from tqdm import tqdm

from embodied_wm.errors import ConfigError
from embodied_wm.model.checkpoint import load_checkpoint, save_checkpoint
from embodied_wm.model.config import ModelConfig, load_config
from embodied_wm.model.world_model import ENCODER_INPUTS, WorldModel
from embodied_wm.train.augment import AugmentConfig, augment_batch
from embodied_wm.train.dataset import (
    Episode,
    WindowDataset,
    load_episodes,
    split_episodes,
    stats_from_episodes,
)
from embodied_wm.train.derive import absent_sensors, apply_spec, derive_spec, describe_changes, is_template
from embodied_wm.train.evaluate import evaluate_model
from embodied_wm.train.losses import LossWeights, affordance_loss, flow_loss, frame_loss, latent_loss
from embodied_wm.train.windows import TimingError, auto_dt_ns, parse_dt, stamp_windows

log = logging.getLogger(__name__)


@dataclass
class TrainArgs:
    data: list[str]
    out: str
    config: str = "tiny"
    steps: int = 3000
    batch: int = 16
    lr: float = 2e-3
    seed: int = 0
    device: str = "cpu"
    resume: bool = False
    #: Checkpoint directory whose weights and config (incl. normalisation statistics) the run starts
    #: from, with a fresh optimizer and schedule (fine-tuning); ignored when resuming.
    init: str | None = None
    val_every: int = 500
    val_data: list[str] | None = None
    val_fraction: float = 0.1
    max_val_samples: int | None = 400
    cache_dir: str | None = None
    threads: int | None = None
    warmup: int = 200
    #: Frame-decoded horizon steps per batch (0 = all K).
    frame_steps: int = 4
    weight_decay: float = 1e-4
    progress: bool = True
    #: Model step in seconds; None: the config's dt_s; "auto": the camera's median period.
    dt: float | str | None = None
    weights: LossWeights = field(default_factory=LossWeights)
    #: Modality dropout + camera degradations (None = off: every sensor always present and clean).
    augment: AugmentConfig | None = None
    #: Draw windows by ``WindowDataset.weights`` (object motion, contact) instead of uniformly.
    oversample: bool = False
    #: Stop (with a resumable checkpoint) after this step / this many minutes of this process, keeping
    #: the schedule of ``steps``: training in several stretches, e.g. one per work session.
    stop_at: int | None = None
    max_minutes: float | None = None


class TrainStep(nn.Module):
    """Model + losses in one forward, so DistributedDataParallel sees every parameter use."""

    def __init__(
        self,
        model: WorldModel,
        weights: LossWeights,
        frame_steps: int = 4,
        seed: int = 0,
        augment: AugmentConfig | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.w = weights
        self.frame_steps = frame_steps
        self.augment = augment if augment is not None and augment.enabled else None
        self.seed = seed
        self.gen = torch.Generator().manual_seed(seed)
        self.aug_gen = torch.Generator().manual_seed(seed + 7919)

    def set_step(self, step: int) -> None:
        """Seed this step's random draws (decoded steps, augmentation) from (seed, step) alone, so a run
        resumed at any step draws exactly what an uninterrupted one would."""
        self.gen.manual_seed(self.seed * 1_000_003 + step)
        self.aug_gen.manual_seed(self.seed * 1_000_003 + step + 7919)

    def forward(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        m, w = self.model, self.w
        inputs = batch
        camera_kept: Tensor | None = None
        if self.augment is not None and self.training:
            inputs = augment_batch(batch, self.augment, self.aug_gen)
            camera_kept = inputs["camera_kept"]
        state = m.encoder(*(inputs[n] for n in ENCODER_INPUTS))
        k = batch["actions"].shape[1]
        # Frames are decoded for a random subset of the K steps (always including the last, the hardest):
        # the dynamics still unroll all K, and every step gets trained over the batches.
        n_dec = min(self.frame_steps, k) if self.frame_steps > 0 else k
        steps = sorted({k - 1, *torch.randperm(k - 1, generator=self.gen)[: n_dec - 1].tolist()})
        latent, skip1, skip2, skip3, last = state
        frames, aff_logits, rolled, flow = m.rollout_net.decode(
            latent, skip1, skip2, skip3, last, batch["actions"], frame_steps=steps
        )
        target = batch["future"][:, steps]
        b = target.shape[0]
        with torch.no_grad():  # consistency targets for the decoded steps only (saves encoder passes)
            fut = [batch[f"future_{n}"][:, steps].flatten(0, 1) for n in ENCODER_INPUTS]
            target_latent = m.encoder(*fut)[0].reshape(b, len(steps), -1)
        obj = batch["objmask"][:, steps] if "objmask" in batch else None
        parts = {
            # Moving weights from the clean current frame: the corruption is an input problem only.
            "frame": frame_loss(frames, target, batch["image"], w, obj, camera_kept),
            "affordance": affordance_loss(aff_logits, batch["affordance"], batch["aff_valid"], w),
            "latent": latent_loss(rolled[:, steps], target_latent),
        }
        total = w.frame * parts["frame"] + w.affordance * parts["affordance"] + w.latent * parts["latent"]
        if "flow" in batch and w.flow > 0:
            parts["flow"] = flow_loss(
                flow, batch["flow"][:, steps], target, batch["image"], w, obj, camera_kept
            )
            total = total + w.flow * parts["flow"]
        return total, parts


def _to_batch(items: list[dict[str, np.ndarray]], device: torch.device) -> dict[str, Tensor]:
    batch = {n: torch.from_numpy(np.stack([it[n] for it in items])) for n in items[0]}
    # Future frames travel as uint8 (4x less to copy) and become float on the device.
    batch["future"] = batch["future"].to(device).permute(0, 1, 4, 2, 3).float() / 255.0
    return {n: v.to(device, non_blocking=True) for n, v in batch.items()}


class WeightedWindowSampler:
    """Windows drawn with replacement in proportion to ``weights``, epoch e seeded by (seed, e) so a
    resumed run draws the same sequence; under torchrun each rank takes every world-th draw."""

    def __init__(self, weights: np.ndarray, num_replicas: int, rank: int, seed: int) -> None:
        if weights.size == 0 or not np.all(np.isfinite(weights)) or float(weights.min()) < 0:
            raise ValueError("window weights must be finite, non-negative and not empty")
        self.p = weights / weights.sum()
        self.world, self.rank, self.seed = num_replicas, rank, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.p.size // self.world

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch])
        draws = rng.choice(self.p.size, size=len(self) * self.world, replace=True, p=self.p)
        return iter(int(i) for i in draws[self.rank :: self.world])


def _batches(
    ds: WindowDataset, sampler: DistributedSampler | WeightedWindowSampler, batch: int, start_step: int
) -> Iterator[list[dict[str, np.ndarray]]]:
    per_epoch = len(sampler) // batch
    if per_epoch == 0:
        raise ConfigError(f"only {len(sampler)} training windows per process, fewer than --batch {batch}")
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        sampler.set_epoch(epoch)
        order = list(sampler)
        for i in range(offset, per_epoch):
            yield [ds[j] for j in order[i * batch : (i + 1) * batch]]
        epoch, offset = epoch + 1, 0


def lr_at(step: int, a: TrainArgs) -> float:
    """Linear warm-up, then cosine decay to 5% of the peak."""
    if step < a.warmup:
        return a.lr * (step + 1) / a.warmup
    p = min(1.0, (step - a.warmup) / max(1, a.steps - a.warmup))
    return a.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * p)))


def _save_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    tensors: dict[str, Tensor] = {}
    for pid, st in opt.state_dict()["state"].items():
        for name, v in st.items():
            t = v if isinstance(v, Tensor) else torch.tensor(v)
            tensors[f"{pid}.{name}"] = t.detach().cpu().contiguous()
    save_file(tensors, str(path))


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    flat = load_file(str(path))
    sd = opt.state_dict()
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in flat.items():
        pid, name = key.split(".", 1)
        state.setdefault(int(pid), {})[name] = v
    sd["state"] = state
    opt.load_state_dict(sd)


def _dist_env() -> tuple[int, int, int]:
    return (
        int(os.environ.get("WORLD_SIZE", "1")),
        int(os.environ.get("RANK", "0")),
        int(os.environ.get("LOCAL_RANK", "0")),
    )


def run_training(a: TrainArgs) -> dict[str, Any]:
    world, rank, local_rank = _dist_env()
    if a.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but torch.cuda.is_available() is False")
    if world > 1:
        dist.init_process_group("nccl" if a.device.startswith("cuda") else "gloo")
    device = torch.device(f"cuda:{local_rank}" if a.device.startswith("cuda") else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    out = Path(a.out)
    is_main = rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)

    resumed = a.resume and (out / "model.safetensors").is_file() and (out / "train_state.json").is_file()
    cfg: ModelConfig
    if resumed:
        loaded = load_checkpoint(out)
        cfg, model = loaded.cfg, loaded.model
        tstate = json.loads((out / "train_state.json").read_text())
        start_step, history = int(tstate["step"]), list(tstate.get("history", []))
        best = float(tstate.get("best", -math.inf))
        elapsed0 = float(tstate.get("elapsed_s", 0.0))
    elif a.init:
        loaded = load_checkpoint(Path(a.init))
        cfg, model = loaded.cfg, loaded.model
        start_step, history, best, elapsed0 = 0, [], -math.inf, 0.0
    else:
        cfg = load_config(a.config)
        start_step, history, best, elapsed0 = 0, [], -math.inf, 0.0

    cfg, data_record = config_for_data(a, cfg, fixed=resumed or bool(a.init))
    episodes = load_episodes(a.data, cfg, a.cache_dir, progress=a.progress and is_main)
    val_eps: list[Episode]
    if a.val_data:
        train_eps, val_eps = list(episodes), load_episodes(a.val_data, cfg, a.cache_dir)
    else:
        train_eps, val_eps = split_episodes(episodes, a.val_fraction, a.seed)
    cfg = dt_for_data(a, cfg, train_eps, val_eps, data_record, fixed=resumed)
    data_record["rejected_messages"] = rejected_messages([*train_eps, *val_eps])
    if is_main:
        _log_data(cfg, data_record)
    if not resumed and not a.init:
        cfg = cfg.replace(**stats_from_episodes(train_eps))
        model = WorldModel(cfg)
    model.to(device).train()
    ds = WindowDataset(train_eps, cfg, teacher_flow=a.weights.flow > 0)
    train_step = TrainStep(model, a.weights, a.frame_steps, a.seed * 101 + rank, a.augment)
    step_mod: nn.Module = train_step
    if world > 1:
        step_mod = nn.parallel.DistributedDataParallel(
            step_mod, device_ids=[local_rank] if device.type == "cuda" else None
        )
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay, betas=(0.9, 0.99))
    if resumed and (out / "optimizer.safetensors").is_file():
        _load_optimizer(opt, out / "optimizer.safetensors")
    sampler: DistributedSampler | WeightedWindowSampler
    if a.oversample:
        sampler = WeightedWindowSampler(ds.weights, world, rank, a.seed)
    else:
        sampler = DistributedSampler(
            ds, num_replicas=world, rank=rank, shuffle=True, seed=a.seed, drop_last=True
        )
    batches = _batches(ds, sampler, a.batch, start_step)
    command = " ".join(shlex.quote(x) for x in sys.argv)
    if is_main:
        log.info(
            "training %s (%d params) on %d windows from %d episodes (%d held out), device %s, world %d",
            cfg.name, model.num_params(), len(ds), len(train_eps), len(val_eps), device, world,
        )

    def checkpoint(step: int, val: dict[str, Any] | None, elapsed: float) -> None:
        meta = {
            "command": command,
            "step": step,
            "train_args": {k: v for k, v in asdict(a).items() if k not in ("weights", "augment")},
            "loss_weights": asdict(a.weights),
            "augment": asdict(a.augment) if a.augment is not None else None,
            "train_episodes": [e.source for e in train_eps],
            "val_episodes": [e.source for e in val_eps],
            "val_metrics": val or {},
            "data": data_record,
        }
        save_checkpoint(model, cfg, out, meta)
        _save_optimizer(opt, out / "optimizer.safetensors")
        state = {"step": step, "history": history, "best": best, "elapsed_s": elapsed}
        (out / "train_state.json").write_text(json.dumps(state, indent=1) + "\n")

    bar = None
    if a.progress and is_main:
        bar = tqdm(total=a.steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    t0 = time.time()
    running: dict[str, float] = {}
    #: This run's loss per step, averaged over the ranks (the loss of the whole distributed batch).
    step_losses: list[float] = []
    val: dict[str, Any] | None = None
    step = start_step
    stop_reason: str | None = None
    done = start_step
    for step in range(start_step, a.steps):
        train_step.set_step(step)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, a)
        batch = _to_batch(next(batches), device)
        loss, parts = step_mod(batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        step_losses.append(_mean_over_ranks(loss, world))
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        for n, v in {"loss": loss, **parts}.items():
            fv = float(v.detach())
            running[n] = 0.98 * running.get(n, fv) + 0.02 * fv
        if bar is not None:
            bar.update(1)
            bar.set_postfix({n: f"{v:.4f}" for n, v in running.items()}, refresh=False)
        done = step + 1
        if a.stop_at is not None and done >= a.stop_at:
            stop_reason = f"--stop-at {a.stop_at}"
        elif a.max_minutes is not None and done % 10 == 0:
            late = torch.tensor([float(time.time() - t0 > 60.0 * a.max_minutes)])
            if world > 1:  # every rank must stop at the same step
                dist.all_reduce(late, op=dist.ReduceOp.MAX)
            if float(late) > 0:
                stop_reason = f"--max-minutes {a.max_minutes:g}"
        if done % a.val_every == 0 or done == a.steps or stop_reason:
            if is_main:
                val = validate(model, val_eps, a.max_val_samples, device) if val_eps else None
                model.train()
                entry = {"step": done, "train_loss": dict(running), "time_s": elapsed0 + time.time() - t0}
                if val:
                    entry["val"] = val
                history.append(entry)
                msg = f"step {done}: loss {running['loss']:.4f}"
                if val:
                    msg += (
                        f", val moving PSNR model {val['psnr_moving_mean']['model']:.2f} dB vs copy-last "
                        f"{val['psnr_moving_mean']['copy_last']:.2f} dB (held command, as embodied-wm "
                        f"eval scores it: {val['held_actions']['psnr_moving_mean']['model']:.2f} dB), "
                        f"contact AUROC {val.get('contact_auroc')}"
                    )
                (bar.write if bar is not None else log.info)(msg)
                score = val["psnr_moving_gain_vs_copy_last"] if val else -math.inf
                checkpoint(done, val, elapsed0 + time.time() - t0)
                if val and score > best:
                    best = score
                    meta = {"command": command, "step": done, "val_metrics": val}
                    save_checkpoint(model, cfg, out / "best", meta)
                    state = json.loads((out / "train_state.json").read_text())
                    state["best"] = best
                    (out / "train_state.json").write_text(json.dumps(state, indent=1) + "\n")
            if world > 1:
                dist.barrier()
        if stop_reason:
            (bar.write if bar is not None else log.info)(
                f"stopped at step {done} ({stop_reason}); continue with the same command and --resume"
            )
            break
    if bar is not None:
        bar.close()
    result = {
        "config": cfg.name,
        "params": model.num_params(),
        "steps": a.steps,
        "stopped_at": done if stop_reason else None,
        "train_windows": len(ds),
        "train_episodes": len(train_eps),
        "val_episodes": len(val_eps),
        "train_time_s": elapsed0 + time.time() - t0,
        "final_train_loss": running,
        "final_val": val,
        "best_val_psnr_gain": best,
        "history": history,
        "command": command,
        "data": data_record,
        "loss_per_step": step_losses,
        "world_size": world,
    }
    digests = _rank_weight_digests(model, world)
    result["rank_weight_sha256"] = digests
    if is_main and len(set(digests)) > 1:
        log.error("the ranks ended with different weights (%s): DistributedDataParallel lost sync", digests)
    if is_main:
        (out / "metrics.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    if world > 1:
        dist.destroy_process_group()
    return result


def _mean_over_ranks(loss: Tensor, world: int) -> float:
    v = loss.detach().clone()
    if world > 1:
        dist.all_reduce(v)
        v /= world
    return float(v)


def _rank_weight_digests(model: nn.Module, world: int) -> list[str]:
    """SHA-256 of every rank's parameters (bytes, in state_dict order), gathered to all ranks: DDP
    replicas that stayed in sync give one digest ``world`` times."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    mine = h.hexdigest()
    if world <= 1:
        return [mine]
    out: list[Any] = [None] * world
    dist.all_gather_object(out, mine)
    return [str(d) for d in out]


def validate(
    model: WorldModel, val_eps: list[Episode], max_samples: int | None, device: torch.device
) -> dict[str, Any]:
    """Held-out metrics with the recorded commands (what checkpoints are chosen by), plus the model's
    frame metrics with the command at t held over the horizon, which is how the node runs and how
    ``embodied-wm eval`` scores it (the same scorer, so those figures agree on the same windows)."""
    val = evaluate_model(model, val_eps, max_samples=max_samples, device=device, baselines=False)
    held = evaluate_model(
        model, val_eps, max_samples=max_samples, device=device, baselines=False, actions="held"
    )
    val["held_actions"] = {k: held[k] for k in ("psnr_moving_mean", "psnr_moving_per_step", "psnr_per_step")}
    return val


# ------------------------------------------------------------------ the data fixes the config (issue 15)
def config_for_data(a: TrainArgs, cfg: ModelConfig, fixed: bool) -> tuple[ModelConfig, dict[str, Any]]:
    """The config with what the bags fix (train.derive): derived from a named template, checked against
    an explicit JSON config or the checkpoint of --init/--resume (``fixed``). Returns the record kept in
    the checkpoint metadata and metrics.json."""
    spec = derive_spec([*a.data, *(a.val_data or [])])
    explicit = fixed or not is_template(a.config)
    what = f"checkpoint config of {a.init or a.out}" if fixed else f"config {a.config}"
    cfg, changes = apply_spec(cfg, spec, explicit=explicit, what=what)
    record: dict[str, Any] = {
        "config_source": "checkpoint" if fixed else ("explicit" if explicit else "derived from the bags"),
        "data_spec": spec.as_dict(),
        "changes": changes,
        "absent": absent_sensors(spec),
    }
    return cfg, record


def dt_for_data(
    a: TrainArgs,
    cfg: ModelConfig,
    train_eps: list[Episode],
    val_eps: list[Episode],
    record: dict[str, Any],
    fixed: bool,
) -> ModelConfig:
    """The model's dt: --dt (seconds or "auto" = the camera's median period) or the config's, checked
    against every episode's camera stamps (train.windows) before training starts. A resumed run keeps
    the checkpoint's dt."""
    want = parse_dt(a.dt)
    if want == "auto":
        dt_ns = auto_dt_ns([e.stamps_ns for e in train_eps])
        source = "auto (the camera's median period)"
    elif want is not None:
        dt_ns = round(float(want) * 1e9)
        source = "--dt"
    else:
        dt_ns, source = cfg.dt_ns, "config"
    if fixed and dt_ns != cfg.dt_ns:
        raise TimingError(
            f"--dt {dt_ns / 1e9:g} s differs from the resumed checkpoint's dt_s {cfg.dt_s:g} s; "
            "a run resumes at the dt it was started with"
        )
    if dt_ns != cfg.dt_ns:
        cfg = cfg.replace(dt_s=dt_ns / 1e9)
    rates: dict[str, float] = {}
    for e in [*train_eps, *val_eps]:
        win = stamp_windows(e.stamps_ns, cfg.dt_ns, cfg.horizon, source=e.source)  # TimingError if unfit
        if win.rate is not None:
            rates[e.source] = round(win.rate.hz, 4)
    record["dt"] = {"dt_s": cfg.dt_s, "source": source, "camera_hz": rates}
    return cfg


def rejected_messages(episodes: list[Episode]) -> dict[str, Any]:
    """Messages the Pipeline rejected while decoding, summed over the episodes, with the newest reason
    of each kind (e.g. both shapes of a tactile array that does not fit) and the bags they came from."""
    counts: dict[str, int] = {}
    detail: dict[str, str] = {}
    per_bag: dict[str, dict[str, int]] = {}
    for e in episodes:
        for key, n in e.rejected.items():
            counts[key] = counts.get(key, 0) + int(n)
            per_bag.setdefault(e.source, {})[key] = int(n)
        detail.update(e.rejected_detail)
    return {"counts": counts, "reasons": detail, "bags": per_bag}


def _log_data(cfg: ModelConfig, record: dict[str, Any]) -> None:
    dt = record["dt"]
    hz = sorted(set(dt["camera_hz"].values()))
    log.info(
        "config %s for the data (%s): %s; tactile %s, proprio %d, action %d, audio %d Hz, image %d px, "
        "dt %.4g s (%s; camera %s Hz)",
        cfg.name, record["config_source"], describe_changes(record["changes"], record["absent"]),
        "x".join(map(str, cfg.tactile_shape)), cfg.proprio_dim, cfg.action_dim, cfg.audio_sample_rate,
        cfg.image_size, cfg.dt_s, dt["source"], ", ".join(f"{h:g}" for h in hz) or "?",
    )
    rej = record["rejected_messages"]["counts"]
    if rej:
        reasons = record["rejected_messages"]["reasons"]
        log.warning(
            "messages that do not fit the model were left out: %s",
            "; ".join(f"{k} x{n}: {reasons.get(k, '')}" for k, n in sorted(rej.items())),
        )
