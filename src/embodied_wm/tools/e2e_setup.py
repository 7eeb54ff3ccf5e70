"""The processes of the end-to-end bench and the soak run: synthetic sensors -> perception_node (and a
pass-through node, the transport floor) -> a measuring node in this process (E2ESetup). The
processes run through tools/harness.py; the numbers are computed in bench_e2e.py and soak.py."""

from __future__ import annotations

import contextlib
import os
import random
import secrets
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

from embodied_wm.errors import EmbodiedWMError, InvalidDataError
from embodied_wm.msg import PredictedFrames
from embodied_wm.ros.qos import FASTDDS_PROFILE_VARS, SHM_PROFILE_OPT_OUT, default_shm_profile
from embodied_wm.tools.harness import Processes, node_command
from embodied_wm.tools.sensor_publisher import read_stats

NS_PER_S = 1_000_000_000


DIAGNOSTICS_TOPIC = "/diagnostics"


#: perception_node inputs (parameter ``topics.<input>``) -> sensor_publisher stream names.
_NODE_INPUTS = {"camera": "image", "audio": "audio", "tactile": "tactile", "joint_states": "joints",
                "action": "twist"}  # fmt: skip


class BenchError(EmbodiedWMError, RuntimeError):
    """The benchmark could not run (a process died, nothing arrived, bad arguments)."""


# ------------------------------------------------------------------------------------- measurement
def cdr_header_stamp_ns(data: bytes) -> int:
    """The ``header.stamp`` of a serialized message whose first field is a std_msgs/Header.

    A CDR buffer starts with a 4-byte encapsulation header (byte 1: 0 big endian, 1 little endian);
    the Header's Time follows as int32 sec, uint32 nanosec. Reading 12 bytes is enough.
    """
    if len(data) < 12:
        raise InvalidDataError(f"serialized message too short for a header ({len(data)} bytes)")
    order = "<" if data[1] & 1 else ">"
    sec, nsec = struct.unpack_from(order + "iI", data, 4)
    return sec * NS_PER_S + nsec


def proc_rss_kb(pid: int) -> int | None:
    """Resident set size (VmRSS) of ``pid`` in kB from /proc, None if the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def proc_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds used so far by ``pid`` (/proc/PID/stat), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime are fields 14 and 15 overall


# ---------------------------------------------------------------------------------------- harness
def resolve_fastdds_profile(profile: str | os.PathLike[str] | None) -> str | None:
    """The Fast DDS profile every process of a run uses. None = what perception_node would pick for
    itself (``qos.default_shm_profile``: the environment's profile, else config/fastdds_shm.xml), given
    to the publisher and the floor node too, because a 640x480 frame does not fit Fast DDS's default
    0.5 MB segment and would go out as UDP fragments, which best-effort readers lose under load; this is
    the set-up README recommends. "" or "none" = Fast DDS defaults everywhere (to measure them)."""
    if profile is None:
        env = dict(os.environ)
        for var in FASTDDS_PROFILE_VARS:
            if env.get(var):
                return env[var]
        return default_shm_profile(env)
    text = str(profile)
    if text.strip().lower() in ("", "none"):
        return None
    if not Path(text).is_file():
        raise BenchError(f"Fast DDS profile {text} not found")
    return text


@dataclass
class E2EConfig:
    """What to run. ``node_params`` are extra perception_node ROS parameters (name -> value)."""

    model_dir: str | None = None
    backend: str = "linear"
    rate_hz: float = 30.0
    width: int = 640
    height: int = 480
    fastdds_profile: str | None = None
    #: DDS domain; None = a random private one so a benchmark never floods a robot's live domain.
    domain_id: int | None = None
    log_dir: Path = field(default_factory=lambda: Path("out/bench/logs"))
    node_params: dict[str, Any] = field(default_factory=dict)
    passthrough: bool = True
    passthrough_raw: bool = False
    startup_timeout_s: float = 180.0
    #: Command that starts the node (``--ros-args ...`` is appended); None = python -m the module.
    node_cmd: list[str] | None = None
    #: Put every topic under a unique namespace and give the node a unique name, so a foreign process
    #: that happens to share the DDS domain (another test session on a shared machine) can neither feed
    #: frames into the benchmark nor receive its 27 MB/s camera stream. False = the default topic names.
    isolate: bool = True

    def __post_init__(self) -> None:
        self.fastdds_profile = resolve_fastdds_profile(self.fastdds_profile)


class _Collector:
    """The measuring node: raw subscriptions to predictions and the floor, typed /diagnostics."""

    def __init__(self, node: Any, node_name: str = "perception_node") -> None:
        self.node = node
        # /diagnostics is global: keep only the statuses of our node ("<node name>: <part>").
        self._status_prefix = f"{node_name}: "
        self.predictions: list[tuple[int, int]] = []  # (stamp_ns, receipt_ns)
        self.floor: list[tuple[int, int]] = []
        self.diagnostics: list[tuple[int, str, dict[str, str]]] = []  # (receipt_ns, status name, values)
        self.bad_messages = 0
        self._subs: list[Any] = []

    def _raw_cb(self, store: list[tuple[int, int]]) -> Any:
        def _cb(data: bytes) -> None:
            now = time.time_ns()
            try:
                store.append((cdr_header_stamp_ns(data), now))
            except ValueError:
                self.bad_messages += 1

        return _cb

    def _on_diag(self, msg: Any) -> None:
        now = time.time_ns()
        for st in msg.status:
            if not st.name.startswith(self._status_prefix):
                continue
            values = {kv.key: kv.value for kv in st.values}
            values["_level"] = str(
                int.from_bytes(st.level, "little") if isinstance(st.level, bytes) else st.level
            )
            values["_message"] = st.message
            self.diagnostics.append((now, st.name, values))

    def subscribe(self, topic: str, msg_type: Any, store: list[tuple[int, int]], reliable: bool) -> None:
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=10,
            reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT,
        )
        self._subs.append(self.node.create_subscription(msg_type, topic, self._raw_cb(store), qos, raw=True))

    def subscribe_diagnostics(self) -> None:
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self._subs.append(
            self.node.create_subscription(DiagnosticArray, DIAGNOSTICS_TOPIC, self._on_diag, qos)
        )


def publisher_is_reliable(node: Any, topic: str) -> bool | None:
    """Reliability of the (first) publisher on ``topic``, None if none is discovered yet. A reliable
    subscription would not match a best-effort publisher, and a best-effort one would make a reliable
    publisher's large messages droppable, so the measuring side follows the publisher."""

    infos = node.get_publishers_info_by_topic(topic)
    if not infos:
        return None
    return all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos)


class E2ESetup:
    """Starts publisher, perception_node and pass-through as processes plus an in-process collector.

    Use as a context manager; everything started is stopped on exit (also on errors)::

        with E2ESetup(cfg) as s:
            s.wait_ready()
            t0 = time.time_ns(); time.sleep(10); t1 = time.time_ns()
            lat = s.node_latencies_ms(t0, t1)
    """

    def __init__(self, cfg: E2EConfig) -> None:
        self.cfg = cfg
        self.domain_id = cfg.domain_id if cfg.domain_id is not None else random.SystemRandom().randint(1, 101)
        self.processes = Processes(cfg.log_dir)
        self.procs = self.processes.procs
        self.stats_file = Path(cfg.log_dir) / "sensor_publisher.stats.json"
        tag = secrets.token_hex(3)
        self.namespace = f"/ewm_bench_{tag}" if cfg.isolate else ""
        self.node_name = f"perception_node_{tag}" if cfg.isolate else "perception_node"
        ns = self.namespace
        self.input_topics = {
            "camera": f"{ns}/camera/image_raw", "audio": f"{ns}/audio", "tactile": f"{ns}/tactile",
            "joint_states": f"{ns}/joint_states", "action": f"{ns}/cmd_vel_ee",
        }  # fmt: skip
        # The node's private ~/predicted_frames, after the namespace and name remapping.
        self.predictions_topic = f"{ns}/{self.node_name}/predicted_frames"
        self.floor_topic = f"{ns}/passthrough/image_raw"
        self._context: Any = None
        self._node: Any = None
        self._executor: Any = None
        self._spin_thread: threading.Thread | None = None
        self.collector: _Collector | None = None

    # -- processes -------------------------------------------------------------------------------
    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["ROS_DOMAIN_ID"] = str(self.domain_id)
        env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
        env.setdefault("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp")
        env["PYTHONUNBUFFERED"] = "1"
        if self.cfg.fastdds_profile:
            env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(Path(self.cfg.fastdds_profile).resolve())
        else:  # measured on Fast DDS's defaults: the node must not load its own profile either
            env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)
            env[SHM_PROFILE_OPT_OUT] = "0"
        return env

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        return self.processes.spawn(name, args, self.child_env())

    def node_command(self) -> list[str]:
        params: dict[str, Any] = {"autostart": True, "backend": self.cfg.backend}
        if self.cfg.model_dir:
            params["model"] = str(Path(self.cfg.model_dir).resolve())
        if self.cfg.isolate:
            params.update({f"topics.{k}": v for k, v in self.input_topics.items()})
        params.update(self.cfg.node_params)
        remaps = [f"__ns:={self.namespace}", f"__node:={self.node_name}"] if self.cfg.isolate else []
        return node_command("embodied_wm.ros.perception_node", params, remaps, self.cfg.node_cmd)

    def log_tail(self, name: str, lines: int = 30) -> str:
        return self.processes.log_tail(name, lines)

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise BenchError(
                    f"{name} exited with code {proc.returncode}; last log lines:\n{self.log_tail(name)}"
                )

    @property
    def node_pid(self) -> int:
        """PID of the node process (the venv's re-exec keeps it, so /proc/PID is the node itself)."""
        return self.procs["perception_node"].pid

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        if self.cfg.fastdds_profile:
            # Only effective if this process has not created a DDS participant yet (Fast DDS reads the
            # profile once); the children always get it.
            os.environ["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(Path(self.cfg.fastdds_profile).resolve())
        with contextlib.suppress(FileNotFoundError):
            self.stats_file.unlink()
        # The node first: it is the slowest to start (model loading), and frames published before it
        # subscribes are simply never seen (volatile durability), which costs nothing.
        self._spawn("perception_node", self.node_command())
        if self.cfg.passthrough:
            pt = [
                sys.executable,
                "-m",
                "embodied_wm.ros.passthrough_node",
                "--in",
                self.input_topics["camera"],
                "--out",
                self.floor_topic,
            ]
            self._spawn("passthrough_node", [*pt, "--raw"] if self.cfg.passthrough_raw else pt)
        self._start_collector()
        self._spawn(
            "sensor_publisher",
            [
                sys.executable,
                "-m",
                "embodied_wm.tools.sensor_publisher",
                "--rate",
                str(self.cfg.rate_hz),
                "--width",
                str(self.cfg.width),
                "--height",
                str(self.cfg.height),
                "--stats-file",
                str(self.stats_file),
                *(a for k, t in self.input_topics.items() for a in (f"--{_NODE_INPUTS[k]}-topic", t)),
            ],
        )

    def _start_collector(self) -> None:
        # An own context: the caller (a CLI, a test) may use rclpy's default context for other things.
        self._context = Context()
        rclpy.init(context=self._context, domain_id=self.domain_id)
        self._node = rclpy.create_node("e2e_bench", context=self._context)
        self.collector = _Collector(self._node, self.node_name)
        self.collector.subscribe_diagnostics()
        self._executor = SingleThreadedExecutor(context=self._context)
        self._executor.add_node(self._node)
        self._spin_thread = threading.Thread(target=self._spin, name="e2e-bench-spin", daemon=True)
        self._spin_thread.start()

    def _spin(self) -> None:
        with contextlib.suppress(ExternalShutdownException):
            while self._context is not None and self._context.ok():
                self._executor.spin_once(timeout_sec=0.1)

    def _subscribe_results(self, deadline: float) -> None:
        """Subscribe once the publishers are discovered, with matching reliability."""

        assert self.collector is not None
        wanted: list[tuple[str, Any, list[tuple[int, int]]]] = [
            (self.predictions_topic, PredictedFrames, self.collector.predictions)
        ]
        if self.cfg.passthrough:
            wanted.append((self.floor_topic, Image, self.collector.floor))
        while wanted:
            self.check_alive()
            for item in list(wanted):
                reliable = publisher_is_reliable(self._node, item[0])
                if reliable is not None:
                    self.collector.subscribe(item[0], item[1], item[2], reliable)
                    wanted.remove(item)
            if time.monotonic() > deadline:
                raise BenchError(
                    f"no publisher of {[w[0] for w in wanted]} appeared within "
                    f"{self.cfg.startup_timeout_s:.0f} s; perception_node log:\n"
                    f"{self.log_tail('perception_node')}"
                )
            time.sleep(0.1)

    def wait_ready(self) -> None:
        """Block until predictions (and floor images) arrive; raise BenchError if a process dies first."""
        deadline = time.monotonic() + self.cfg.startup_timeout_s
        self._subscribe_results(deadline)
        assert self.collector is not None
        while not self.collector.predictions or (self.cfg.passthrough and not self.collector.floor):
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(
                    f"no predictions within {self.cfg.startup_timeout_s:.0f} s "
                    f"(predictions {len(self.collector.predictions)}, floor {len(self.collector.floor)}); "
                    f"perception_node log:\n{self.log_tail('perception_node')}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        # The publisher first, so the other processes stop receiving load before they are asked to exit.
        self.processes.stop(first=("sensor_publisher", "passthrough_node", "perception_node"))
        if self._context is not None:
            ctx, self._context = self._context, None
            if self._executor is not None:
                self._executor.shutdown(timeout_sec=1.0)
            if self._spin_thread is not None:
                ctx.try_shutdown()
                self._spin_thread.join(timeout=5)
            if self._node is not None:
                self._node.destroy_node()
            ctx.try_shutdown()

    def __enter__(self) -> E2ESetup:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- readings --------------------------------------------------------------------------------
    @staticmethod
    def _window(samples: list[tuple[int, int]], t0_ns: int, t1_ns: int) -> np.ndarray:
        """Latencies (ms) of samples whose STAMP lies in [t0, t1)."""
        a = np.asarray(list(samples), dtype=np.int64).reshape(-1, 2)
        sel = (a[:, 0] >= t0_ns) & (a[:, 0] < t1_ns)
        return (a[sel, 1] - a[sel, 0]) / 1e6

    def node_latencies_ms(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        assert self.collector is not None
        return self._window(self.collector.predictions, t0_ns, t1_ns)

    def floor_latencies_ms(self, t0_ns: int, t1_ns: int) -> np.ndarray:
        assert self.collector is not None
        return self._window(self.collector.floor, t0_ns, t1_ns)

    def diagnostics_between(self, t0_ns: int, t1_ns: int) -> list[tuple[int, str, dict[str, str]]]:
        assert self.collector is not None
        return [d for d in list(self.collector.diagnostics) if t0_ns <= d[0] < t1_ns]

    def publisher_stats(self) -> dict[str, Any] | None:
        return read_stats(self.stats_file)

    def cpu_seconds(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {n: proc_cpu_s(p.pid) for n, p in self.procs.items()}
        t = os.times()
        out["bench (this process)"] = t.user + t.system
        return out

    def rss_mb(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for n, p in self.procs.items():
            kb = proc_rss_kb(p.pid)
            out[n] = None if kb is None else kb / 1024
        return out
