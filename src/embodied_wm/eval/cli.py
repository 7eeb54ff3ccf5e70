"""`embodied-wm eval`: offline replay evaluation of a model against the baselines on rosbags.

    embodied-wm eval BAG_OR_DIR... --model DIR [--backend B] [--camera-topic T ...] --out DIR
                     [--workers N] [--robustness] [--max-frames N] [--mcap OUT.mcap]

Also runs standalone: ``python -m embodied_wm.eval.cli ...`` (same arguments). Writes results.jsonl,
summary.json and report.html into --out (schema: docs/eval_schema.md), and with --mcap an MCAP of the
clean run for Foxglove (topics: eval/mcap_export.py; layout: config/foxglove_layout.json). Expected
failures (bad options, unreadable bags, a bag without a camera topic, a model that does not load) end
with one line on stderr and exit status 1 (2 for malformed arguments); a truncated bag is evaluated up
to the damage and only warned about.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from embodied_wm.errors import one_line_argparse_errors
from embodied_wm.eval import replay
from embodied_wm.eval.replay import EvalError, EvalOptions
from embodied_wm.eval.report import write_report
from embodied_wm.eval.robustness import PERTURBATIONS
from embodied_wm.io.bag import BagError, bag_info, bag_paths, choose_camera_topic
from embodied_wm.runtime.base import BackendError
from embodied_wm.runtime.registry import MODEL_BACKENDS, device_problem

log = logging.getLogger(__name__)

PROG = "embodied-wm eval"
BACKEND_CHOICES = MODEL_BACKENDS


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument(
        "bags",
        nargs="+",
        metavar="BAG_OR_DIR",
        help="rosbag2 directories, .mcap/.db3 files, or directories holding bags",
    )
    p.add_argument(
        "--model",
        metavar="DIR",
        default=None,
        help="model directory (checkpoint or export); without it only the baselines run",
    )
    p.add_argument("--backend", choices=BACKEND_CHOICES, default="auto", help="runtime for the model")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--camera-topic",
        nargs="+",
        action="extend",
        default=[],
        metavar="T",
        help="camera topic(s) to use, first present wins (default: the Image/CompressedImage "
        "topic with most messages outside /ground_truth/)",
    )
    p.add_argument(
        "--gt-topic",
        default=None,
        metavar="T",
        help="ground-truth AffordanceMap topic (default: one under /ground_truth/)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--workers", type=int, default=1, metavar="N", help="bags evaluated in parallel")
    p.add_argument(
        "--robustness",
        action="store_true",
        help="also evaluate under sensor noise, blur, brightness, occlusion and dropped "
        "audio / touch / frames (reported as deltas from the clean run)",
    )
    p.add_argument(
        "--perturbations",
        nargs="+",
        default=None,
        metavar="NAME",
        help="subset of perturbations for --robustness",
    )
    p.add_argument(
        "--ablate",
        action="store_true",
        help="with --robustness: also run the model with audio, touch and both masked under clean, "
        "occluded, dark, dropped and motion_blur; writes OUT/ablation.json and prints the table",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the robustness perturbations")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="camera frames per bag at most")
    p.add_argument("--samples", type=int, default=3, metavar="N", help="contact sheets per bag")
    p.add_argument("--no-report", action="store_true", help="skip report.html and its images")
    p.add_argument(
        "--mcap",
        default=None,
        metavar="OUT.mcap",
        help="also write the clean run as an MCAP for Foxglove: input camera, predicted frames per "
        "horizon step, error maps, affordance overlays, per-frame metrics (several bags: one file "
        "each, OUT.<index>_<bag>.mcap)",
    )
    geo = p.add_argument_group("baseline geometry without --model")
    geo.add_argument("--size", type=int, nargs=2, default=[64, 64], metavar=("H", "W"))
    geo.add_argument("--horizon", type=int, default=8)
    geo.add_argument("--dt-ms", type=float, default=100.0)
    p.set_defaults(func=run)
    one_line_argparse_errors(p, PROG)
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on the ``embodied-wm`` command."""
    p = subparsers.add_parser(
        "eval",
        help="evaluate a model and the baselines on rosbags (offline replay)",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    return configure_parser(p)


def build_parser() -> argparse.ArgumentParser:
    return configure_parser(argparse.ArgumentParser(prog=PROG, description=__doc__))


def _options(args: argparse.Namespace) -> Any:
    if args.workers < 1:
        raise EvalError(f"--workers must be >= 1, got {args.workers}")
    if args.max_frames is not None and args.max_frames < 1:
        raise EvalError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.samples < 0:
        raise EvalError(f"--samples must be >= 0, got {args.samples}")
    if args.horizon < 1 or args.dt_ms <= 0 or min(args.size) < 1:
        raise EvalError("--horizon, --dt-ms and --size must be positive")
    problem = device_problem(args.device)
    if problem:
        raise EvalError(f"--device {problem}")
    if args.model is not None:
        model = Path(args.model)
        if not model.exists():
            raise EvalError(f"--model {model}: no such directory")
        if not model.is_dir():
            raise EvalError(f"--model {model}: not a directory")
    perts = list(args.perturbations or [])
    unknown = [p for p in perts if p not in PERTURBATIONS]
    if unknown:
        raise EvalError(
            f"unknown perturbation(s) {', '.join(unknown)}; choose from {', '.join(PERTURBATIONS)}"
        )
    if perts and not args.robustness:
        raise EvalError("--perturbations needs --robustness")
    if args.ablate and not args.robustness:
        raise EvalError("--ablate needs --robustness")
    if args.ablate and args.model is None:
        raise EvalError("--ablate needs --model (the baselines use neither audio nor touch)")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise EvalError(f"--out {out}: exists and is not a directory")
    if args.mcap is not None:
        mcap = Path(args.mcap)
        if not mcap.name or mcap.is_dir():
            raise EvalError(f"--mcap {mcap}: is a directory; give a file name such as eval.mcap")
        if mcap.parent.exists() and not mcap.parent.is_dir():
            raise EvalError(f"--mcap {mcap}: {mcap.parent} is not a directory")
    return EvalOptions(
        model_dir=args.model,
        backend=args.backend,
        device=args.device,
        camera_topics=list(args.camera_topic),
        gt_topic=args.gt_topic,
        max_frames=args.max_frames,
        robustness=args.robustness,
        perturbations=perts,
        ablate=args.ablate,
        seed=args.seed,
        samples_per_bag=args.samples,
        image_size=(args.size[0], args.size[1]),
        horizon=args.horizon,
        dt_ns=round(args.dt_ms * 1e6),
        mcap=args.mcap,
    )


def run(args: argparse.Namespace) -> int:
    """The eval subcommand. Raises EvalError/BagError/BackendError for expected failures."""

    opts = _options(args)
    # A damaged bag is reported once, below, as a warning line; the reader's own log lines would repeat it.
    logging.getLogger("embodied_wm.io.bag").setLevel(logging.ERROR)
    bags = bag_paths(args.bags)
    if opts.mcap and len(bags) > 1:
        m = Path(opts.mcap)
        opts.mcap = str(m.with_name(f"{m.stem}.{{bag}}{m.suffix or '.mcap'}"))
    # Check every bag before starting work: a bag without a camera fails the run in seconds, not after
    # the others were evaluated.
    total = 0
    for b in bags:
        info = bag_info(b)
        cam = choose_camera_topic(info, opts.camera_topics)
        n = info.counts.get(cam, 0)
        total += min(n, opts.max_frames) if opts.max_frames else n
    ref = replay.model_info(opts)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with tqdm(total=total, unit="frame", desc="eval", disable=None, file=sys.stderr) as bar:
        results = replay.evaluate_bags(
            bags, opts, ref, out / ".parts", workers=args.workers, progress=bar.update
        )
    wall = time.perf_counter() - t0
    n_records = replay.merge_records(results, out / "results.jsonl")
    try:
        (out / ".parts").rmdir()
    except OSError:
        pass
    summary = replay.build_summary(results, ref, opts, wall_s=wall)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, allow_nan=False))
    if "ablation" in summary:
        (out / "ablation.json").write_text(json.dumps(summary["ablation"], indent=2, allow_nan=False))
    for w in summary.get("warnings", []):
        print(f"{PROG}: warning: {w}", file=sys.stderr)
    for st in summary["stopped"]:
        print(f"{PROG}: warning: {st['bag']}: bag is damaged, evaluated up to {st['at']}", file=sys.stderr)
    if summary["frames"] == 0:
        raise replay.EvalError(
            "no camera frame could be evaluated in "
            + ", ".join(str(b) for b in bags)
            + " (all camera messages undecodable, or the bag stops before the first frame)"
        )
    if not args.no_report:
        write_report(out, summary, results, ref)
    _print_summary(summary, n_records, wall, out, not args.no_report)
    if "ablation" in summary:
        print(format_ablation(summary["ablation"]))
        print(f"wrote {out / 'ablation.json'}")
    return 0


def format_ablation(ab: dict[str, Any]) -> str:
    """The ablation as a text table: one row per condition, one column group per mask."""
    masks = list(ab["masks"])
    lines = [
        "modality ablation (model): contact AUROC / moving PSNR dB / moving PSNR after contact dB",
        f"  {'condition':12s} " + " ".join(f"{m:>24s}" for m in masks),
    ]

    def f(v: float | None, nd: int) -> str:
        return "n/a" if v is None else f"{v:.{nd}f}"

    for cond, row in ab["conditions"].items():
        cells = [
            f"{f(row[m]['contact_auroc'], 3)} / {f(row[m]['psnr_moving_mean'], 2)} / "
            f"{f(row[m]['psnr_moving_after_contact'], 2)}"
            for m in masks
        ]
        lines.append(f"  {cond:12s} " + " ".join(f"{c:>24s}" for c in cells))
    return "\n".join(lines)


def _mean(vals: Sequence[float | None]) -> float | None:
    good = [v for v in vals if v is not None]
    return sum(good) / len(good) if good else None


def _print_summary(summary: dict[str, Any], n_records: int, wall: float, out: Path, report: bool) -> None:
    fps = summary["frames"] / wall if wall > 0 else float("inf")
    period = summary.get("camera_period_s") or summary["dt_s"]
    realtime = summary["frames"] * period / wall if wall > 0 else float("inf")
    cam = summary.get("camera_rate_hz")
    print(
        f"evaluated {summary['frames']} frames from {len(summary['bags'])} bag(s) in {wall:.1f} s "
        f"({fps:.1f} frames/s, {realtime:.1f}x real time); camera "
        f"{'n/a' if cam is None else f'{cam:.4g} Hz'}, model dt {summary['dt_s']:.4g} s "
        f"({1 / summary['dt_s']:.4g} Hz)"
    )
    for m, vals in summary["methods"].items():
        parts = []
        for metric, unit in (("psnr", " dB"), ("psnr_moving", " dB"), ("ssim", "")):
            v = _mean(vals[metric])
            parts.append(f"{metric} {'n/a' if v is None else f'{v:.4g}'}{unit if v is not None else ''}")
        print(f"  {m:10s} " + ", ".join(parts) + " (mean over horizon)")
    for ch, v in (summary.get("affordance") or {}).items():
        print(f"  affordance {ch}: AUROC {v['auroc']}, AP {v['ap']}")
    files = [str(out / f) for f in ("results.jsonl", "summary.json", *(["report.html"] if report else []))]
    files += [b["mcap"] for b in summary["bags"] if b.get("mcap")]
    print(f"wrote {n_records} predictions: " + ", ".join(files))


def user_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [
        EvalError,
        BagError,
        BackendError,
        FileNotFoundError,
        NotADirectoryError,
        PermissionError,
    ]
    try:
        # lazy: optional: absent here is handled below
        from embodied_wm.model.checkpoint import CheckpointError

        errs.append(CheckpointError)
    except ImportError:
        pass
    return tuple(errs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except user_errors() as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
