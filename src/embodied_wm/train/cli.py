"""`embodied-wm train` / `python -m embodied_wm.train.cli`: train a world model on rosbag2 files, and
`embodied-wm train evaluate` for held-out metrics of a checkpoint.

Examples:
  embodied-wm train --data out/sim/train --config tiny --out out/train/tiny --steps 3000
  torchrun --nproc_per_node 4 -m embodied_wm.train.cli --data bags/ --config base --out out/base --device cuda
  embodied-wm train evaluate --model models/tiny --data out/sim/val --out metrics.json

(``python -m embodied_wm.train.cli evaluate`` still works for one release, with a deprecation line.)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from embodied_wm.errors import ConfigError, EmbodiedWMError
from embodied_wm.train.windows import TimingError, parse_dt


def _dt_arg(value: str) -> float | str:
    try:
        dt = parse_dt(value)
    except TimingError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--dt ")) from None
    assert dt is not None
    return dt


def _add_train_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    """``required``: --data and --out are argparse-required (False where ``train evaluate`` shares the
    parser; _run_train then checks them with the same message)."""
    p.add_argument("--data", nargs="+", required=required, help="rosbag2 files/dirs, or dirs of bags")
    p.add_argument("--config", default="tiny",
                   help="model config: a name (tiny, base) is a template whose tactile shape, proprio and "
                        "action sizes, audio rate and image size are taken from the bags; a JSON path is "
                        "used as it is (a bag that does not fit it is an error)")
    p.add_argument("--dt", default=None, metavar="SECONDS|auto", type=_dt_arg,
                   help="model step: seconds (a whole multiple of the camera period), 'auto' = the "
                        "camera's median period; default: the config's dt_s. Recorded as the model's dt_s")
    p.add_argument("--out", required=required, help="output dir: checkpoint, metrics.json, resume state")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch", type=int, default=16, help="windows per step (per process under torchrun)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup", type=int, default=200, help="steps of linear learning-rate warm-up")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="start from this checkpoint's weights and config (fresh optimizer and schedule)")
    p.add_argument("--val-every", type=int, default=500)
    p.add_argument("--val-data", nargs="+", default=None,
                   help="held-out bags (default: split --data by episode)")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--max-val-samples", type=int, default=400)
    p.add_argument("--cache-dir", default=None, help="decoded-episode cache (default ~/.cache/embodied_wm)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--frame-steps", type=int, default=4,
                   help="horizon steps whose frames are decoded per batch (random subset; 0 = all K)")
    p.add_argument("--flow-weight", type=float, default=0.05,
                   help="weight of the teacher optical-flow loss on the warp (0 = off; without it the model "
                        "learns to fade a moving finger out instead of moving it; models/tiny: 0.05)")
    p.add_argument("--object-weight", type=float, default=20.0,
                   help="extra loss weight of moving object pixels (needs the simulator's segmentation "
                        "topic in the bags; 0 = off)")
    p.add_argument("--no-augment", action="store_true",
                   help="no modality dropout or camera degradations (every sensor always present)")
    p.add_argument("--degrade", type=float, default=0.35,
                   help="probability that a sample's camera is degraded (occluded, dark, over-exposed, "
                        "motion blur, dropped previous frame)")
    p.add_argument("--no-oversample", action="store_true",
                   help="draw windows uniformly (default: windows where an object moves or the finger "
                        "touches are drawn more often)")
    p.add_argument("--stop-at", type=int, default=None, metavar="STEP",
                   help="stop after this step with a resumable checkpoint (the schedule stays --steps')")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop after this many minutes with a resumable checkpoint (continue with --resume)")
    p.add_argument("--no-progress", action="store_true")


def _run_train(args: argparse.Namespace) -> int:
    missing = [opt for opt in ("--data", "--out") if getattr(args, opt[2:]) is None]
    if missing:
        parser = getattr(args, "train_parser", None)
        message = f"the following arguments are required: {', '.join(missing)}"
        if parser is not None:
            parser.error(message)
        raise ConfigError(message)
    from embodied_wm.train.augment import AugmentConfig
    from embodied_wm.train.losses import LossWeights

    # lazy: torch is heavy and optional here: loaded only when this path runs
    from embodied_wm.train.trainer import TrainArgs, run_training

    a = TrainArgs(
        data=args.data, out=args.out, config=args.config, steps=args.steps, batch=args.batch, lr=args.lr,
        seed=args.seed, device=args.device, resume=args.resume, init=args.init, val_every=args.val_every,
        val_data=args.val_data, val_fraction=args.val_fraction, max_val_samples=args.max_val_samples,
        cache_dir=args.cache_dir, threads=args.threads, progress=not args.no_progress,
        frame_steps=args.frame_steps,
        weights=LossWeights(flow=args.flow_weight, object_moving=args.object_weight),
        augment=None if args.no_augment else AugmentConfig(degrade=args.degrade),
        oversample=not args.no_oversample, stop_at=args.stop_at, max_minutes=args.max_minutes,
        dt=args.dt, warmup=args.warmup,
    )
    res = run_training(a)
    v = res.get("final_val") or {}
    if v:
        print(
            f"done: {res['steps']} steps in {res['train_time_s']:.0f} s; val moving PSNR "
            f"{v['psnr_moving_mean']['model']:.2f} dB (copy-last {v['psnr_moving_mean']['copy_last']:.2f}), "
            f"contact AUROC {v.get('contact_auroc')}; checkpoint in {args.out}"
        )
    return 0


def _run_evaluate(args: argparse.Namespace) -> int:
    # lazy: torch is heavy and optional here: loaded only when this path runs
    from embodied_wm.train.evaluate import evaluate_report

    if args.threads:
        # lazy: torch is heavy and optional here: loaded only when this path runs
        import torch

        torch.set_num_threads(args.threads)

    report = evaluate_report(
        args.model, args.data, ablations=args.ablate, max_samples=args.max_samples, cache_dir=args.cache_dir,
        device=args.device,
    )
    text = json.dumps(report, indent=1)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)
    return 0


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `train` subcommand and its `train evaluate` subcommand to a parent CLI."""
    p = subparsers.add_parser("train", help="train a world model on rosbag2 files", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_args(p, required=False)
    p.set_defaults(func=_run_train, train_parser=p)
    sub = p.add_subparsers(dest="train_command", metavar="{evaluate}")
    ev = sub.add_parser("evaluate", help="held-out metrics of a checkpoint (and modality ablations)",
                        description="Held-out metrics of a checkpoint: PSNR per horizon step vs the "
                                    "baselines, affordance AUROC, one more evaluation per masked modality.")
    _add_evaluate_args(ev)
    ev.set_defaults(func=_run_evaluate)
    return p


def _evaluate_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m embodied_wm.train.cli evaluate")
    _add_evaluate_args(p)
    return p


def _add_evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint dir")
    p.add_argument("--data", nargs="+", required=True, help="held-out bags")
    p.add_argument("--ablate", nargs="+", default=["audio_touch"],
                   help="modality groups to mask out, one extra evaluation each (audio, touch, audio_touch)")
    p.add_argument("--max-samples", type=int, default=None)
    p.add_argument("--cache-dir", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", default=None, help="write the results JSON here")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if argv[:1] == ["evaluate"]:
        print(
            "python -m embodied_wm.train.cli evaluate is deprecated and goes in the next release; "
            "use: embodied-wm train evaluate",
            file=sys.stderr,
        )
        return _run_evaluate(_evaluate_parser().parse_args(argv[1:]))
    parser = argparse.ArgumentParser(prog="python -m embodied_wm.train.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_args(parser)
    args = parser.parse_args(argv)
    try:
        return _run_train(args)
    except (EmbodiedWMError, FileNotFoundError) as exc:
        # Under torchrun every rank reports the same line; one line each, never a traceback.
        print(f"train: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
