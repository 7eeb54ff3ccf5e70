"""Reading rosbag2 files (sqlite3 or MCAP, any bag format version `rosbags` understands) in time order.

Readers of the package (offline evaluation, training data, INT8 calibration) go through here and then
through `embodied_wm.pipeline.Pipeline`, so there is one decode path.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosbags.highlevel import AnyReader

from embodied_wm.data.typestore import typestore

log = logging.getLogger(__name__)


class BagError(RuntimeError):
    """A bag cannot be opened or read."""


@dataclass(frozen=True)
class BagMessage:
    topic: str
    msgtype: str
    #: Time the message was recorded (bag log time), ns.
    stamp_ns: int
    msg: Any


@dataclass
class BagReadReport:
    """What a read got through; ``stopped_at`` is set when a corrupt or truncated bag ended early."""

    messages: int = 0
    undecodable: int = 0
    stopped_at: str | None = None


def bag_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and directories into bag paths: a directory holding metadata.yaml or a .mcap/.db3 is
    one bag; other directories are searched one level down for bags."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if not p.exists():
            raise BagError(f"{p}: no such file or directory")
        if _is_bag(p):
            out.append(p)
            continue
        if p.is_dir():
            found = sorted(c for c in p.iterdir() if _is_bag(c))
            if not found:
                raise BagError(f"{p}: no rosbag2 found (expected metadata.yaml, *.mcap or *.db3)")
            out.extend(found)
        else:
            raise BagError(f"{p}: not a rosbag2 (expected a bag directory, *.mcap or *.db3)")
    return out


def _is_bag(p: Path) -> bool:
    if p.is_file():
        return p.suffix in (".mcap", ".db3")
    return p.is_dir() and (
        (p / "metadata.yaml").is_file() or any(c.suffix in (".mcap", ".db3") for c in p.iterdir())
    )


def _open(path: Path) -> AnyReader:
    try:
        reader = AnyReader([path], default_typestore=typestore())
        reader.open()
    except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
        raise BagError(f"{path}: cannot open bag: {exc}") from exc
    return reader


def find_topics(path: str | Path) -> dict[str, str]:
    """Topic name -> message type (e.g. 'sensor_msgs/msg/Image') for every topic in the bag."""
    reader = _open(Path(path))
    try:
        return {c.topic: c.msgtype for c in reader.connections}
    finally:
        reader.close()


def iter_bag_messages(
    path: str | Path, topics: Iterable[str] | None = None, report: BagReadReport | None = None
) -> Iterator[BagMessage]:
    """Deserialized messages in log-time order. A message that fails to deserialize is counted in
    ``report.undecodable`` and skipped; a bag that breaks mid-way stops the iteration with
    ``report.stopped_at`` saying where (the messages before it were yielded)."""
    report = report if report is not None else BagReadReport()
    reader = _open(Path(path))
    try:
        wanted = set(topics) if topics is not None else None
        conns = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if not conns:
            return
        it = reader.messages(connections=conns)
        last_ns = 0
        while True:
            try:
                conn, stamp, raw = next(it)
            except StopIteration:
                break
            except Exception as exc:  # truncated/corrupt chunk: keep what we read
                report.stopped_at = f"after {report.messages} messages (log time {last_ns} ns): {exc}"
                log.warning("%s: stopped reading %s", path, report.stopped_at)
                break
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception:  # noqa: BLE001 - a single bad message must not end the read
                report.undecodable += 1
                continue
            report.messages += 1
            last_ns = stamp
            yield BagMessage(conn.topic, conn.msgtype, int(stamp), msg)
    finally:
        reader.close()
