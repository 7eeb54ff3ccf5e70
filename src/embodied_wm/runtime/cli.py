"""`embodied-wm export | build-engine | bench` (wired into the main CLI via ``add_parsers``; also runnable
as ``python -m embodied_wm.runtime.cli <command> ...``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from embodied_wm.errors import EmbodiedWMError
from embodied_wm.runtime.bench import run_bench
from embodied_wm.runtime.onnx_export import CANDIDATE_PROFILE, ensure_onnx, export_onnx
from embodied_wm.runtime.registry import BACKENDS, BASELINE_BACKENDS
from embodied_wm.runtime.select import create_backend
from embodied_wm.runtime.tensorrt_backend import build_engines_report, ensure_engines, import_tensorrt

log = logging.getLogger(__name__)


def _int_list(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from exc
    if not vals or any(v < 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return vals


def _profile(text: str) -> tuple[int, int, int]:
    vals = _int_list(text)
    if len(vals) != 3 or not vals[0] <= vals[1] <= vals[2]:
        raise argparse.ArgumentTypeError(f"expected MIN,OPT,MAX with MIN <= OPT <= MAX, got {text!r}")
    return vals[0], vals[1], vals[2]


def _hw(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected HxW (e.g. 480x640), got {text!r}") from exc
    return h, w


# ------------------------------------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    manifest = export_onnx(
        args.model,
        args.out,
        opset=args.opset,
        dynamic_candidates=args.static_candidates is None,
        static_candidates=args.static_candidates or 1,
    )
    parity = manifest["parity"]
    worst_state = max(parity["encoder"].values())
    tol = manifest["tolerances"]["fp32"]
    print(f"exported model {manifest['model_id']} ({manifest['config_name']}, opset {manifest['opset']})")
    print(f"  to {args.out}")
    print(f"  encoder.onnx: state max |onnx - torch| = {worst_state:.2e} (tolerance {tol['state']:g})")
    for n, d in parity["rollout"].items():
        print(
            f"  rollout.onnx N={n}: frames {d['frames']:.2e}, affordance {d['affordance']:.2e} "
            f"(tolerance {tol['frames']:g})"
        )
    return 0


# ------------------------------------------------------------------------------------- build-engine
def cmd_build_engine(args: argparse.Namespace) -> int:
    import_tensorrt()  # fail before exporting anything when TensorRT is absent
    export_dir = ensure_onnx(args.model, cache_dir=args.cache_dir)
    es = ensure_engines(
        export_dir,
        precision=args.precision,
        cache_dir=args.cache_dir,
        force=args.force,
        calib_bag=args.calib_bag,
        workspace_mb=args.workspace_mb,
        profile=args.profile,
    )
    print(build_engines_report(es))
    return 0


# -------------------------------------------------------------------------------------------- bench
def cmd_bench(args: argparse.Namespace) -> int:
    opts: dict[str, Any] = {}
    if args.threads:
        opts["threads"] = args.threads
    if args.precision:
        opts["precision"] = args.precision
    if args.cache_dir and args.backend in ("auto", "onnxruntime", "tensorrt"):
        opts["cache_dir"] = args.cache_dir  # PyTorch runs the checkpoint directly: nothing to cache
    if args.backend in BASELINE_BACKENDS:
        opts.clear()  # baselines have no threads/precision settings
    backend = create_backend(args.backend, args.model, device=args.device, **opts)
    report = run_bench(
        backend,
        iters=args.iters,
        warmup=args.warmup,
        candidates=args.candidates,
        camera_hw=args.camera,
        max_seconds=args.max_seconds,
    )
    text = json.dumps(report, indent=2) + "\n"
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)
    pred = report["predict"]
    print(f"backend {report['backend']['backend']} on {report['device']['device']}")
    print(
        "  predict: "
        + ", ".join(f"{s} p50 {v.get('p50', 0):.2f} ms" for s, v in pred["stages_ms"].items())
        + f"; total p50 {pred['total_ms']['p50']:.2f} / p99 {pred['total_ms']['p99']:.2f} ms"
        + f" -> {pred['predictions_per_s']} predictions/s"
    )
    for n, r in report["rollout"].items():
        print(
            f"  rollout N={n}: p50 {r['total_ms']['p50']:.2f} / p99 {r['total_ms']['p99']:.2f} ms"
            f" -> {r['predictions_per_s']} predictions/s"
        )
    for n, r in report["score"].items():
        print(f"  scores-only N={n}: p50 {r['total_ms']['p50']:.2f} / p99 {r['total_ms']['p99']:.2f} ms")
    for name, t in report["score_targets"].items():
        state = "met" if t["met"] else "NOT met"
        print(f"  target {name}: p50 {t['p50_ms']:.1f} ms vs {t['target_ms']:.0f} ms ({state})")
    if args.out:
        print(f"  written to {args.out}")
    return 0


# ------------------------------------------------------------------------------------------- wiring
def add_parsers(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="export a checkpoint to encoder.onnx, rollout.onnx and score.onnx (parity-checked)",
        description="Export a checkpoint directory to ONNX (opset 17) and check parity with PyTorch.",
    )
    p.add_argument("--model", required=True, help="checkpoint directory (model.safetensors + config.json)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument(
        "--static-candidates",
        type=int,
        metavar="N",
        help="fix the candidate axis to N (default: dynamic, for runtimes with dynamic shapes)",
    )
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser(
        "build-engine",
        help="build (or load from the cache) the TensorRT engines for a model",
        description="Build TensorRT engines for this GPU and cache them; an unchanged setup only loads.",
    )
    p.add_argument("--model", required=True, help="checkpoint or ONNX export directory")
    p.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16")
    p.add_argument("--calib-bag", help="rosbag whose observations calibrate INT8 (required for int8)")
    p.add_argument("--force", action="store_true", help="rebuild even when a cached engine matches")
    p.add_argument("--cache-dir", help="cache root (default ~/.cache/embodied_wm or $EMBODIED_WM_CACHE_DIR)")
    p.add_argument("--workspace-mb", type=int, default=1024, help="TensorRT builder workspace limit")
    p.add_argument(
        "--profile",
        type=_profile,
        default=CANDIDATE_PROFILE,
        metavar="MIN,OPT,MAX",
        help="optimisation profile of the candidate axis (default 1,64,256; lower MAX for base on small "
        "Jetsons, see docs/jetson.md)",
    )
    p.set_defaults(func=cmd_build_engine)

    p = subparsers.add_parser(
        "bench",
        help="per-stage latency and rollouts/s of a backend, as JSON",
        description="Benchmark one backend: predict() stages p50/p99 and K-step rollouts per second.",
    )
    p.add_argument("--model", help="checkpoint or ONNX export directory (optional for baselines)")
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
    )
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--out", help="write the JSON report here")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--candidates", type=_int_list, default=[1, 64], help="comma-separated N (default 1,64)")
    p.add_argument(
        "--camera", type=_hw, default=(480, 640), help="synthetic camera frame HxW (default 480x640)"
    )
    p.add_argument("--threads", type=int, help="intra-op threads (ONNX Runtime / PyTorch)")
    p.add_argument(
        "--precision", help="backend precision (fp16/fp32/int8 for TensorRT, fp16/fp32 for PyTorch)"
    )
    p.add_argument("--cache-dir", help="export/engine cache root")
    p.add_argument("--max-seconds", type=float, default=60.0, help="stop a section after this long")
    p.set_defaults(func=cmd_bench)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="embodied-wm", description="runtime commands: export, build-engine, bench"
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    add_parsers(parser.add_subparsers(dest="command", metavar="COMMAND"))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (EmbodiedWMError, FileNotFoundError, ValueError) as exc:
        print(f"embodied-wm {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
