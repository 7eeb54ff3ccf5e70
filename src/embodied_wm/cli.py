"""`embodied-wm`: one command, subcommands per job (sim, train, export, build-engine, bench, eval,
eval-planner, eval-ranking, soak).

Each subsystem owns its subcommand's arguments (an ``add_parser``/``add_parsers`` function next to the
code it drives); this module only assembles them and turns expected failures into one-line errors.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

# (module, function) pairs that add subcommands. Each subparser sets ``func(args) -> int``.
_SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("embodied_wm.sim.cli", "add_parser"),
    ("embodied_wm.train.cli", "add_parser"),
    ("embodied_wm.runtime.cli", "add_parsers"),
    ("embodied_wm.eval.cli", "add_parser"),
    ("embodied_wm.eval.planning", "add_parser"),
    ("embodied_wm.eval.ranking", "add_parser"),
    ("embodied_wm.tools.soak", "add_parser"),
)


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "bad input or environment", reported as one line, not a traceback."""
    types: list[type[BaseException]] = [FileNotFoundError, NotADirectoryError, PermissionError]
    for mod, name in (
        ("embodied_wm.io.bag", "BagError"),
        ("embodied_wm.runtime.base", "BackendError"),
        ("embodied_wm.model.checkpoint", "CheckpointError"),
        ("embodied_wm.sensing.errors", "SensingError"),
        ("embodied_wm.eval.replay", "EvalError"),
    ):
        try:
            types.append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            continue
    return tuple(types)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embodied-wm",
        description="Multimodal world model for robots: simulate, train, export, benchmark, evaluate.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, func in _SUBCOMMANDS:
        try:
            mod = importlib.import_module(module)
        except ImportError as exc:
            # A subsystem whose optional dependency is missing must not take the whole CLI down.
            if exc.name and exc.name.startswith("embodied_wm") and exc.name != module:
                raise
            logging.getLogger(__name__).debug("subcommands of %s unavailable: %s", module, exc)
            continue
        getattr(mod, func)(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except _user_errors() as exc:
        print(f"embodied-wm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"embodied-wm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
