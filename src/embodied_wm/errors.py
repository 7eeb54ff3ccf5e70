"""The root of every error this package raises on purpose: ``EmbodiedWMError``.

Each layer raises its own subclasses (sensing.errors.SensingError, io.bag.BagError,
model.checkpoint.CheckpointError, runtime.base.BackendError, eval.replay.EvalError, ...), so a caller
can catch one package's failures or all of them. ``embodied-wm`` catches the root and prints one line
(exit 1). The classes keep their stdlib base (ValueError, RuntimeError) as a second parent, so code that
only knows the stdlib still catches them.

Also here: ``one_line_argparse_errors``, so an argument error of any command is one line and exit 2.
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

#: Exit status of a command whose arguments argparse refused (argparse's own convention).
USAGE_EXIT = 2


class EmbodiedWMError(Exception):
    """Root of the package's errors: bad input, bad files, bad settings, or a runtime that cannot run."""


class ConfigError(EmbodiedWMError, ValueError):
    """A setting is invalid: a command-line option, a node parameter, a config file or constructor value."""


class InvalidDataError(EmbodiedWMError, ValueError):
    """Arrays or messages that do not fit what the code needs (shapes, sizes, lengths)."""


def one_line_argparse_errors(parser: argparse.ArgumentParser, prog: str | None = None) -> None:
    """Argument errors of ``parser`` as one line on stderr and exit status 2 (argparse's default prints
    the whole usage text first)."""
    name = prog or parser.prog

    def error(message: str) -> NoReturn:
        print(f"{name}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(USAGE_EXIT)

    parser.error = error  # type: ignore[method-assign]
