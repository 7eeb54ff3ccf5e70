"""sim.launch.py and replay.launch.py run for real: the processes test/launch_model.py says ``ros2 launch``
would start, with the command lines and environment it would give them, started here in the same
order; this test then does what launch does (the player's on_exit handler decides when to shut down;
shutdown is SIGINT to every process, twice, as a terminal Ctrl-C plus launch's own forward gives).

Checks: data flows end to end with ``fastdds_shm:=true`` in every process; every process exits 0
without a traceback or a shutdown error; replay ends when playback ends, with the predictions scored.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import launch_model as L
import pytest
from conftest import LOG_DIR, REPO, requires_ros

pytestmark = [requires_ros, pytest.mark.ros, pytest.mark.slow]

FORBIDDEN = (
    "Traceback",
    "Fatal Python error",
    "context is invalid",
    "Unhandled exception",
    "prediction failed",
    "Failed to publish log message",
    "shutdown:",
)


class Running:
    """The started processes of one evaluated launch, with their logs."""

    def __init__(self, launch: L.Launch, env: dict[str, str], tmp: Path, name: str, extra: dict) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.launch = launch
        self.procs: dict[str, subprocess.Popen] = {}
        self.logs: dict[str, Path] = {}
        for process in launch.processes:
            if not Path(process.cmd[0]).exists():
                pytest.skip(f"{process.cmd[0]} not installed (make build)")
            log = LOG_DIR / f"{name}-{process.name}.log"
            self.logs[process.name] = log
            cmd = [*process.command_line(tmp), *extra.get(process.name, [])]
            with open(log, "w") as out:
                self.procs[process.name] = subprocess.Popen(
                    cmd, env={**env, **process.env}, stdout=out, stderr=subprocess.STDOUT, cwd=REPO
                )

    def text(self, name: str) -> str:
        return self.logs[name].read_text(errors="replace")

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            dead = {n: p.returncode for n, p in self.procs.items() if p.poll() is not None}
            assert not dead or what.startswith("exit"), f"exited while waiting for {what}: {dead}"
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")

    def interrupt(self, names: list[str] | None = None) -> dict[str, int]:
        """SIGINT twice (terminal + launch), then collect the exit statuses."""
        targets = [self.procs[n] for n in (names or list(self.procs))]
        for _ in range(2):
            for p in targets:
                if p.poll() is None:
                    p.send_signal(signal.SIGINT)
            time.sleep(0.03)
        return {n: self.procs[n].wait(timeout=60) for n in (names or list(self.procs))}

    def kill_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()

    def assert_clean(self) -> None:
        for name in self.procs:
            text = self.text(name)
            bad = [w for w in FORBIDDEN if w in text]
            assert not bad, f"{name} printed {bad} (see {self.logs[name]})"


@pytest.fixture()
def launch_env(ros_env: dict[str, str]) -> dict[str, str]:
    return dict(ros_env, PYTHONFAULTHANDLER="1")


@pytest.fixture()
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for r in started:
        r.kill_all()


def test_sim_launch_with_planner_and_fastdds_shm(
    launch_env: dict[str, str], running: list[Running], tmp_path: Path
) -> None:
    launch = L.evaluate("sim.launch.py", ["planner:=true", "fastdds_shm:=true"])
    assert {p.name for p in launch.processes} == {"sim_node", "perception_node", "planner_node"}
    plan_log = tmp_path / "planner.jsonl"
    r = Running(launch, launch_env, tmp_path, "launch-sim", {"planner_node": ["-p", f"log_path:={plan_log}"]})
    running.append(r)
    # Closed loop: perception predicts from the simulator, the planner scores rollouts and commands.
    r.wait_for(lambda: "active:" in r.text("perception_node"), 180, "perception_node active")
    r.wait_for(
        lambda: plan_log.is_file() and len(plan_log.read_text().splitlines()) >= 3, 180, "3 planner steps"
    )
    assert all(p.env["FASTRTPS_DEFAULT_PROFILES_FILE"].endswith("fastdds_shm.xml") for p in launch.processes)
    codes = r.interrupt()
    assert codes == {"sim_node": 0, "perception_node": 0, "planner_node": 0}, codes
    r.assert_clean()


@pytest.fixture(scope="module")
def sim_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("launch_bag")
    cmd = [sys.executable, "-m", "embodied_wm.sim.cli", "record", "--episodes", "1", "--frames", "30"]
    cmd += ["--seed", "0", "--res", "64", "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, cwd=REPO)
    return out / "episode_00000"


def test_replay_launch_ends_when_playback_ends(
    sim_bag: Path, launch_env: dict[str, str], running: list[Running], tmp_path: Path
) -> None:
    summary = tmp_path / "summary.json"
    argv = [f"bag:={sim_bag}", "player:=embodied_wm", "fastdds_shm:=true", "delay:=1.0"]
    argv += [f"summary_path:={summary}", "shutdown_delay:=3.0"]
    launch = L.evaluate("replay.launch.py", argv)
    r = Running(launch, launch_env, tmp_path, "launch-replay", {})
    running.append(r)
    player = r.procs["bag_player"]
    # The player waits for perception_node's camera subscription, plays 3 s of data and exits.
    r.wait_for(lambda: player.poll() is not None, 240, "exit of bag_player")
    assert player.returncode == 0, r.text("bag_player")
    (process,) = [p for p in launch.processes if p.name == "bag_player"]
    ((delay, reason),) = L.shutdowns(L.process_exited(process, player.returncode, launch), launch)
    assert reason.endswith("finished playback")
    time.sleep(delay)
    codes = r.interrupt(["perception_node", "evaluator_node"])
    assert codes == {"perception_node": 0, "evaluator_node": 0}, codes
    r.assert_clean()
    result = json.loads(summary.read_text())
    # Predictions were made from the bag and scored against its frames (the evaluator receives 11 of
    # the 30 camera frames here, with HEAD's evaluator too: not this test's subject).
    assert result["model_id"] and result["scored"] >= 20 and result["pending"] == 0, result
