"""`embodied-wm`: one command, subcommands per job (sim, train [evaluate], export, build-engine,
bench [e2e], eval, eval-planner, eval-ranking, soak).

Each subsystem owns its subcommand's arguments (an ``add_parser``/``add_parsers`` function next to the
code it drives); this module only assembles them and turns expected failures into one-line errors:
any EmbodiedWMError (or a missing/unreadable file) exits 1, any argument error exits 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from embodied_wm.errors import EmbodiedWMError, one_line_argparse_errors

# (module, function) pairs that add subcommands. Each subparser sets ``func(args) -> int``.
_SUBCOMMANDS: tuple[tuple[str, str], ...] = (
    ("embodied_wm.sim.cli", "add_parser"),
    ("embodied_wm.train.cli", "add_parser"),
    ("embodied_wm.runtime.cli", "add_parsers"),
    ("embodied_wm.eval.cli", "add_parser"),
    ("embodied_wm.eval.planning_cli", "add_parser"),
    ("embodied_wm.eval.ranking", "add_parser"),
    ("embodied_wm.tools.soak", "add_parser"),
)
#: Sub-subcommands: (parent subcommand, module, function); the function gets the parent's subparsers.
_NESTED: tuple[tuple[str, str, str], ...] = (
    # Under `bench`, not in runtime/cli.py: the e2e bench drives ROS processes (tools/), above runtime.
    ("bench", "embodied_wm.tools.bench_e2e", "add_parser"),
    ("bench", "embodied_wm.tools.hostile", "add_parser"),
)


#: Errors that mean "bad input, file or environment": one line on stderr, exit 1, never a traceback.
#: Every package error derives from EmbodiedWMError; the OSErrors cover files the user named.
USER_ERRORS: tuple[type[BaseException], ...] = (
    EmbodiedWMError,
    FileNotFoundError,
    NotADirectoryError,
    PermissionError,
)

#: Old spellings kept for one release: (argv prefix, replacement, deprecation line).
_DEPRECATED_FLAGS = {
    ("bench", "--e2e"): (
        "e2e",
        "`embodied-wm bench --e2e` is deprecated and goes in the next release; use `embodied-wm bench e2e`",
    )
}

#: Flag spellings of sub-subcommands (not deprecated): ``bench --hostile`` is ``bench hostile``.
_FLAG_ALIASES = {("bench", "--hostile"): "hostile"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="embodied-wm",
        description="Multimodal world model for robots: simulate, train, export, benchmark, evaluate.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, func in _SUBCOMMANDS:
        mod = _optional_module(module)
        if mod is not None:
            getattr(mod, func)(sub)
    nested: dict[str, Any] = {}  # parent -> its subparsers (argparse allows one set per parser)
    for parent, module, func in _NESTED:
        mod = _optional_module(module)
        if mod is not None and parent in sub.choices:
            if parent not in nested:
                nested[parent] = sub.choices[parent].add_subparsers(dest=f"{parent}_command")
            getattr(mod, func)(nested[parent])
    _one_line_errors_everywhere(parser)
    return parser


def _optional_module(module: str) -> object | None:
    """The module, or None when an optional dependency of it (rclpy, mujoco, torch) is missing: a subsystem
    that cannot load must not take the whole CLI down. (Imported by name, hence importlib.)"""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        # Our generated interfaces (embodied_wm.msg/srv) exist only after the colcon build: without
        # them the ROS-driving subcommands are unavailable, the rest of the CLI works.
        generated = exc.name in ("embodied_wm.msg", "embodied_wm.srv")
        if exc.name and exc.name.startswith("embodied_wm") and exc.name != module and not generated:
            raise
        logging.getLogger(__name__).debug("subcommands of %s unavailable: %s", module, exc)
        return None


def _one_line_errors_everywhere(parser: argparse.ArgumentParser) -> None:
    """Argument errors of every (sub)command: one line, exit 2."""
    one_line_argparse_errors(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _one_line_errors_everywhere(child)


def _innermost(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The parser of the (sub)subcommand ``args`` was parsed for."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = getattr(args, action.dest, None)
            if chosen in action.choices:
                return _innermost(action.choices[chosen], args)
    return parser


def _rewrite_deprecated(argv: list[str]) -> list[str]:
    """``bench --e2e ...`` -> ``bench e2e ...`` (with a deprecation line on stderr); ``bench --hostile ...``
    -> ``bench hostile ...``."""
    for (command, flag), (replacement, line) in _DEPRECATED_FLAGS.items():
        if command in argv and flag in argv[argv.index(command) :]:
            i = argv.index(command)
            rest = [a for a in argv[i + 1 :] if a != flag]
            print(f"embodied-wm {command}: {line}", file=sys.stderr)
            return [*argv[: i + 1], replacement, *rest]
    for (command, flag), replacement in _FLAG_ALIASES.items():
        if command in argv and flag in argv[argv.index(command) :]:
            i = argv.index(command)
            return [*argv[: i + 1], replacement, *[a for a in argv[i + 1 :] if a != flag]]
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("MUJOCO_GL", "egl")
    parser = build_parser()
    args, extra = parser.parse_known_args(_rewrite_deprecated(list(sys.argv[1:] if argv is None else argv)))
    if extra:  # reported by the subcommand that was given them, not by the top-level parser
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        print(f"embodied-wm {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"embodied-wm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
