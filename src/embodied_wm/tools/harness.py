"""The one process harness for tools that run our ROS nodes as child processes (demo, e2e bench, soak):
a node's command line from a parameter dict, one log file per process, and a clean stop.

Children are stopped with SIGINT first (rclpy nodes shut down cleanly on it, as under ``ros2 launch``),
then killed if they do not exit in time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any


def ros_value(v: Any) -> str:
    """A Python value as a ``-p name:=value`` string (ROS parses it as YAML)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def node_command(
    module: str,
    params: Mapping[str, Any],
    remaps: Sequence[str] = (),
    cmd: Sequence[str] | None = None,
) -> list[str]:
    """``python -m <module> --ros-args [-r remap]... [-p name:=value]...`` (``cmd`` replaces the
    ``python -m <module>`` part, e.g. an installed executable)."""
    out = list(cmd) if cmd else [sys.executable, "-m", module]
    out.append("--ros-args")
    for r in remaps:
        out += ["-r", r]
    for k, v in params.items():
        out += ["-p", f"{k}:={ros_value(v)}"]
    return out


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """SIGINT, then kill after ``timeout`` seconds; waits for the exit either way."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Processes:
    """Named child processes, each writing stdout and stderr to ``<log_dir>/<name>.log``."""

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, IO[str]] = {}

    def spawn(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path(name), "w")  # the child writes to it; closed in stop()
        self._logs[name] = log
        proc = subprocess.Popen(list(args), env=dict(env), stdout=log, stderr=subprocess.STDOUT)
        self.procs[name] = proc
        return proc

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path(name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, first: Iterable[str] = (), timeout: float = 10.0) -> None:
        """SIGINT to the ``first`` processes (in that order), then to the rest; wait (kill after
        ``timeout``), and close the logs."""
        order = [n for n in first if n in self.procs] + [n for n in self.procs if n not in first]
        for name in order:
            proc = self.procs[name]
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for name in order:
            stop_process(self.procs[name], timeout)
        for log in self._logs.values():
            log.close()
        self._logs = {}
