"""`sim` subcommands: ``record`` episodes to rosbag2 (MCAP) and ``benchmark`` the generator.

Wired into the main CLI through :func:`add_parser`; also runnable alone:
``python -m embodied_wm.sim.cli record --episodes 4 --frames 200 --seed 0 --res 64 --out out/sim``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _add_record_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--episodes", type=int, default=4, help="number of episodes (one bag each)")
    p.add_argument("--frames", type=int, default=200, help="camera frames per episode (10 Hz)")
    p.add_argument("--seed", type=int, default=0, help="base seed; episode i uses (seed, i)")
    p.add_argument("--res", type=int, default=64, help="square image resolution W (W x W)")
    p.add_argument("--out", default="out/sim", help="output directory (bags go to OUT/episode_NNNNN)")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument(
        "--first-episode", type=int, default=0, help="index of the first episode (to extend a set)"
    )
    p.add_argument(
        "--no-randomize", action="store_true", help="hold the scene fixed (no domain randomization)"
    )
    p.add_argument(
        "--hidden-physics",
        action="store_true",
        help="object colour independent of material; masses over 16x, friction drawn freely",
    )
    p.add_argument("--no-ground-truth", action="store_true", help="skip segmentation/depth/affordance topics")
    p.add_argument(
        "--skip-existing", action="store_true", help="leave episodes whose bag exists (resume a set)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``sim`` command (with ``record`` and ``benchmark``) to an argparse subparsers object."""
    sim = subparsers.add_parser("sim", help="MuJoCo tabletop simulator: record episodes, benchmark")
    sub = sim.add_subparsers(dest="sim_command", required=True)
    rec = sub.add_parser("record", help="record simulated episodes to rosbag2 (MCAP)")
    _add_record_args(rec)
    rec.set_defaults(func=run_record)
    bench = sub.add_parser("benchmark", help="measure complete frames/s of one recording process")
    bench.add_argument("--frames", type=int, default=200)
    bench.add_argument("--res", type=int, default=64)
    bench.set_defaults(func=run_benchmark)
    return sim


def run_record(args: argparse.Namespace) -> int:
    # lazy: MuJoCo is optional (the simulator extra)
    from embodied_wm.sim.recorder import record

    paths = record(
        args.episodes,
        args.frames,
        seed=args.seed,
        res=args.res,
        out_dir=args.out,
        workers=args.workers,
        randomize=not args.no_randomize,
        progress=not args.quiet,
        ground_truth=not args.no_ground_truth,
        first_episode=args.first_episode,
        skip_existing=args.skip_existing,
        hidden_physics=args.hidden_physics,
    )
    for p in paths:
        print(p)
    return 0


def run_benchmark(args: argparse.Namespace) -> int:
    # lazy: MuJoCo is optional (the simulator extra)
    from embodied_wm.sim.recorder import benchmark

    fps = benchmark(frames=args.frames, res=args.res)
    print(f"{fps:.1f} complete frames/s at {args.res}x{args.res} (1 process)")
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = argparse.ArgumentParser(prog="embodied-wm")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    # Accept both `... sim record ...` and, for convenience, `python -m embodied_wm.sim.cli record ...`.
    args_in = list(sys.argv[1:] if argv is None else argv)
    if not args_in or args_in[0] != "sim":
        args_in = ["sim", *args_in]
    args = parser.parse_args(args_in)
    try:
        return int(args.func(args))
    except (ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
