"""Every node executable, run the way ``ros2 run`` runs it (install/embodied_wm/lib/embodied_wm/<exe>),
is sent SIGINT and SIGTERM at random moments of its first seconds (importing, loading the model,
configuring, spinning with data flowing) and must exit 0 without a traceback, without a crash and
without the shutdown errors of issue 17: no KeyboardInterrupt in destroy calls, no "context is
invalid" from the inference thread, no done callback without a result, no segfault in rclpy's logging
shutdown.

Signal patterns (each trial draws one): SIGINT twice 0-50 ms apart (a terminal Ctrl-C reaches the
process group, and ``ros2 launch`` forwards another), SIGINT once, SIGTERM once, SIGINT then SIGTERM
(launch escalates after its timeout), SIGTERM twice. The delay is drawn from the moment the process has
installed its handlers (its SigCgt mask in /proc shows SIGTERM caught): before that the interpreter is
still starting (about 0.15 s here), where no Python program can handle a signal.

While the trials run, a "robot" (sim_node publishing camera/audio/tactile/joints at 10 Hz and a
perception_node answering predict_rollout) gives the perception trials data to predict from and the
planner trials predictions and a service to call, so shutdowns land in the middle of real work.

EWM_SIGNAL_TRIALS sets the trials per node (default 6: at 10 the module took 7.6 min of a 19 min make test
on 2 loaded cores; the issue's 20 per node were run with EWM_SIGNAL_TRIALS=20: 124 trials, all clean),
EWM_SIGNAL_SEED the random seed (printed on failure), EWM_SIGNAL_PARALLEL how many trials run at once
(default 4).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import LOG_DIR, REPO, requires_ros

pytestmark = [requires_ros, pytest.mark.ros]

BIN = REPO / "install" / "embodied_wm" / "lib" / "embodied_wm"
TRIALS = int(os.environ.get("EWM_SIGNAL_TRIALS", "6"))
PARALLEL = int(os.environ.get("EWM_SIGNAL_PARALLEL", "4"))
SEED = int(os.environ.get("EWM_SIGNAL_SEED", str(int(time.time()) % 100_000)))
#: Signals land within this many seconds after the handlers are installed: it covers start-up (model
#: loading, the simulator's scene: 2-6 s here under load) and some spinning.
WINDOW_S = 5.0
#: A node must be gone this long after its last signal: start-up work in progress finishes first, and
#: with several trials starting at once on 2 busy cores sim_node's start-up alone took over 30 s.
EXIT_WITHIN_S = 60.0
PATTERNS: tuple[tuple[str, ...], ...] = (
    ("SIGINT", "SIGINT"),
    ("SIGINT",),
    ("SIGTERM",),
    ("SIGINT", "SIGTERM"),
    ("SIGTERM", "SIGTERM"),
)
#: Output that must never appear, whatever the moment of the signal.
FORBIDDEN = (
    "Traceback",
    "Fatal Python error",
    "Segmentation fault",
    "KeyboardInterrupt",
    "context is invalid",
    "context is not valid",
    "Unhandled exception",
    "prediction failed",
    "Failed to publish log message",
    "shutdown:",  # spin.quietly's line: a clean-up step failed
)


@dataclass
class Trial:
    index: int
    delay_s: float
    pattern: tuple[str, ...]
    gap_s: float


def _plan(node: str, n: int) -> list[Trial]:
    rng = random.Random(f"{SEED}-{node}")
    return [
        Trial(
            i,
            rng.uniform(0.0, WINDOW_S),
            PATTERNS[i % len(PATTERNS)],
            rng.uniform(0.0, 0.05) if i % len(PATTERNS) != 3 else rng.uniform(0.2, 1.0),
        )
        for i in range(n)
    ]


def _handlers_installed(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("SigCgt:"):
            mask = int(line.split()[1], 16)
            return bool(mask & (1 << (signal.SIGTERM - 1))) and bool(mask & (1 << (signal.SIGINT - 1)))
    return False


def _run_trial(cmd: list[str], env: dict[str, str], trial: Trial, log: Path) -> str:
    """Start ``cmd``, signal it as ``trial`` says; '' when it exited cleanly, else what went wrong."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
        t0 = time.monotonic()
        while not _handlers_installed(proc.pid):
            if proc.poll() is not None:
                break
            if time.monotonic() - t0 > 60:
                proc.kill()
                proc.wait()
                return "handlers not installed within 60 s"
            time.sleep(0.005)
        time.sleep(trial.delay_s)
        sent = []
        for i, name in enumerate(trial.pattern):
            if i:
                time.sleep(trial.gap_s)
            if proc.poll() is None:
                proc.send_signal(getattr(signal, name))
                sent.append(name)
        try:
            rc = proc.wait(timeout=EXIT_WITHIN_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return f"still running {EXIT_WITHIN_S} s after {sent}"
    text = log.read_text(errors="replace")
    problems = [f"exit status {rc}"] if rc != 0 else []
    if not sent:
        problems.append(f"exited (status {rc}) before any signal")
    problems += [f"output contains {word!r}" for word in FORBIDDEN if word in text]
    return "; ".join(problems)


def _trials(node: str, cmd: list[str], env: dict[str, str], n: int = TRIALS) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    trials = _plan(node, n)

    def one(trial: Trial) -> tuple[Trial, str, Path]:
        log = LOG_DIR / f"signals-{node}-{trial.index:02d}.log"
        named = [c.replace("{i}", str(trial.index)) for c in cmd]
        return trial, _run_trial(named, env, trial, log), log

    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(one, trials))
    failures = [
        f"  trial {t.index}: {'+'.join(t.pattern)} at {t.delay_s:.2f} s (gap {t.gap_s:.2f} s): {why} ({log})"
        for t, why, log in results
        if why
    ]
    assert not failures, f"{node}: {len(failures)}/{n} trials failed (EWM_SIGNAL_SEED={SEED}):\n" + "\n".join(
        failures
    )


def _env(ros_env: dict[str, str]) -> dict[str, str]:
    return dict(ros_env, PYTHONFAULTHANDLER="1")


def _exe(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{path} not installed (make build)")
    return str(path)


@pytest.fixture(scope="module")
def robot() -> Iterator[None]:
    """sim_node (data at 10 Hz) + perception_node (linear baseline: predictions and predict_rollout) for
    the trials to work against, in the test's DDS domain."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    procs = []
    for name, cmd in (
        ("sim", [_exe("sim_node"), "--ros-args", "-p", "rate_hz:=10.0"]),
        ("perception", [_exe("perception_node"), "--ros-args", "-p", "backend:=linear"]),
    ):
        log = open(LOG_DIR / f"signals-robot-{name}.log", "w")
        procs.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO), log))
    yield
    for proc, _ in procs:
        proc.send_signal(signal.SIGINT)
    for proc, log in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def own_domain() -> str:
    """A second DDS domain for trials whose publishers must not feed the robot's subscribers."""
    from conftest import _reserve_domain

    return str(_reserve_domain())


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 40-frame simulated episode (sim record)."""
    out = tmp_path_factory.mktemp("signal_bag")
    cmd = [sys.executable, "-m", "embodied_wm.sim.cli", "record", "--episodes", "1", "--frames", "40"]
    cmd += ["--seed", "0", "--res", "64", "--out", str(out), "--quiet"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300, cwd=REPO)
    return out / "episode_00000"


def test_perception_node_signals(robot: None, ros_env: dict[str, str]) -> None:
    """Half the trials load the shipped model (ONNX Runtime), half the linear baseline; all subscribe
    to the robot's sensors, so later signals land while the inference thread predicts and publishes."""
    exe = _exe("perception_node")
    env = _env(ros_env)
    half = TRIALS // 2
    _trials("perception_node", [exe, "--ros-args", "-r", "__node:=perception_trial_{i}"], env, half)
    linear = [exe, "--ros-args", "-r", "__node:=perception_trial_linear_{i}", "-p", "backend:=linear"]
    _trials("perception_node-linear", linear, env, TRIALS - half)


def test_perception_node_signals_while_waiting_for_lifecycle(ros_env: dict[str, str]) -> None:
    """autostart false: the node waits in unconfigured (and says how to start it) until the signal."""
    exe = _exe("perception_node")
    cmd = [exe, "--ros-args", "-r", "__node:=perception_waiting_{i}", "-p", "autostart:=false"]
    _trials("perception_node-waiting", cmd, _env(ros_env), max(3, TRIALS // 5))


def test_sim_node_signals(own_domain: str, ros_env: dict[str, str]) -> None:
    exe = _exe("sim_node")
    env = dict(_env(ros_env), ROS_DOMAIN_ID=own_domain)
    _trials("sim_node", [exe, "--ros-args", "-r", "__node:=sim_trial_{i}"], env)


def test_planner_node_signals(robot: None, ros_env: dict[str, str]) -> None:
    """The planner gets the robot's predictions and calls its predict_rollout: signals land with
    queries in flight."""
    exe = _exe("planner_node")
    cmd = [exe, "--ros-args", "-r", "__node:=planner_trial_{i}", "-p", "action_topic:=/planner_trial_{i}/cmd"]
    cmd += ["-p", "num_candidates:=8"]
    _trials("planner_node", cmd, _env(ros_env))


def test_evaluator_node_signals(robot: None, ros_env: dict[str, str], tmp_path: Path) -> None:
    """The evaluator scores the robot's predictions; at the signal it writes its summary and exits."""
    exe = _exe("evaluator_node")
    cmd = [
        exe,
        "--ros-args",
        "-r",
        "__node:=evaluator_trial_{i}",
        "-p",
        f"summary_path:={tmp_path}/s{{i}}.json",
    ]
    _trials("evaluator_node", cmd, _env(ros_env))
    assert len(list(tmp_path.glob("s*.json"))) == TRIALS, "a summary per trial (written at shutdown)"


def test_bag_player_signals(small_bag: Path, own_domain: str, ros_env: dict[str, str]) -> None:
    """The bag player (looping, with /clock) stops where it is and exits 0, like ros2 bag play."""
    exe = _exe("bag_player")
    env = dict(_env(ros_env), ROS_DOMAIN_ID=own_domain)
    _trials(
        "bag_player", [exe, str(small_bag), "--clock", "--loop", "--node-name", "bag_player_trial_{i}"], env
    )


def test_gz_tactile_adapter_without_ros_gz_says_why(ros_env: dict[str, str]) -> None:
    """ros_gz_interfaces is not installable here: the adapter exits 3 with one line (its signal
    handling is ros/spin.py's spin_node, which sim_node's trials cover)."""
    try:
        import ros_gz_interfaces  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ros_gz_interfaces installed: covered by a trial run")
    proc = subprocess.run(
        [_exe("gz_tactile_adapter")], env=ros_env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 3
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "ros_gz_interfaces" in lines[0], proc.stderr
