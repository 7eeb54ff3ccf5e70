"""Hostile-input benchmark: ``embodied-wm bench --hostile`` (JSON out).

What an attacker (or a broken driver) can send, against the real perception_node process over DDS:

* ``flood_compressed`` and ``flood_raw`` phases (``--seconds`` each, 60 by default), one fresh node each
  (camera_transport compressed / raw): good 640 x 480 frames, audio, tactile, joints and twist at 30 Hz,
  and between them, every tick, a round of hostile messages: decompression bombs (a 631-byte JPEG that
  declares 32760 x 32760, a 48 KB 1-bit PNG of 20000 x 20000), valid but huge images (4000 x 4000 PNG,
  4097 x 4097 raw), absurd headers, audio at 999983 Hz and at 383987 Hz (in range: resampled with a
  bounded filter), 11 s audio frames, NaN tactile, stamps with nanosec >= 1e9 or sec near the int32 end.
* ``rollout`` (on the compressed phase's node, ONNX Runtime with the shipped model): valid but huge
  PredictRollout requests (``rollout.max_candidates`` candidates, with and without predictions), while good
  frames keep flowing, then requests over the cap, with NaN weights.
* ``files``: the CLI on bad model/config/bag files (``FILE_CASES``): one line and exit 1, never a traceback.

Measured: messages sent per case and rejected per reason (the node's /diagnostics), the longest
subscription callback (the input thread's stall), the longest processing of one message per kind, the
longest gap between /diagnostics messages, RSS (peak and growth over the node's RSS before the phase),
predictions during and after each phase, crashes. ``verdict`` compares them with the targets below.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import json
import math
import os
import random
import secrets
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import TwistStamped
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image, JointState

from embodied_wm.eval.synthetic import SceneConfig, write_bag
from embodied_wm.model.config import ModelConfig
from embodied_wm.msg import AudioFrame, PredictedFrames, TactileArray
from embodied_wm.ros.qos import default_shm_profile
from embodied_wm.runtime.learned import read_config
from embodied_wm.runtime.machine import machine_info
from embodied_wm.runtime.select import default_model_dir
from embodied_wm.srv import PredictRollout
from embodied_wm.tools.bench_e2e import write_json
from embodied_wm.tools.e2e_setup import cdr_header_stamp_ns
from embodied_wm.tools.sensor_publisher import SyntheticSensors

NS = 1_000_000_000
#: Targets (issue 16).
TARGET_STALL_MS = 50.0
TARGET_RSS_GROWTH_MB = 300.0


# ------------------------------------------------------------------------------------ hostile bytes
def jpeg_bomb(width: int = 32760, height: int = 32760) -> bytes:
    """A tiny valid JPEG whose frame header (SOF0) is patched to declare ``width`` x ``height``."""
    _ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.find(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _png_chunk(tag: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` zeros (20000 x 20000 is ~48 KB)."""
    row = b"\x00" + bytes((width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def big_png(side: int = 4000) -> bytes:
    """A valid RGB PNG of side x side (decodes to side*side*3 bytes; within the default pixel limit)."""
    _ok, buf = cv2.imencode(".png", np.zeros((side, side, 3), np.uint8), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    return buf.tobytes()


def good_jpeg(width: int = 640, height: int = 480, seed: int = 0) -> bytes:
    noise = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    _ok, buf = cv2.imencode(".jpg", cv2.GaussianBlur(noise, (9, 9), 3), [cv2.IMWRITE_JPEG_QUALITY, 85])
    return buf.tobytes()


# ----------------------------------------------------------------------------------------- messages
def _stamp(msg: Any, stamp_ns: int) -> Any:
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), NS)
    return msg


def raw_image(height: int, width: int, step: int, encoding: str, data: bytes, stamp_ns: int) -> Any:
    msg = _stamp(Image(), stamp_ns)
    msg.header.frame_id = "camera_optical_frame"
    msg.height, msg.width, msg.step, msg.encoding = height, width, step, encoding
    msg.data = array.array("B", data)
    return msg


def compressed(data: bytes, stamp_ns: int, fmt: str = "jpeg") -> Any:
    msg = _stamp(CompressedImage(), stamp_ns)
    msg.header.frame_id = "camera_optical_frame"
    msg.format = fmt
    msg.data = array.array("B", data)
    return msg


def audio(rate: int, data: bytes, stamp_ns: int, encoding: str = "S16LE", channels: int = 1) -> Any:
    msg = _stamp(AudioFrame(), stamp_ns)
    msg.sample_rate, msg.channels, msg.encoding = rate, channels, encoding
    msg.data = array.array("B", data)
    return msg


def tactile(values: list[float], stamp_ns: int, rows: int = 5, cols: int = 5) -> Any:
    msg = _stamp(TactileArray(), stamp_ns)
    msg.rows, msg.cols, msg.unit, msg.sensor_model = rows, cols, "N", "hostile"
    msg.values = array.array("f", values)
    return msg


def joints_raw_stamp(sec: int, nanosec: int) -> Any:
    msg = JointState()
    msg.header.stamp.sec, msg.header.stamp.nanosec = sec, nanosec
    msg.name = ["joint1", "joint2", "joint3"]
    msg.position = [0.0, 0.0, 0.0]
    msg.velocity = [0.0, 0.0, 0.0]
    return msg


@dataclass
class HostileCase:
    """One kind of hostile message: ``make(stamp_ns)`` builds it, sent every ``every``-th tick on
    ``stream``; ``expect`` is the "kind:reason" the node must count, None when it is valid (but huge)."""

    name: str
    stream: str
    make: Callable[[int], Any]
    expect: str | None
    every: int = 1


def hostile_cases(transport: str) -> list[HostileCase]:
    """The hostile messages of a flood phase (``transport`` = the node's camera_transport)."""
    jb, pb = jpeg_bomb(), png_bomb()
    cases: list[HostileCase] = []
    if transport == "compressed":
        bigp = big_png(4000)
        cases += [
            HostileCase(
                "jpeg_bomb_32760", "camera", lambda t: compressed(jb, t), "compressed_image:too_large"
            ),
            HostileCase(
                "png_bomb_20000", "camera", lambda t: compressed(pb, t, "png"), "compressed_image:too_large"
            ),
            HostileCase(
                "tiff_header",
                "camera",
                lambda t: compressed(b"II*\x00" + bytes(64), t, "tiff"),
                "compressed_image:bad_compressed",
            ),
            HostileCase(
                "jpeg_garbage",
                "camera",
                lambda t: compressed(b"\xff\xd8\xff\x00" + bytes(200), t),
                "compressed_image:bad_compressed",
            ),
            # Valid: decoded (48 MB each) at 1 Hz.
            HostileCase("png_4000_valid", "camera", lambda t: compressed(bigp, t, "png"), None, every=30),
        ]
    else:
        cases += [
            HostileCase(
                "raw_header_20000",
                "camera",
                lambda t: raw_image(20000, 20000, 60000, "rgb8", bytes(64), t),
                "image:data_length",
            ),
            HostileCase(
                "raw_bad_step",
                "camera",
                lambda t: raw_image(48, 64, 100, "rgb8", bytes(4800), t),
                "image:bad_step",
            ),
            HostileCase(
                "raw_unknown_encoding",
                "camera",
                lambda t: raw_image(48, 64, 192, "xyz42", bytes(9216), t),
                "image:unknown_encoding",
            ),
            # Consistent header, 16.8 MB of data, one pixel row over the 4096 x 4096 limit: 2 Hz.
            HostileCase(
                "raw_4097x4096_too_large",
                "camera",
                lambda t: raw_image(4097, 4096, 4096, "mono8", bytes(4097 * 4096), t),
                "image:too_large",
                every=15,
            ),
        ]
    tone = (0.3 * np.sin(np.arange(383987) * 0.01) * 32767).astype("<i2").tobytes()
    cases += [
        HostileCase(
            "audio_999983hz_4bytes", "audio", lambda t: audio(999983, bytes(4), t), "audio:bad_audio"
        ),
        HostileCase("audio_rate_0", "audio", lambda t: audio(0, bytes(64), t), "audio:bad_audio"),
        HostileCase("audio_odd_bytes", "audio", lambda t: audio(16000, bytes(1067), t), "audio:bad_audio"),
        HostileCase(
            "audio_11s",
            "audio",
            lambda t: audio(16000, bytes(2 * 16000 * 11), t),
            "audio:too_large",
            every=10,
        ),
        # In range, prime-ish rate, 1 s: resampled with a bounded filter (valid).
        HostileCase(
            "audio_383987hz_1s_valid", "audio", lambda t: audio(383987, tone, t - NS), None, every=30
        ),
        HostileCase(
            "tactile_nan",
            "tactile",
            lambda t: tactile([0.5] * 12 + [math.nan] + [0.5] * 12, t),
            "tactile:non_finite",
        ),
        HostileCase(
            "tactile_wrong_shape", "tactile", lambda t: tactile([0.5] * 64, t, 8, 8), "tactile:bad_shape"
        ),
        HostileCase(
            "stamp_nanosec_1e9",
            "tactile",
            lambda t: _nanosec(tactile([0.5] * 25, t), 1_500_000_000),
            "tactile:bad_stamp",
        ),
        HostileCase(
            "stamp_sec_int32_max",
            "joint_states",
            lambda t: joints_raw_stamp(2**31 - 1, 0),
            "joint_state:bad_stamp",
        ),
    ]
    return cases


def _nanosec(msg: Any, nanosec: int) -> Any:
    msg.header.stamp.nanosec = nanosec
    return msg


# ------------------------------------------------------------------------------------------- process
def proc_rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class NodeUnderTest:
    """A perception_node process on a private domain and namespace, plus this process's DDS side:
    publishers for every input, the node's predictions and /diagnostics collected, a rollout client."""

    INPUTS = ("camera", "audio", "tactile", "joint_states", "action")

    def __init__(self, params: dict[str, Any], log_path: Path, domain_id: int | None = None) -> None:
        self.domain_id = domain_id if domain_id is not None else random.SystemRandom().randint(1, 101)
        tag = secrets.token_hex(3)
        self.ns = f"/ewm_hostile_{tag}"
        self.name = f"perception_node_{tag}"
        self.params = params
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None
        self.predictions: list[tuple[float, int]] = []  # (arrival monotonic, stamp ns)
        self.diag_times: list[float] = []
        self.diag: dict[str, dict[str, str]] = {}
        self.rss: list[tuple[float, float]] = []
        self._stop_rss = threading.Event()
        self._lock = threading.Lock()

    # -- start / stop ------------------------------------------------------------------------------
    def start(self, timeout_s: float = 180.0) -> None:
        env = dict(
            os.environ,
            ROS_DOMAIN_ID=str(self.domain_id),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            PYTHONUNBUFFERED="1",
        )
        profile = default_shm_profile(env)
        if profile:
            env["FASTRTPS_DEFAULT_PROFILES_FILE"] = str(profile)
            os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(profile))
        topics = {
            "camera": "camera",
            "audio": "audio",
            "tactile": "tactile",
            "joint_states": "joint_states",
            "action": "cmd_vel_ee",
        }
        params = {"autostart": True, "diagnostics.period_s": 0.2, "preview.enabled": False, **self.params}
        params.update({f"topics.{k}": f"{self.ns}/{v}" for k, v in topics.items()})
        params.update({f"qos.{i}.reliability": "reliable" for i in self.INPUTS})
        params.update({f"qos.{i}.depth": 10 for i in self.INPUTS})
        cmd = [
            sys.executable,
            "-m",
            "embodied_wm.ros.perception_node",
            "--ros-args",
            "-r",
            f"__ns:={self.ns}",
            "-r",
            f"__node:={self.name}",
        ]
        for k, v in params.items():
            cmd += ["-p", f"{k}:={json.dumps(v) if isinstance(v, bool) else v}"]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self._start_dds(topics)
        threading.Thread(target=self._watch_rss, daemon=True).start()
        deadline = time.monotonic() + timeout_s
        while not all(p.get_subscription_count() >= 1 for p in self.pubs.values()):
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"perception_node did not subscribe within {timeout_s:.0f} s")
            time.sleep(0.1)

    def _start_dds(self, topics: dict[str, str]) -> None:
        self.ctx = Context()
        rclpy.init(context=self.ctx, domain_id=self.domain_id)
        self.node = rclpy.create_node(f"hostile_bus_{secrets.token_hex(3)}", context=self.ctx)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        cam = CompressedImage if self.params.get("camera_transport") == "compressed" else Image
        types = {
            "camera": cam,
            "audio": AudioFrame,
            "tactile": TactileArray,
            "joint_states": JointState,
            "action": TwistStamped,
        }
        self.pubs = {
            k: self.node.create_publisher(t, f"{self.ns}/{topics[k]}", qos) for k, t in types.items()
        }
        self.node.create_subscription(
            PredictedFrames, f"{self.ns}/{self.name}/predicted_frames", self._on_prediction, qos, raw=True
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, qos)
        self.rollout_client = self.node.create_client(
            PredictRollout, f"{self.ns}/{self.name}/predict_rollout"
        )
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self._spin = threading.Thread(target=self._spin_loop, daemon=True)
        self._spin.start()

    def _spin_loop(self) -> None:
        while self.ctx.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # context shut down under us
                return

    def _on_prediction(self, data: Any) -> None:
        with self._lock:
            self.predictions.append((time.monotonic(), cdr_header_stamp_ns(data)))

    def _on_diag(self, msg: Any) -> None:
        mine = [st for st in msg.status if st.name.startswith(self.name + ":")]
        if not mine:
            return
        with self._lock:
            self.diag_times.append(time.monotonic())
            for st in mine:
                self.diag[st.name.split(": ", 1)[-1]] = {kv.key: kv.value for kv in st.values}

    def _watch_rss(self) -> None:
        while not self._stop_rss.is_set() and self.proc is not None and self.proc.poll() is None:
            mb = proc_rss_mb(self.proc.pid)
            if mb is not None:
                with self._lock:
                    self.rss.append((time.monotonic(), mb))
            time.sleep(0.05)

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"perception_node exited with code {self.proc.returncode} (log {self.log_path})"
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        self._stop_rss.set()
        with contextlib.suppress(Exception):  # a context that never came up
            self.ctx.try_shutdown()
            self._spin.join(timeout=5)
        rc = None
        if self.proc is not None:
            crashed_rc = self.proc.poll()
            if crashed_rc is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = crashed_rc
            self._log.close()
        return rc  # None: it was alive until we stopped it

    # -- readings ----------------------------------------------------------------------------------
    def rss_between(self, t0: float, t1: float) -> list[float]:
        with self._lock:
            return [mb for t, mb in self.rss if t0 <= t <= t1]

    def rss_now(self) -> float:
        return (proc_rss_mb(self.proc.pid) if self.proc is not None else None) or 0.0

    def predictions_between(self, t0: float, t1: float) -> int:
        with self._lock:
            return sum(1 for t, _ in self.predictions if t0 <= t <= t1)

    def diag_max_gap_ms(self, t0: float, t1: float) -> float | None:
        with self._lock:
            ts = [t for t in self.diag_times if t0 <= t <= t1]
        return float(np.max(np.diff(ts)) * 1e3) if len(ts) >= 2 else None

    def counters(self) -> dict[str, float]:
        """Flat numeric values of the node's latest /diagnostics ("status/key" -> number)."""
        out: dict[str, float] = {}
        with self._lock:
            for status, values in self.diag.items():
                for k, v in values.items():
                    try:
                        out[f"{status}/{k}"] = float(v)
                    except ValueError:
                        continue
        return out

    def fresh_counters(self, timeout: float = 10.0) -> dict[str, float]:
        with self._lock:
            n0 = len(self.diag_times)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.diag_times) >= n0 + 2:
                    break
            time.sleep(0.05)
        return self.counters()

    def call_rollout(self, request: Any, timeout: float = 300.0) -> Any:
        if not self.rollout_client.wait_for_service(timeout_sec=30):
            raise RuntimeError("predict_rollout service not available")
        fut = self.rollout_client.call_async(request)
        deadline = time.monotonic() + timeout
        while not fut.done():
            self.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"predict_rollout did not answer within {timeout:.0f} s")
            time.sleep(0.01)
        return fut.result()


class GoodTraffic:
    """Good sensor messages at ``rate_hz`` from a background thread (so they flow during service calls)."""

    def __init__(
        self, node: NodeUnderTest, transport: str, width: int = 640, height: int = 480, rate_hz: float = 30.0
    ) -> None:
        self.node, self.transport, self.rate_hz = node, transport, rate_hz
        self.sensors = SyntheticSensors(width=width, height=height, rate_hz=rate_hz)
        self.jpeg = good_jpeg(width, height)
        self.sent = 0
        #: Messages published per input (good ones; the flood adds its hostile ones here too).
        self.published: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Called after each good tick with its stamp (the flood adds its hostile round there).
        self.after_tick: Callable[[int, int], None] | None = None

    def tick(self, k: int) -> int:
        stamp = time.time_ns()
        pubs = self.node.pubs
        for name, key in (
            ("audio", "audio"),
            ("tactile", "tactile"),
            ("joints", "joint_states"),
            ("twist", "action"),
        ):
            msg = getattr(self.sensors, name)(stamp)
            if msg is not None:
                pubs[key].publish(msg)
                self.published[key] = self.published.get(key, 0) + 1
        if self.transport == "compressed":
            pubs["camera"].publish(compressed(self.jpeg, stamp))
        else:
            pubs["camera"].publish(self.sensors.image(stamp))
        self.published["camera"] = self.published.get("camera", 0) + 1
        self.sent += 1
        if self.after_tick is not None:
            self.after_tick(k, stamp)
        return stamp

    def run_for(self, seconds: float) -> None:
        next_t = time.monotonic()
        end = next_t + seconds
        k = 0
        while time.monotonic() < end and not self._stop.is_set():
            self.tick(k)
            k += 1
            next_t += 1.0 / self.rate_hz
            time.sleep(max(0.0, next_t - time.monotonic()))

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self.run_for, args=(1e9,), daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


# --------------------------------------------------------------------------------------------- phases
def _invalid_delta(after: dict[str, float], before: dict[str, float]) -> dict[str, int]:
    out: dict[str, int] = {}
    for key, v in after.items():
        if key.startswith("messages/invalid/"):
            d = int(v - before.get(key, 0.0))
            if d:
                out[key.removeprefix("messages/invalid/")] = d
    return out


def _ingest_stats(c: dict[str, float]) -> dict[str, Any]:
    out: dict[str, Any] = {"process_max_ms": {}, "dropped": {}}
    for key, v in c.items():
        if key.startswith("inputs/ingest/process_max_ms/"):
            out["process_max_ms"][key.rsplit("/", 1)[-1]] = v
        elif key.startswith("inputs/ingest/dropped/"):
            out["dropped"][key.rsplit("/", 1)[-1]] = int(v)
        elif key.startswith("inputs/ingest/"):
            out[key.removeprefix("inputs/ingest/")] = v
    return out


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def flood_phase(node: NodeUnderTest, transport: str, seconds: float, warmup_s: float = 3.0) -> dict[str, Any]:
    cases = hostile_cases(transport)
    sent: dict[str, int] = {c.name: 0 for c in cases}
    errors: list[str] = []
    good = GoodTraffic(node, transport)
    good.run_for(warmup_s)  # predictions flowing, caches warm
    t_pre = time.monotonic()
    while not node.predictions_between(t_pre - warmup_s, time.monotonic()) and time.monotonic() < t_pre + 60:
        good.tick(0)
        time.sleep(1 / 30)
    before = node.fresh_counters()
    published0 = dict(good.published)
    rss0 = node.rss_now()

    def hostile_round(k: int, stamp: int) -> None:
        for c in cases:
            if k % c.every:
                continue
            try:
                node.pubs[c.stream].publish(c.make(stamp + 1))
                sent[c.name] += 1
                good.published[c.stream] = good.published.get(c.stream, 0) + 1
            except Exception as exc:  # a case our side cannot even build: report, keep flooding
                errors.append(f"{c.name}: {type(exc).__name__}: {exc}")

    good.after_tick = hostile_round
    t0 = time.monotonic()
    good.run_for(seconds)
    t1 = time.monotonic()
    good.after_tick = None
    time.sleep(1.0)  # drain
    # Recovery: good frames only; predictions must come back within 10 s.
    t_rec = time.monotonic()
    while time.monotonic() < t_rec + 10 and not node.predictions_between(t_rec + 0.5, time.monotonic()):
        good.tick(0)
        time.sleep(1 / 30)
    resumed = node.predictions_between(t_rec + 0.5, time.monotonic()) > 0
    after = node.fresh_counters()
    rss = node.rss_between(t0, time.monotonic())
    invalid = _invalid_delta(after, before)
    expected: dict[str, int] = {}
    for c in cases:
        if c.expect:
            expected[c.expect] = expected.get(c.expect, 0) + sent[c.name]
    ingest = _ingest_stats(after)
    dropped0 = _ingest_stats(before).get("dropped", {})
    kinds = {
        "camera": "compressed_image" if transport == "compressed" else "image",
        "audio": "audio",
        "tactile": "tactile",
        "joint_states": "joint_state",
        "action": "twist",
    }
    accounting: dict[str, dict[str, int]] = {}
    for stream, kind in kinds.items():
        n_sent = good.published.get(stream, 0) - published0.get(stream, 0)
        received = int(after.get(f"messages/received/{kind}", 0) - before.get(f"messages/received/{kind}", 0))
        dropped = int(ingest.get("dropped", {}).get(kind, 0) - dropped0.get(kind, 0))
        accounting[kind] = {
            "sent": n_sent,
            "decoded_or_rejected": received,
            "dropped_by_ingest_queue": dropped,
            "not_seen": n_sent - received - dropped,
        }
    return {
        "transport": transport,
        "seconds": round(t1 - t0, 2),
        "messages_sent": {"good_ticks": good.sent, "hostile": sent, "hostile_total": sum(sent.values())},
        "rejected_by_reason": invalid,
        "expected_rejections": expected,
        # Rejections below the expected count are messages the bounded ingest queue dropped under the
        # flood (oldest first, counted per kind in accounting) or that DDS did not deliver in time.
        "accounting": accounting,
        "input_callback_max_ms": ingest.get("callback_max_ms"),
        "input_callback_cpu_max_ms": ingest.get("callback_cpu_max_ms"),
        "load_average": _load_average(),
        "process_max_ms": ingest.get("process_max_ms"),
        "ingest_dropped": ingest.get("dropped"),
        "diagnostics_max_gap_ms": node.diag_max_gap_ms(t0, t1),
        "rss_mb_before": round(rss0, 1),
        "rss_mb_peak": round(max(rss), 1) if rss else None,
        "rss_growth_mb": round(max(rss) - rss0, 1) if rss else None,
        "predictions_during": node.predictions_between(t0, t1),
        "predictions_resumed": resumed,
        "publish_errors": errors[:10],
    }


def rollout_request(
    n: int, horizon: int, action_dim: int, weights: dict[str, float] | None = None, preds: bool = False
) -> Any:
    req = PredictRollout.Request(
        num_candidates=n, horizon=horizon, action_dim=action_dim, return_predictions=preds
    )
    req.actions = array.array(
        "f",
        np.random.default_rng(n).uniform(-0.05, 0.05, n * horizon * action_dim).astype(np.float32).tobytes(),
    )
    if weights:
        req.score_channels = list(weights)
        req.score_weights = [float(w) for w in weights.values()]
    return req


def rollout_phase(
    node: NodeUnderTest, transport: str, max_candidates: int, reps: int, horizon: int, action_dim: int
) -> dict[str, Any]:
    good = GoodTraffic(node, transport)
    good.start()
    try:
        time.sleep(2.0)
        rss0 = node.rss_now()
        t_start = time.monotonic()
        calls: list[dict[str, Any]] = []
        plan: list[tuple[int, bool, dict[str, float] | None]] = []
        plan += [(max_candidates, False, None)] * reps + [(max_candidates, True, None)]
        plan += [
            (max_candidates + 1, False, None),
            (10000, False, None),
            (4, False, {"contact": math.nan}),
            (4, False, {"goal": math.inf}),
        ]
        for n, preds, weights in plan:
            t0 = time.monotonic()
            resp = node.call_rollout(rollout_request(n, horizon, action_dim, weights, preds))
            t1 = time.monotonic()
            calls.append(
                {
                    "candidates": n,
                    "return_predictions": preds,
                    "weights": {k: str(v) for k, v in (weights or {}).items()},
                    "success": bool(resp.success),
                    "message": resp.message[:160],
                    "seconds": round(t1 - t0, 2),
                    "scores": len(resp.scores),
                    "finite_scores": bool(np.isfinite(resp.scores).all()) if resp.scores else None,
                    "predictions_during": node.predictions_between(t0, t1),
                    "rss_mb_peak_during": round(max(node.rss_between(t0, t1) or [node.rss_now()]), 1),
                }
            )
            del resp
        time.sleep(2.0)
        rss_after = node.rss_now()
        rss = node.rss_between(t_start, time.monotonic())
        counters = node.fresh_counters()
    finally:
        good.stop()
    return {
        "max_candidates": max_candidates,
        "calls": calls,
        "rss_mb_before": round(rss0, 1),
        "rss_mb_peak": round(max(rss), 1) if rss else None,
        "rss_growth_mb": round(max(rss) - rss0, 1) if rss else None,
        "rss_mb_after": round(rss_after, 1),
        "rejected_by_reason": {
            k.rsplit("/", 1)[-1]: int(v)
            for k, v in counters.items()
            if k.startswith("inference/service_rejected/")
        },
    }


# ------------------------------------------------------------------------------------------ file cases
@dataclass
class FileCase:
    name: str
    argv: list[str]
    needle: str = ""


def _write_checkpoint(d: Path) -> Path:
    """A tiny valid checkpoint to corrupt."""
    # Lazy: torch is needed for the file cases only, not for the floods (import cost on a 2-core robot).
    from embodied_wm.model.checkpoint import save_checkpoint
    from embodied_wm.model.world_model import WorldModel

    cfg = ModelConfig(
        image_size=16, horizon=2, enc_channels=(4, 4, 4), dec_channels=(4, 4, 4), embed_dim=8, latent_dim=8
    )
    save_checkpoint(WorldModel(cfg).eval(), cfg, d)
    return d


def _with_safetensors_header(src: Path, dst: Path, header: Any) -> Path:
    shutil.copytree(src, dst)
    body = json.dumps(header).encode()
    weights = dst / "model.safetensors"
    data = weights.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    weights.write_bytes(struct.pack("<Q", len(body)) + body + data[8 + n :])
    return dst


def _with_config(src: Path, dst: Path, change: Callable[[dict[str, Any]], Any]) -> Path:
    shutil.copytree(src, dst)
    doc = json.loads((dst / "config.json").read_text())
    doc = change(doc) or doc
    (dst / "config.json").write_text(json.dumps(doc) if not isinstance(doc, str) else doc)
    return dst


def _set(path: list[str], value: Any) -> Callable[[dict[str, Any]], None]:
    def f(doc: dict[str, Any]) -> None:
        node = doc
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value

    return f


def _with_metadata(src: Path, dst: Path, edit: Callable[[dict[str, Any]], Any] | bytes) -> Path:
    """A copy of the bag at ``src`` whose metadata.yaml is edited (a function of the parsed
    rosbag2_bagfile_information dict, returning a replacement or None) or replaced by raw bytes."""
    shutil.copytree(src, dst)
    meta = dst / "metadata.yaml"
    if isinstance(edit, bytes):
        meta.write_bytes(edit)
        return dst
    doc = yaml.safe_load(meta.read_text())
    info = doc["rosbag2_bagfile_information"]
    replaced = edit(info)
    if replaced is not None:
        doc = replaced
    meta.write_text(yaml.safe_dump(doc))
    return dst


def file_cases(work: Path) -> list[FileCase]:
    """Bad model, config and bag files in ``work`` (created) and the CLI commands that load them."""
    work.mkdir(parents=True, exist_ok=True)
    good = _write_checkpoint(work / "good_model")
    models = {
        "safetensors_header_list": _with_safetensors_header(good, work / "st_list", [1, 2, 3]),
        "safetensors_entry_not_dict": _with_safetensors_header(good, work / "st_entry", {"w": [1, 2]}),
        "safetensors_bad_offsets": _with_safetensors_header(
            good, work / "st_offsets", {"w": {"dtype": "F32", "shape": [2], "data_offsets": ["a", None]}}
        ),
        "safetensors_negative_shape": _with_safetensors_header(
            good, work / "st_shape", {"w": {"dtype": "F32", "shape": [-4], "data_offsets": [0, 16]}}
        ),
        "config_enc_channels_negative": _with_config(
            good, work / "cfg_neg", _set(["config", "enc_channels"], [-16, 4, 4])
        ),
        "config_latent_dim_60000": _with_config(
            good, work / "cfg_huge", _set(["config", "latent_dim"], 60000)
        ),
        "config_horizon_string": _with_config(good, work / "cfg_str", _set(["config", "horizon"], "abc")),
        "config_is_list": _with_config(good, work / "cfg_list", lambda d: [d]),
        "config_not_json": _with_config(good, work / "cfg_text", lambda d: "{not json"),
        "config_section_not_dict": _with_config(good, work / "cfg_section", _set(["config"], 5)),
    }
    (work / "not_a_model").mkdir(exist_ok=True)
    (work / "not_a_model" / "README").write_text("nothing here\n")
    models["directory_without_model"] = work / "not_a_model"
    bag = write_bag(work / "good_bag", SceneConfig(frames=6, res=32), storage="mcap")
    bags = {
        "bag_version_abc": _with_metadata(bag, work / "bag_version", _set(["version"], "abc")),
        "bag_version_list": _with_metadata(bag, work / "bag_version_list", _set(["version"], [9])),
        "bag_paths_not_list": _with_metadata(bag, work / "bag_paths", _set(["relative_file_paths"], 5)),
        "bag_storage_not_string": _with_metadata(
            bag, work / "bag_storage", _set(["storage_identifier"], {"a": 1})
        ),
        "bag_metadata_is_list": _with_metadata(bag, work / "bag_list", lambda info: [1, 2]),
        "bag_metadata_not_yaml": _with_metadata(bag, work / "bag_yaml", b"\x00\x01: [\n"),
        "bag_metadata_not_utf8": _with_metadata(bag, work / "bag_utf8", b"\xff\xfe\xfa" * 10),
    }
    exports = {}
    for name, manifest in (
        ("export_manifest_list", [1]),
        ("export_graph_file_not_string", {"graphs": {"encoder": {"file": 5}, "rollout": {"file": 5}}}),
    ):
        d = work / name
        d.mkdir()
        shutil.copy(good / "config.json", d / "config.json")
        (d / "export.json").write_text(json.dumps(manifest))
        exports[name] = d
    out = work / "out"
    cases = []
    for name, d in exports.items():
        cases.append(
            FileCase(
                f"bench_onnxruntime/{name}",
                [
                    "bench",
                    "--backend",
                    "onnxruntime",
                    "--model",
                    str(d),
                    "--iters",
                    "1",
                    "--warmup",
                    "0",
                    "--candidates",
                    "1",
                ],
            )
        )
    for name, d in models.items():
        cases.append(
            FileCase(
                f"bench_pytorch/{name}",
                [
                    "bench",
                    "--backend",
                    "pytorch",
                    "--model",
                    str(d),
                    "--iters",
                    "1",
                    "--warmup",
                    "0",
                    "--candidates",
                    "1",
                ],
            )
        )
        cases.append(
            FileCase(
                f"eval/{name}",
                [
                    "eval",
                    str(bag),
                    "--model",
                    str(d),
                    "--backend",
                    "pytorch",
                    "--out",
                    str(out / name),
                    "--no-report",
                    "--max-frames",
                    "3",
                ],
            )
        )
    for name, d in bags.items():
        cases.append(
            FileCase(
                f"eval/{name}", ["eval", str(d), "--out", str(out / name), "--no-report", "--max-frames", "3"]
            )
        )
    return cases


def run_cli_subprocess(argv: list[str], timeout_s: float = 300.0) -> tuple[int, str]:
    """``embodied-wm ARGV`` in a fresh interpreter: (exit code, stderr)."""
    proc = subprocess.run(
        [sys.executable, "-m", "embodied_wm.cli", *argv], capture_output=True, text=True, timeout=timeout_s
    )
    return proc.returncode, proc.stderr


def run_file_case(
    case: FileCase, runner: Callable[[list[str]], tuple[int, str]] = run_cli_subprocess
) -> dict[str, Any]:
    """Run one CLI case; the result says its exit code, whether a traceback was printed and the error line.
    ``runner`` runs the CLI (default: a subprocess; tests run it in-process)."""
    rc, stderr = runner(case.argv)
    error_lines = [ln for ln in stderr.splitlines() if ": error:" in ln]
    return {
        "case": case.name,
        "rc": rc,
        "traceback": "Traceback (most recent call last)" in stderr,
        "error_lines": len(error_lines),
        "error": error_lines[-1][:240] if error_lines else "",
    }


# -------------------------------------------------------------------------------------------- driver
@dataclass
class HostileConfig:
    seconds: float = 60.0
    model: str | None = None
    backend: str = "onnxruntime"
    max_candidates: int = 256
    rollout_reps: int = 3
    phases: tuple[str, ...] = ("flood_compressed", "flood_raw", "rollout", "files")
    log_dir: Path = field(default_factory=lambda: Path("out/bench/logs"))
    extra_params: dict[str, Any] = field(default_factory=dict)


def run_hostile_bench(cfg: HostileConfig, out_path: str | Path | None = None) -> dict[str, Any]:
    model = cfg.model or (str(default_model_dir()) if default_model_dir() else None)
    horizon, action_dim = 8, 6
    if model:
        mcfg, _ = read_config(Path(model))
        horizon, action_dim = mcfg.horizon, mcfg.action_dim
    result: dict[str, Any] = {
        "what": "embodied-wm bench --hostile",
        "settings": {
            "seconds": cfg.seconds,
            "model": model,
            "backend": cfg.backend,
            "max_candidates": cfg.max_candidates,
            "phases": list(cfg.phases),
        },
        "machine": machine_info(),
        "targets": {
            "input_stall_ms": TARGET_STALL_MS,
            "rss_growth_mb": TARGET_RSS_GROWTH_MB,
            "cli_tracebacks": 0,
            "crashes": 0,
        },
        "phases": {},
        "crashes": [],
    }
    t_all = time.monotonic()

    def save() -> None:
        result["wall_s"] = round(time.monotonic() - t_all, 1)
        result["verdict"] = verdict(result)
        if out_path:
            write_json(Path(out_path), result)

    params = {"backend": cfg.backend, "rollout.max_candidates": cfg.max_candidates, **cfg.extra_params}
    if model:
        params["model"] = str(Path(model).resolve())
    for transport in ("compressed", "raw"):
        phase = f"flood_{transport}"
        want_rollout = transport == "compressed" and "rollout" in cfg.phases
        if phase not in cfg.phases and not want_rollout:
            continue
        node = NodeUnderTest(
            {**params, "camera_transport": transport}, Path(cfg.log_dir) / f"hostile_{phase}.log"
        )
        try:
            node.start()
            if phase in cfg.phases:
                result["phases"][phase] = flood_phase(node, transport, cfg.seconds)
                save()
            if want_rollout:
                result["phases"]["rollout"] = rollout_phase(
                    node, transport, cfg.max_candidates, cfg.rollout_reps, horizon, action_dim
                )
        except Exception as exc:  # the node died or never came up: that is a finding, not a bench crash
            result["phases"].setdefault(phase, {})["error"] = f"{type(exc).__name__}: {exc}"
        finally:
            rc = node.stop()
            if rc is not None:
                result["crashes"].append({"phase": phase, "exit_code": rc, "log": str(node.log_path)})
        save()
    if "files" in cfg.phases:
        with tempfile.TemporaryDirectory(prefix="ewm_hostile_files_") as tmp:
            results = [run_file_case(c) for c in file_cases(Path(tmp))]
        result["phases"]["files"] = {
            "cases": results,
            "tracebacks": sum(r["traceback"] for r in results),
            "not_one_line": [r["case"] for r in results if r["rc"] == 1 and r["error_lines"] != 1],
            "crashes": [r["case"] for r in results if r["rc"] not in (0, 1, 2) or r["traceback"]],
        }
    save()
    return result


def verdict(r: dict[str, Any]) -> dict[str, Any]:
    """Each target: measured value and whether it holds."""
    phases = r.get("phases", {})
    out: dict[str, Any] = {}
    stalls: list[float] = [
        float(p["input_callback_max_ms"])
        for p in phases.values()
        if isinstance(p, dict) and p.get("input_callback_max_ms") is not None
    ]
    if stalls:
        out["input_stall_ms"] = {"max": max(stalls), "ok": max(stalls) <= TARGET_STALL_MS}
    growth = {
        k: p.get("rss_growth_mb") for k, p in phases.items() if isinstance(p, dict) and "rss_growth_mb" in p
    }
    if growth:
        worst = (
            max(v for v in growth.values() if v is not None)
            if any(v is not None for v in growth.values())
            else None
        )
        out["rss_growth_mb"] = {"by_phase": growth, "ok": worst is not None and worst < TARGET_RSS_GROWTH_MB}
    files = phases.get("files")
    if files:
        out["cli_tracebacks"] = {"count": files["tracebacks"], "ok": files["tracebacks"] == 0}
    crashes = len(r.get("crashes", [])) + len((files or {}).get("crashes", []))
    out["crashes"] = {"count": crashes, "ok": crashes == 0}
    errors = {k: p["error"] for k, p in phases.items() if isinstance(p, dict) and "error" in p}
    if errors:
        out["errors"] = errors
    out["ok"] = (
        all(v.get("ok", True) for v in out.values() if isinstance(v, dict) and "ok" in v) and not errors
    )
    return out


def summary_line(r: dict[str, Any]) -> str:
    v = r.get("verdict", {})
    parts = [f"hostile: {'PASS' if v.get('ok') else 'FAIL'}"]
    if "input_stall_ms" in v:
        parts.append(f"input stall max {v['input_stall_ms']['max']:.2f} ms")
    if "rss_growth_mb" in v:
        parts.append(
            "RSS growth " + ", ".join(f"{k} {g} MB" for k, g in v["rss_growth_mb"]["by_phase"].items())
        )
    if "cli_tracebacks" in v:
        parts.append(f"CLI tracebacks {v['cli_tracebacks']['count']}")
    parts.append(f"crashes {v.get('crashes', {}).get('count', 0)}")
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------- CLI
def _phases(text: str) -> tuple[str, ...]:
    phases = tuple(x.strip() for x in text.split(",") if x.strip())
    unknown = sorted(set(phases) - set(HostileConfig().phases))
    if not phases or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated subset of {', '.join(HostileConfig().phases)}, got {text!r}"
        )
    return phases


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hostile`` under ``embodied-wm bench`` (``bench --hostile`` is the same)."""
    p = subparsers.add_parser(
        "hostile",
        help="hostile input against perception_node: bombs, absurd audio/stamps, huge rollouts, bad files",
        description=__doc__.splitlines()[0],
    )
    p.add_argument("--model", help="model directory (default: the package's models/tiny)")
    p.add_argument("--backend", default="onnxruntime", help="perception_node backend (default onnxruntime)")
    p.add_argument("--seconds", type=float, default=60.0, help="length of each flood phase (default 60)")
    p.add_argument("--max-candidates", type=int, default=256, help="rollout.max_candidates of the node")
    p.add_argument("--rollout-reps", type=int, default=3, help="requests at the candidate cap (default 3)")
    p.add_argument(
        "--phases",
        type=_phases,
        default=HostileConfig().phases,
        help="comma-separated subset of flood_compressed, flood_raw, rollout, files (default: all)",
    )
    p.add_argument(
        "--out", default="out/bench/hostile.json", help="JSON report (default out/bench/hostile.json)"
    )
    p.set_defaults(func=run_from_args)
    return p


def run_from_args(args: argparse.Namespace) -> int:
    cfg = HostileConfig(
        seconds=args.seconds,
        model=args.model,
        backend=args.backend,
        max_candidates=args.max_candidates,
        rollout_reps=args.rollout_reps,
        phases=tuple(args.phases),
        log_dir=Path(args.out).parent / "logs",
    )
    result = run_hostile_bench(cfg, args.out)
    print(summary_line(result))
    print(f"  written to {args.out}")
    return 0
