"""`embodied-wm` as a whole: every argument error is one line and exit 2, every package error one line
and exit 1, the nested subcommands (bench e2e, train evaluate) and their deprecated spellings."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import embodied_wm
from embodied_wm import cli
from embodied_wm.errors import EmbodiedWMError


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                out.append((*prefix, name))
                out.extend(_commands(child, (*prefix, name)))
    return out


COMMANDS = _commands(cli.build_parser())


def test_nested_subcommands_exist() -> None:
    assert ("bench", "e2e") in COMMANDS and ("train", "evaluate") in COMMANDS
    ns = cli.build_parser().parse_args(["train", "evaluate", "--model", "m", "--data", "a", "b"])
    assert ns.data == ["a", "b"] and ns.func.__name__ == "_run_evaluate"
    ns = cli.build_parser().parse_args(["train", "--data", "a", "--out", "o"])
    assert ns.func.__name__ == "_run_train"
    ns = cli.build_parser().parse_args(["bench", "e2e", "--seconds", "3", "--backend", "linear"])
    assert ns.seconds == 3.0 and ns.func.__name__ == "run_from_args"


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_argument_errors_are_one_line_exit_2(
    command: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main([*command, "--no-such-option"])
    assert exc.value.code == 2
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"embodied-wm {' '.join(command)}: error:"), lines


def test_package_error_is_one_line_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    # create_backend refuses the device with a ConfigError (an EmbodiedWMError): no traceback.
    assert cli.main(["bench", "--backend", "linear", "--device", "tpu"]) == 1
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("embodied-wm bench: error: device must be"), lines


def test_train_without_data_is_an_argument_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--out", "o"])
    assert exc.value.code == 2
    assert "required: --data" in capsys.readouterr().err


def test_deprecated_bench_e2e_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["bench", "--e2e", "--seconds", "soon"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert "deprecated" in err[0] and "embodied-wm bench e2e" in err[0]
    assert err[1].startswith("embodied-wm bench e2e: error: argument --seconds")


def test_deprecated_train_cli_evaluate(capsys: pytest.CaptureFixture[str]) -> None:
    from embodied_wm.train import cli as train_cli

    with pytest.raises(SystemExit) as exc:
        train_cli.main(["evaluate", "--model"])
    assert exc.value.code == 2
    assert "deprecated" in capsys.readouterr().err.splitlines()[0]


def _package_modules() -> list[str]:
    root = Path(embodied_wm.__file__).parent
    names = []
    for info in pkgutil.walk_packages([str(root)], "embodied_wm."):
        if info.name.split(".")[1] in ("msg", "srv"):
            continue
        names.append(info.name)
    return names


def test_every_package_error_derives_from_the_root() -> None:
    found = []
    for name in _package_modules():
        try:
            mod = importlib.import_module(name)
        except ImportError as exc:  # an optional dependency (tensorrt) absent here
            if exc.name and exc.name.startswith("embodied_wm"):
                raise
            continue
        for _, obj in inspect.getmembers(mod, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == name:
                found.append(obj)
                assert issubclass(obj, EmbodiedWMError), f"{name}.{obj.__name__}"
    assert len(found) >= 15
