"""`embodied-wm eval-planner`: options of the closed-loop planner evaluation (eval/planning.py), shared
with eval-ranking (``add_episode_arguments``, ``model_dir_from_args``)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from embodied_wm.errors import one_line_argparse_errors
from embodied_wm.eval import planning
from embodied_wm.eval.planning import (
    CONTROLLERS,
    PLANNER_SETTINGS,
    PROG,
    PlanningError,
    PlanningOptions,
    evaluate,
    summary_line,
    write_png,
)
from embodied_wm.runtime.select import default_model_dir

if TYPE_CHECKING:
    pass




def add_episode_arguments(
    p: argparse.ArgumentParser,
    backends: str = "auto, onnxruntime, pytorch, tensorrt, copy_last or linear",
    steps: int = 30,
    steps_help: str = "control steps per episode (10 Hz)",
) -> None:
    """The options eval-planner and eval-ranking share: the model, the scenes and the goal push."""
    p.add_argument(
        "--model", metavar="DIR", default=None, help="model directory (default: the shipped models/tiny)"
    )
    p.add_argument("--backend", default="auto", help=f"{backends} (default auto)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--out", required=True, metavar="DIR", help="output directory (created)")
    p.add_argument("--seed", type=int, default=7000, help="scene seed (training used 1000, validation 5000)")
    p.add_argument("--episodes", type=int, default=10, metavar="N", help="episodes evaluated")
    p.add_argument("--first-episode", type=int, default=0, metavar="I", help="first episode index")
    p.add_argument("--steps", type=int, default=steps, metavar="T", help=steps_help)
    p.add_argument("--warmup", type=int, default=3, metavar="W", help="still frames before control (>= 2)")
    p.add_argument(
        "--min-push", type=float, default=0.01, metavar="M", help="skip goals moving no object by M m"
    )
    p.add_argument("--max-attempts", type=int, default=5, help="give up after this many skips per episode")


def model_dir_from_args(args: argparse.Namespace) -> Path | None:
    """``--model``, else the shipped models/tiny (None for the action-blind baselines, which need none)."""
    if args.model:
        return Path(args.model)
    if args.backend in ("copy_last", "linear"):
        return None

    model = default_model_dir()
    if model is None:
        raise PlanningError("no --model given and the shipped models/tiny was not found")
    return model


def configure_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_episode_arguments(p)
    p.add_argument(
        "--controllers",
        nargs="+",
        default=list(CONTROLLERS),
        metavar="C",
        help=f"subset of {' '.join(CONTROLLERS)}",
    )
    p.add_argument(
        "--start-at",
        default="scene",
        metavar="WHERE",
        help="scene: control starts at the scene's initial state; push-stroke: every controller first "
        "replays the scripted approach (above the object, down beside it) and control starts where the "
        "stroke through the object begins (a goal within a few model horizons)",
    )
    p.add_argument(
        "--no-delay-compensation",
        action="store_true",
        help="sample all K actions from the one-frame-old state, as planner_node does",
    )
    p.add_argument(
        "--goal-mode",
        default="last",
        metavar="MODE",
        help="cem's goal term (planning.objectives.score_rollout): last (default, as the nodes score) or "
        "region (the goal MSE only where the goal differs from the current image, dilated)",
    )
    g = p.add_argument_group("planner settings (default: planner_node's parameters, config/planner.yaml)")
    g.add_argument("--num-candidates", type=int, default=None, metavar="N")
    g.add_argument("--iterations", type=int, default=None, metavar="N")
    g.add_argument("--elite-fraction", type=float, default=None, metavar="F")
    g.add_argument("--max-speed", type=float, default=None, metavar="V", help="m/s per linear component")
    g.add_argument(
        "--active-dims", type=int, nargs="+", default=None, metavar="D", help="0..5 = vx vy vz wx wy wz"
    )
    g.add_argument("--init-std", type=float, default=None, metavar="F")
    g.add_argument("--goal-weight", type=float, default=None, metavar="W")
    g.add_argument("--contact-weight", type=float, default=None, metavar="W")
    g.add_argument(
        "--objective",
        default=None,
        metavar="OBJ",
        help="pixel (the goal object's pixel to its goal pixel) or image (goal image)",
    )
    g.add_argument("--pixel-weight", type=float, default=None, metavar="W")
    g.add_argument("--approach-weight", type=float, default=None, metavar="W")
    g.add_argument("--planner-seed", type=int, default=None, metavar="S")
    p.set_defaults(func=run)
    one_line_argparse_errors(p, PROG)
    return p


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval-planner`` on the ``embodied-wm`` command."""
    p = subparsers.add_parser(
        "eval-planner",
        help="closed-loop test of the example planner: push an object toward a goal in the simulator",
        description=planning.__doc__.split("\n\n")[0] if planning.__doc__ else None,
    )
    return configure_parser(p)


def options_from_args(args: argparse.Namespace) -> PlanningOptions:
    planner = {
        name: getattr(args, "planner_seed" if name == "seed" else name)
        for name in PLANNER_SETTINGS
        if getattr(args, "planner_seed" if name == "seed" else name) is not None
    }
    model = model_dir_from_args(args)
    opts = PlanningOptions(
        out=Path(args.out),
        model_dir=model,
        backend=args.backend,
        device=args.device,
        seed=args.seed,
        episodes=args.episodes,
        first_episode=args.first_episode,
        steps=args.steps,
        warmup=args.warmup,
        controllers=tuple(dict.fromkeys(args.controllers)),
        planner=planner,
        delay_compensation=not args.no_delay_compensation,
        min_push=args.min_push,
        max_attempts=args.max_attempts,
        start_at=args.start_at,
        goal_mode=args.goal_mode,
    )
    opts.validate()
    return opts


def run(args: argparse.Namespace) -> int:
    try:
        opts = options_from_args(args)
    except PlanningError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2

    total = opts.episodes * opts.steps * len(opts.controllers)
    try:
        with tqdm(total=total, unit="step", desc="eval-planner", disable=None, file=sys.stderr) as bar:
            doc = evaluate(opts, progress=lambda: bar.update(1))
    except PlanningError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    opts.out.mkdir(parents=True, exist_ok=True)
    json_path, png_path = opts.out / "planning.json", opts.out / "planning.png"
    write_png(doc, png_path)
    doc.pop("_frames")
    json_path.write_text(json.dumps(doc, indent=2, allow_nan=False))
    print(f"wrote {json_path} and {png_path}")
    print(summary_line(doc))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = configure_parser(argparse.ArgumentParser(prog=PROG, description=planning.__doc__))
    args = parser.parse_args(argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
