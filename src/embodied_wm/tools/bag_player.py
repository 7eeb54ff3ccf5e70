"""Publish a rosbag's messages over DDS in log-time order, optionally driving /clock.

Our stand-in for ``ros2 bag play --clock`` (rosbag2_py and ros2cli are not installable here; see
DESIGN.md). The serialized CDR bytes from the bag are published as they are (``Publisher.publish(bytes)``),
so the node under test receives exactly what was recorded and the player never pays a deserialize /
serialize round trip. ROS 1 bags are converted to CDR first.

Time: message i goes out at ``start + (t_i - t_0) / rate`` on the wall clock (``--rate 0``: as fast as
possible). With ``--clock`` a rosgraph_msgs/Clock is published at ``--clock-hz`` carrying the playback time,
and once more right before each message with that message's log time, so a ``use_sim_time`` subscriber's
``now()`` is never behind the data it just received.

Usage::

    python -m embodied_wm.tools.bag_player BAG [--topics /a /b] [--rate 1.0] [--clock [HZ]] [--loop]
        [--wait-for /camera/image_raw [--wait-for-nodes perception_node]] [--wait-timeout 30]
        [--delay 0.5] [--remap /old:=/new]

Exit status 0 when the bag was played, 1 on a bad bag/argument, 2 if --wait-for timed out.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rclpy
from rclpy.utilities import remove_ros_args
from rosbags.highlevel import AnyReader
from rosgraph_msgs.msg import Clock

from embodied_wm.errors import EmbodiedWMError
from embodied_wm.io.bag import find_topics
from embodied_wm.io.typestore import typestore
from embodied_wm.ros import spin
from embodied_wm.ros.conversions import ns_to_time
from embodied_wm.ros.qos import clock_qos, player_qos

NS_PER_S = 1_000_000_000


class PlayerError(EmbodiedWMError, RuntimeError):
    """The bag cannot be played (unreadable, unknown types, bad arguments)."""


def import_msg_type(msgtype: str) -> Any:
    """'sensor_msgs/msg/Image' -> the rclpy message class (ImportError/AttributeError if absent)."""
    parts = msgtype.split("/")
    if len(parts) == 2:  # 'pkg/Type' (ROS 1 style names)
        parts = [parts[0], "msg", parts[1]]
    if len(parts) != 3:
        raise ImportError(f"cannot parse message type {msgtype!r}")
    module = importlib.import_module(f"{parts[0]}.{parts[1]}")
    return getattr(module, parts[2])


@dataclass
class RawMessage:
    topic: str
    msgtype: str
    log_ns: int
    data: bytes


def iter_raw_messages(path: str | Path, topics: Sequence[str] | None = None) -> Iterator[RawMessage]:
    """Serialized (CDR) messages of ``path`` in log-time order across topics."""

    store = typestore()
    try:
        reader = AnyReader([Path(path)], default_typestore=store)
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise PlayerError(f"{path}: cannot open bag: {exc}") from exc
    try:
        wanted = set(topics) if topics else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        for conn, stamp, raw in reader.messages(connections=conns):
            data = bytes(raw) if reader.is2 else bytes(store.ros1_to_cdr(raw, conn.msgtype))
            yield RawMessage(conn.topic, conn.msgtype, int(stamp), data)
    finally:
        reader.close()


def bag_topics(path: str | Path) -> dict[str, str]:
    try:
        return find_topics(path)
    except Exception as exc:  # BagError or a rosbags error: both mean "not playable"
        raise PlayerError(str(exc)) from exc


@dataclass
class PlayReport:
    published: dict[str, int] = field(default_factory=dict)
    skipped_topics: dict[str, str] = field(default_factory=dict)
    wall_s: float = 0.0
    bag_span_s: float = 0.0
    loops: int = 0

    @property
    def total(self) -> int:
        return sum(self.published.values())


class BagPlayer:
    """Plays one bag on ``node``. Publishers are created at construction (so subscribers can discover
    them while the caller waits); ``play`` blocks until the bag (or ``stop``) is done."""

    def __init__(
        self,
        node: Any,
        path: str | Path,
        topics: Sequence[str] | None = None,
        rate: float = 1.0,
        clock_hz: float = 0.0,
        loop: bool = False,
        remap: dict[str, str] | None = None,
        depth: int = 100,
    ) -> None:
        if rate < 0:
            raise PlayerError(f"rate must be >= 0 (0 = as fast as possible), got {rate}")
        self.node = node
        self.path = Path(path)
        self.rate = float(rate)
        self.clock_hz = float(clock_hz)
        self.loop = loop
        self.remap = dict(remap or {})
        self.report = PlayReport()
        self._stop = threading.Event()
        available = bag_topics(self.path)
        if topics:
            unknown = sorted(set(topics) - set(available))
            if unknown:
                raise PlayerError(f"{self.path}: topics not in the bag: {', '.join(unknown)}")
            available = {t: available[t] for t in topics}
        self.topics: list[str] = []
        self._pubs: dict[str, Any] = {}
        for topic, msgtype in sorted(available.items()):
            try:
                cls = import_msg_type(msgtype)
            except (ImportError, AttributeError) as exc:
                # A type we cannot publish (e.g. a plugin's message) must not stop the replay of the rest.
                self.report.skipped_topics[topic] = f"{msgtype}: {exc}"
                continue
            self._pubs[topic] = node.create_publisher(cls, self.remap.get(topic, topic), player_qos(depth))
            self.topics.append(topic)
        if not self._pubs:
            raise PlayerError(f"{self.path}: no playable topics")
        self._clock_pub = None
        if clock_hz > 0:
            self._clock_pub = node.create_publisher(Clock, "/clock", clock_qos())
        self._clock_ns = -1

    # ------------------------------------------------------------------------------- public API
    def stop(self) -> None:
        self._stop.set()

    def wait_for_subscribers(
        self, topics: Sequence[str], timeout_s: float, nodes: Sequence[str] = ()
    ) -> list[str]:
        """Block until each (output) topic in ``topics`` has a matched subscriber (with ``nodes``: a
        subscription of each of these nodes, by name); returns those still waiting after ``timeout_s``."""
        pubs = {}
        for t in topics:
            src = next((k for k, v in self.remap.items() if v == t), t)
            if src not in self._pubs:
                raise PlayerError(f"--wait-for {t}: not a topic this player publishes")
            pubs[t] = self._pubs[src]
        wanted = {n for n in nodes if n}

        def still_waiting(topic: str, pub: Any) -> bool:
            if not wanted:
                return pub.get_subscription_count() == 0
            present = {i.node_name for i in self.node.get_subscriptions_info_by_topic(topic)}
            return not wanted <= present

        deadline = time.monotonic() + timeout_s
        while True:
            waiting = [t for t, p in pubs.items() if still_waiting(t, p)]
            if not waiting or time.monotonic() > deadline or self._stop.is_set():
                return waiting
            self._stop.wait(0.05)

    def play(self) -> PlayReport:
        t_start = time.monotonic()
        while not self._stop.is_set():
            self._play_once()
            self.report.loops += 1
            if not self.loop:
                break
        self.report.wall_s = time.monotonic() - t_start
        return self.report

    # ------------------------------------------------------------------------------- internals
    def _publish_clock(self, ns: int) -> None:
        if self._clock_pub is None or ns <= self._clock_ns:
            return

        msg = Clock()
        msg.clock = ns_to_time(ns)
        self._clock_pub.publish(msg)
        self._clock_ns = ns

    def _sleep_until(self, wall_target: float, wall0: float, bag0: int) -> None:
        """Sleep until ``wall_target``, publishing /clock at clock_hz meanwhile."""
        period = 1.0 / self.clock_hz if self.clock_hz > 0 else None
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= wall_target:
                return
            step = wall_target - now
            if period is not None:
                step = min(step, period)
            self._stop.wait(step)  # wakes at once on stop()
            if period is not None and self.rate > 0:
                self._publish_clock(bag0 + int((time.monotonic() - wall0) * self.rate * NS_PER_S))

    def _play_once(self) -> None:
        wall0: float | None = None
        bag0 = 0
        first = last = 0
        self._clock_ns = -1  # a loop restarts time, as ros2 bag play does
        for m in iter_raw_messages(self.path, self.topics):
            if self._stop.is_set():
                break
            if wall0 is None:
                wall0, bag0, first = time.monotonic(), m.log_ns, m.log_ns
            if self.rate > 0:
                self._sleep_until(wall0 + (m.log_ns - bag0) / NS_PER_S / self.rate, wall0, bag0)
            self._publish_clock(m.log_ns)
            self._pubs[m.topic].publish(m.data)
            self.report.published[m.topic] = self.report.published.get(m.topic, 0) + 1
            last = m.log_ns
        self.report.bag_span_s = (last - first) / NS_PER_S


def _parse_remaps(items: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        if ":=" not in item:
            raise PlayerError(f"--remap {item!r}: expected FROM:=TO")
        src, dst = item.split(":=", 1)
        out[src] = dst
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="bag_player", description="Publish a rosbag2 over DDS in log-time order."
    )
    p.add_argument("bag", help="bag directory or .mcap/.db3 file")
    p.add_argument("--topics", nargs="+", default=None, help="only these topics (default: all)")
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor; 0 = as fast as possible")
    p.add_argument(
        "--clock",
        nargs="?",
        type=float,
        const=40.0,
        default=0.0,
        metavar="HZ",
        help="publish /clock (default 40 Hz when given without a value, like ros2 bag play)",
    )
    p.add_argument("--loop", action="store_true", help="replay until interrupted")
    p.add_argument(
        "--remap", nargs="+", default=[], metavar="FROM:=TO", help="publish a topic under another name"
    )
    p.add_argument(
        "--wait-for",
        nargs="+",
        default=[],
        metavar="TOPIC",
        help="wait until these topics have a subscriber before playing",
    )
    p.add_argument(
        "--wait-for-nodes",
        nargs="+",
        default=[],
        metavar="NODE",
        help="with --wait-for: wait until each of these nodes (by name) subscribes, not just anyone",
    )
    p.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for --wait-for")
    p.add_argument(
        "--delay", type=float, default=0.0, help="seconds to sleep before playing (after --wait-for)"
    )
    p.add_argument("--depth", type=int, default=100, help="publisher queue depth (reliable)")
    p.add_argument("--node-name", default="bag_player")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    raw_argv = list(sys.argv if argv is None else ["bag_player", *argv])
    shutdown = spin.install_signal_handlers()
    args = build_parser().parse_args(remove_ros_args(raw_argv)[1:])
    spin.init(raw_argv)
    node = rclpy.create_node(args.node_name)
    try:
        player = BagPlayer(
            node,
            args.bag,
            topics=args.topics,
            rate=args.rate,
            clock_hz=args.clock,
            loop=args.loop,
            remap=_parse_remaps(args.remap),
            depth=args.depth,
        )
        # SIGINT/SIGTERM stop the playback where it is (exit 0, like ros2 bag play).
        shutdown.on_request(player.stop)
        for topic, why in player.report.skipped_topics.items():
            print(f"bag_player: skipping {topic}: {why}", file=sys.stderr)
        if args.wait_for:
            waiting = player.wait_for_subscribers(args.wait_for, args.wait_timeout, args.wait_for_nodes)
            if waiting and not shutdown.requested:
                print(
                    f"bag_player: no subscriber on {', '.join(waiting)} after {args.wait_timeout} s",
                    file=sys.stderr,
                )
                return 2
        if args.delay > 0:
            shutdown.wait(args.delay)
        if not shutdown.requested:
            print(
                f"bag_player: playing {args.bag} ({len(player.topics)} topics, rate {args.rate})",
                flush=True,
            )
            report = player.play()
            # Give reliable writers a moment to flush the last samples before the participant goes away.
            shutdown.wait(0.3)
            stopped = f" (stopped by {shutdown.reason})" if shutdown.requested else ""
            print(
                f"bag_player: published {report.total} messages on {len(report.published)} topics in "
                f"{report.wall_s:.2f} s (bag span {report.bag_span_s:.2f} s){stopped}",
                flush=True,
            )
        return 0
    except PlayerError as exc:
        print(f"bag_player: error: {exc}", file=sys.stderr)
        return 1
    finally:
        spin.quietly("bag_player", "destroy node", node.destroy_node)
        spin.shutdown_context()


if __name__ == "__main__":
    sys.exit(main())
