"""Synthetic robot sensors for benchmarks, soak runs and hostile-input tests.

Publishes, at a fixed rate, what a real robot would: a camera (``sensor_msgs/Image``, rgb8, default
640x480), a microphone (``embodied_wm/AudioFrame``, 16 kHz S16LE mono), a 5x5 tactile pad
(``embodied_wm/TactileArray``), joint states and the end-effector twist command. The picture is a textured
background with a square moving at constant velocity, so motion-extrapolating baselines and learned
models have real work to do (a constant frame would let a model shortcut).

Every message is stamped with the wall clock (``time.time_ns()``) at publish time (one stamp per tick,
taken just before the tick's messages go out), so a receiver on the same machine can compute stamp ->
receipt latency. Audio follows a sample clock (see ``SyntheticSensors.audio``): each chunk holds the
samples since the previous one up to the tick time and is stamped with its FIRST sample (AudioFrame's
contract), so the chunk ends at the camera frame of the same tick and the Aligner never waits for audio.

Run as a process: ``python -m embodied_wm.tools.sensor_publisher --rate 30 --seconds 60 --stats-file F``.
The stats file (JSON, rewritten every second and at exit) holds per-topic publish counts and late ticks,
which the benchmarks use to count drops without subscribing to the 27 MB/s camera stream themselves.
"""

from __future__ import annotations

import argparse
import array
import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from geometry_msgs.msg import TwistStamped
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rclpy.utilities import remove_ros_args
from sensor_msgs.msg import Image, JointState

from embodied_wm.errors import ConfigError
from embodied_wm.io.stamps import split_ns
from embodied_wm.msg import AudioFrame, TactileArray

NS_PER_S = 1_000_000_000

#: Topics the perception node subscribes to by default.
DEFAULT_TOPICS: dict[str, str] = {
    "image": "/camera/image_raw",
    "audio": "/audio",
    "tactile": "/tactile",
    "joints": "/joint_states",
    "twist": "/cmd_vel_ee",
}
ALL_STREAMS: tuple[str, ...] = tuple(DEFAULT_TOPICS)

#: Distinct camera frames precomputed and cycled; the square's motion wraps around after this many.
N_FRAMES = 32


def make_frames(width: int, height: int, n: int = N_FRAMES) -> list[np.ndarray]:
    """``n`` RGB frames (H x W x 3 uint8): textured gradient background, a bright square moving diagonally
    by a constant number of pixels per frame. Precomputed so publishing costs no pixel work."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.empty((height, width, 3), np.uint8)
    base[..., 0] = (xx / max(width - 1, 1) * 200).astype(np.uint8)
    base[..., 1] = (yy / max(height - 1, 1) * 200).astype(np.uint8)
    # A fixed checker texture gives edges everywhere, like a real scene (and like JPEG-unfriendly input).
    base[..., 2] = (((xx // 16 + yy // 16) % 2) * 90 + 40).astype(np.uint8)
    side = max(min(width, height) // 6, 1)
    frames = []
    for k in range(n):
        img = base.copy()
        x0 = int((k * (width - side)) / max(n - 1, 1))
        y0 = int((k * (height - side)) / max(n - 1, 1))
        img[y0 : y0 + side, x0 : x0 + side] = (250, 240, 30)
        frames.append(img)
    return frames


def stamp_fields(stamp_ns: int) -> tuple[int, int]:
    """(sec, nanosec) of a non-negative ns stamp, as builtin_interfaces/Time wants them."""
    return split_ns(stamp_ns)


@dataclass
class PublisherStats:
    """Counts the benchmarks read back from the stats file."""

    rate_hz: float
    started_ns: int = 0
    last_tick_ns: int = 0
    ticks: int = 0
    #: Ticks whose deadline had already passed by more than one period (the loop skipped ahead).
    late_ticks: int = 0
    published: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        elapsed = max(self.last_tick_ns - self.started_ns, 1) / NS_PER_S
        return {
            "rate_hz": self.rate_hz,
            "started_ns": self.started_ns,
            "last_tick_ns": self.last_tick_ns,
            "ticks": self.ticks,
            "late_ticks": self.late_ticks,
            "published": dict(self.published),
            "achieved_rate_hz": (self.ticks - 1) / elapsed if self.ticks > 1 else 0.0,
            "pid": os.getpid(),
        }


class SyntheticSensors:
    """Builds the messages of one tick. Usable in-process (tests publish good frames between bad ones)
    and by the ``SensorPublisher`` node below."""

    def __init__(
        self,
        width: int = 640,
        height: int = 480,
        rate_hz: float = 30.0,
        audio_rate: int = 16000,
        frame_id: str = "camera_optical_frame",
        n_joints: int = 3,
    ) -> None:
        self.width, self.height, self.rate_hz = int(width), int(height), float(rate_hz)
        self.audio_rate = int(audio_rate)
        self.frame_id = frame_id
        self.n_joints = int(n_joints)
        # array.array('B') is what the generated setters store without a per-byte Python check; handing
        # them bytes or lists would cost ~100 ms per 640x480 frame.
        self._frames = [array.array("B", f.tobytes()) for f in make_frames(self.width, self.height)]
        self._k = 0
        self._audio_t0: int | None = None
        self._audio_sent = 0
        self._rng = np.random.default_rng(0)
        self._AudioFrame, self._TactileArray = AudioFrame, TactileArray

    def image(self, stamp_ns: int) -> Any:
        msg = Image()
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_fields(stamp_ns)
        msg.header.frame_id = self.frame_id
        msg.height, msg.width = self.height, self.width
        msg.encoding = "rgb8"
        msg.is_bigendian = 0
        msg.step = self.width * 3
        msg.data = self._frames[self._k % len(self._frames)]
        self._k += 1
        return msg

    def audio(self, end_ns: int) -> Any | None:
        """The mono S16LE samples (a tone plus noise) captured since the previous chunk, up to the last
        sample at or before ``end_ns``; None when no new sample is due (clock stepped back).

        Sample times come from a sample clock anchored at the first call (sample i at t0 + i / rate), so
        consecutive chunks are exactly contiguous whatever the tick jitter: the Aligner absorbs gaps of
        less than one sample only, and treats larger ones as missing audio. The last sample lies within one
        sample period before ``end_ns``, so the window ending at the camera frame is complete at once.
        """
        period_ns = NS_PER_S / self.audio_rate
        if self._audio_t0 is None or end_ns - self._audio_t0 > self._audio_sent * period_ns + 2 * NS_PER_S:
            # Start (or restart after a stall of > 2 s: one chunk of the whole gap would be absurd).
            # The first chunk is one nominal tick long, ending at end_ns.
            first = round(self.audio_rate / self.rate_hz)
            self._audio_t0 = end_ns - round((first - 1) * period_ns)
            self._audio_sent = 0
        due = math.floor((end_ns - self._audio_t0) / period_ns + 1e-9) + 1  # samples stamped <= end_ns
        n = due - self._audio_sent
        if n <= 0:
            return None
        i = self._audio_sent + np.arange(n, dtype=np.float64)
        t = i / self.audio_rate
        wave = 0.2 * np.sin(2 * math.pi * 440.0 * t) + 0.02 * self._rng.standard_normal(n)
        pcm = np.clip(wave * 32767, -32768, 32767).astype("<i2")
        msg = self._AudioFrame()
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_fields(
            max(self._audio_t0 + round(self._audio_sent * period_ns), 0)
        )
        self._audio_sent = due
        msg.header.frame_id = "microphone"
        msg.sample_rate = self.audio_rate
        msg.channels = 1
        msg.encoding = "S16LE"
        msg.data = array.array("B", pcm.tobytes())
        return msg

    def tactile(self, stamp_ns: int, rows: int = 5, cols: int = 5) -> Any:
        """A smooth pressure bump that wanders over the pad (values in newtons)."""
        phase = self._k / max(self.rate_hz, 1.0)
        r, c = np.mgrid[0:rows, 0:cols].astype(np.float32)
        cr = (rows - 1) / 2 * (1 + math.sin(phase))
        cc = (cols - 1) / 2 * (1 + math.cos(phase))
        values = (2.0 * np.exp(-((r - cr) ** 2 + (c - cc) ** 2) / 2.0)).astype(np.float32)
        msg = self._TactileArray()
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_fields(stamp_ns)
        msg.header.frame_id = "fingertip"
        msg.sensor_model = "synthetic_5x5"
        msg.rows, msg.cols = rows, cols
        msg.values = array.array("f", values.ravel().tobytes())
        msg.unit = "N"
        return msg

    def joints(self, stamp_ns: int) -> Any:
        t = stamp_ns / NS_PER_S
        msg = JointState()
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_fields(stamp_ns)
        msg.name = [f"joint{i + 1}" for i in range(self.n_joints)]
        msg.position = [0.5 * math.sin(0.5 * t + i) for i in range(self.n_joints)]
        msg.velocity = [0.25 * math.cos(0.5 * t + i) for i in range(self.n_joints)]
        return msg

    def twist(self, stamp_ns: int) -> Any:
        t = stamp_ns / NS_PER_S
        msg = TwistStamped()
        msg.header.stamp.sec, msg.header.stamp.nanosec = stamp_fields(stamp_ns)
        msg.header.frame_id = "base_link"
        msg.twist.linear.x = 0.05 * math.sin(t)
        msg.twist.linear.y = 0.05 * math.cos(t)
        return msg


class SensorPublisher:
    """A node that publishes the synthetic streams from its own thread at a fixed rate.

    Publishing from a plain deadline loop (not an rclpy timer) keeps the rate honest on a loaded 2-core
    machine: a timer callback queued behind other work drifts, and a late tick here is counted and skipped
    instead of being published in a burst.
    """

    def __init__(
        self,
        node: Any,
        rate_hz: float = 30.0,
        width: int = 640,
        height: int = 480,
        streams: Sequence[str] = ALL_STREAMS,
        topics: dict[str, str] | None = None,
        reliability: str = "reliable",
        depth: int = 5,
    ) -> None:
        unknown = set(streams) - set(ALL_STREAMS)
        if unknown:
            raise ConfigError(f"unknown streams {sorted(unknown)} (use {list(ALL_STREAMS)})")
        self.node = node
        self.rate_hz = float(rate_hz)
        self.streams = tuple(streams)
        self.sensors = SyntheticSensors(width, height, rate_hz)
        # A reliable publisher matches both reliable and best-effort subscribers; keep-last means a slow
        # reader never blocks us (old samples are replaced, as a real camera driver would).
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=int(depth),
            reliability=ReliabilityPolicy.RELIABLE
            if reliability == "reliable"
            else ReliabilityPolicy.BEST_EFFORT,
        )
        types = {
            "image": Image,
            "audio": AudioFrame,
            "tactile": TactileArray,
            "joints": JointState,
            "twist": TwistStamped,
        }
        names = dict(DEFAULT_TOPICS, **(topics or {}))
        self.pubs = {s: node.create_publisher(types[s], names[s], qos) for s in self.streams}
        self.stats = PublisherStats(rate_hz=self.rate_hz, published={s: 0 for s in self.streams})
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def publish_tick(self, now_ns: int | None = None) -> None:
        """Publish one message per stream, all with the same stamp (the tick's wall-clock time).

        One stamp per tick matters: the Aligner holds a camera frame at t until every active stream has
        a reading stamped >= t, so a tactile reading stamped a few microseconds before the frame would
        make every frame wait a whole period for the next tick. Audio and the slow streams go out first
        so that, when the camera frame arrives, everything it is aligned with is already there.
        """
        stamp = time.time_ns() if now_ns is None else now_ns
        for s in ("audio", "tactile", "joints", "twist", "image"):
            if s in self.pubs:
                msg = getattr(self.sensors, s)(stamp)
                if msg is not None:
                    self.pubs[s].publish(msg)
                    self.stats.published[s] += 1
        self.stats.ticks += 1
        self.stats.last_tick_ns = time.time_ns()

    def run(
        self, seconds: float = 0.0, stats_file: Path | None = None, stats_every_s: float = 1.0
    ) -> PublisherStats:
        """Publish until ``seconds`` have passed (0 = until ``stop()``), writing the stats file every
        ``stats_every_s`` and once more at the end."""
        period = 1.0 / self.rate_hz
        start = time.monotonic()
        self.stats.started_ns = time.time_ns()
        next_t = start
        next_stats = start
        while not self._stop.is_set():
            now = time.monotonic()
            if seconds > 0 and now - start >= seconds:
                break
            if now < next_t:
                self._stop.wait(next_t - now)
                continue
            self.publish_tick()
            next_t += period
            if time.monotonic() - next_t > period:
                # More than a whole period behind: skip the missed ticks instead of bursting them.
                missed = int((time.monotonic() - next_t) / period)
                self.stats.late_ticks += missed
                next_t += missed * period
            if stats_file is not None and time.monotonic() >= next_stats:
                write_stats(stats_file, self.stats)
                next_stats += stats_every_s
        if stats_file is not None:
            write_stats(stats_file, self.stats)
        return self.stats


def write_stats(path: Path, stats: PublisherStats) -> None:
    """Atomic rewrite (tmp + rename) so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(stats.as_dict()))
    os.replace(tmp, path)


def read_stats(path: Path) -> dict[str, Any] | None:
    """The last stats the publisher wrote, or None if there are none (yet)."""
    try:
        return dict(json.loads(Path(path).read_text()))
    except (OSError, ValueError):
        return None


def build_arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sensor_publisher", description=__doc__.splitlines()[0])
    p.add_argument("--rate", type=float, default=30.0, help="ticks per second (default 30)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=480)
    p.add_argument(
        "--seconds", type=float, default=0.0, help="stop after this long (0 = until SIGTERM/SIGINT)"
    )
    p.add_argument(
        "--streams", default=",".join(ALL_STREAMS), help=f"comma-separated subset of {','.join(ALL_STREAMS)}"
    )
    p.add_argument("--reliability", choices=("reliable", "best_effort"), default="reliable")
    p.add_argument("--depth", type=int, default=5)
    p.add_argument("--stats-file", type=Path, default=None)
    for s, topic in DEFAULT_TOPICS.items():
        p.add_argument(f"--{s}-topic", default=topic)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv if argv is None else ["sensor_publisher", *argv])
    args = build_arg_parser().parse_args(remove_ros_args(raw)[1:])
    # We install our own SIGTERM/SIGINT handling: the loop must finish its tick and write final stats.
    rclpy.init(args=raw, signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("sensor_publisher")
    streams = [s.strip() for s in args.streams.split(",") if s.strip()]
    topics = {s: getattr(args, f"{s}_topic") for s in ALL_STREAMS}
    pub = SensorPublisher(
        node, args.rate, args.width, args.height, streams, topics, args.reliability, args.depth
    )

    def _stop(_sig: int, _frame: Any) -> None:
        pub.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        stats = pub.run(args.seconds, args.stats_file)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    print(json.dumps(stats.as_dict()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
