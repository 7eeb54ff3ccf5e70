"""Reading rosbag2 files (sqlite3 or MCAP, any bag format version `rosbags` understands) in time order.

Readers of the package (offline evaluation, training data, INT8 calibration) go through here and then
through `embodied_wm.pipeline.Pipeline`, so there is one decode path.

Bags from the field are often damaged: ``ros2 bag record`` killed by a power cut leaves a directory with
no metadata.yaml and an MCAP file without its summary section or footer, which rosbags refuses to open.
Such files are read here with a forward scan (``mcap``'s stream reader) up to the first broken record;
``BagReadReport.stopped_at`` and ``BagInfo.damaged`` say so, and callers evaluate what could be read.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePath
from typing import Any

import yaml
from rosbags.highlevel import AnyReader
from rosbags.serde import SerdeError
from rosbags.typesys import get_types_from_idl, get_types_from_msg
from rosbags.typesys.store import Typestore

from embodied_wm.errors import EmbodiedWMError
from embodied_wm.io.typestore import typestore

log = logging.getLogger(__name__)

STORAGE_SUFFIXES = (".mcap", ".db3")
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
#: Topics under this prefix carry simulator ground truth (segmentation, depth, affordance images), never
#: the robot's camera, even when they are sensor_msgs/Image.
GROUND_TRUTH_PREFIX = "/ground_truth/"


class BagError(EmbodiedWMError, RuntimeError):
    """A bag cannot be opened or read."""


class NoCameraTopicError(BagError):
    """The bag has no usable camera topic (or not the one asked for); the message lists its topics."""


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


@dataclass
class BagInfo:
    """What a bag holds. ``counts`` are message counts per topic (from the index, or from a scan of a
    damaged file); ``damaged`` names why the normal reader could not open it (None when it could)."""

    path: Path
    topics: dict[str, str]
    counts: dict[str, int] = field(default_factory=dict)
    storage: str = ""
    version: int | None = None
    damaged: str | None = None

    def describe_topics(self) -> str:
        if not self.topics:
            return "no topics"
        return ", ".join(f"{t} [{mt}] ({self.counts.get(t, '?')})" for t, mt in sorted(self.topics.items()))


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
        return p.suffix in STORAGE_SUFFIXES
    return p.is_dir() and (
        (p / "metadata.yaml").is_file() or any(c.suffix in STORAGE_SUFFIXES for c in p.iterdir())
    )


def _metadata(path: Path) -> dict[str, Any] | None:
    """The rosbag2_bagfile_information dict of a bag directory, or None if absent or unreadable."""
    meta = path / "metadata.yaml"
    if not meta.is_file():
        return None
    try:
        info = yaml.safe_load(meta.read_text()).get("rosbag2_bagfile_information")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None
    return info if isinstance(info, dict) else None


def _metadata_version(meta: dict[str, Any] | None) -> int | None:
    """The bag format version metadata.yaml states, None when absent or not a plausible integer (it is
    informational: rosbags reads the storage files themselves)."""
    raw = meta.get("version") if meta else None
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw if 0 < raw < 1000 else None
    if isinstance(raw, str) and raw.strip().isdigit() and len(raw.strip()) < 4:
        return int(raw)
    return None


def _storage_files(path: Path) -> list[Path]:
    """The storage files of a bag: the file itself, those metadata.yaml lists, or those present."""
    if path.is_file():
        return [path]
    meta = _metadata(path)
    if meta is not None:
        # Versions < 4 stored paths relative to the parent directory: only the file name counts.
        paths = meta.get("relative_file_paths")
        listed = (
            [path / PurePath(x).name for x in paths if isinstance(x, str) and x]
            if isinstance(paths, list)
            else []
        )
        if listed and all(p.is_file() for p in listed):
            return listed
    return sorted(c for c in path.iterdir() if c.suffix in STORAGE_SUFFIXES)


def _any_reader(path: Path) -> AnyReader:
    # A directory without metadata.yaml (recorder killed before writing it): open its storage files
    # directly; rosbags reads bare .mcap/.db3 files and merges several in time order.
    targets = [path] if path.is_file() or (path / "metadata.yaml").is_file() else _storage_files(path)
    if not targets:
        raise BagError(f"{path}: no storage files (*.mcap, *.db3) in the bag directory")
    reader = AnyReader(targets, default_typestore=typestore())
    reader.open()
    return reader


class _Opened:
    """A bag opened either by rosbags (intact) or by the forward MCAP scanner (damaged)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader: AnyReader | None = None
        self.damaged: str | None = None
        try:
            self.reader = _any_reader(path)
        except BagError:
            raise
        except Exception as exc:  # rosbags raises several unrelated types for unreadable bags
            mcaps = [f for f in _storage_files(path) if f.suffix == ".mcap"] if path.exists() else []
            if not mcaps:
                raise BagError(f"{path}: cannot open bag: {exc}") from exc
            self.damaged = str(exc) or type(exc).__name__
            self.mcaps = mcaps

    def info(self) -> BagInfo:
        meta = _metadata(self.path) if self.path.is_dir() else None
        version = _metadata_version(meta)
        if self.reader is not None:
            topics = {c.topic: c.msgtype for c in self.reader.connections}
            counts: dict[str, int] = {}
            for c in self.reader.connections:
                counts[c.topic] = counts.get(c.topic, 0) + int(c.msgcount)
            if meta and isinstance(meta.get("storage_identifier"), str) and meta["storage_identifier"]:
                storage = meta["storage_identifier"]
            else:
                suffixes = {f.suffix.lstrip(".") for f in _storage_files(self.path)}
                storage = ",".join(sorted(suffixes)).replace("db3", "sqlite3")
            return BagInfo(self.path, topics, counts, storage, version)
        topics, counts = {}, {}
        for topic, msgtype, _stamp, _raw in _scan_mcaps(self.mcaps, BagReadReport(), raw_only=True):
            topics.setdefault(topic, msgtype)
            counts[topic] = counts.get(topic, 0) + 1
        return BagInfo(self.path, topics, counts, "mcap", version, self.damaged)

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()


def bag_info(path: str | Path) -> BagInfo:
    """Topics, types, message counts, storage and format version of a bag (damaged MCAP included)."""
    opened = _Opened(Path(path))
    try:
        return opened.info()
    finally:
        opened.close()


def find_topics(path: str | Path) -> dict[str, str]:
    """Topic name -> message type (e.g. 'sensor_msgs/msg/Image') for every topic in the bag."""
    return bag_info(path).topics


def choose_camera_topic(info: BagInfo, requested: Iterable[str] | None = None) -> str:
    """The camera topic to evaluate on: the first requested topic the bag has, or else the Image or
    CompressedImage topic with the most messages outside /ground_truth/ (ties: shortest name, so
    /camera/image_raw wins over /camera/image_raw/compressed). Raises NoCameraTopicError listing the
    bag's topics when there is none."""
    req = [t for t in (requested or []) if t]
    if req:
        for t in req:
            if t in info.topics:
                if info.topics[t] not in IMAGE_TYPES:
                    raise NoCameraTopicError(
                        f"{info.path}: topic {t} is {info.topics[t]}, not an image; "
                        f"topics: {info.describe_topics()}"
                    )
                return t
        raise NoCameraTopicError(
            f"{info.path}: none of the camera topics {', '.join(req)} in bag; "
            f"topics: {info.describe_topics()}"
        )
    cands = [
        t for t, mt in info.topics.items() if mt in IMAGE_TYPES and not t.startswith(GROUND_TRUTH_PREFIX)
    ]
    cands = [t for t in cands if info.counts.get(t, 1) > 0]
    if not cands:
        raise NoCameraTopicError(
            f"{info.path}: no camera topic (sensor_msgs/Image or CompressedImage); "
            f"topics: {info.describe_topics()}"
        )
    return sorted(cands, key=lambda t: (-info.counts.get(t, 0), len(t), t))[0]


def topics_of_type(info: BagInfo, msgtypes: Iterable[str]) -> list[str]:
    """Topics whose type is one of ``msgtypes``, most messages first."""
    want = set(msgtypes)
    return sorted(
        (t for t, mt in info.topics.items() if mt in want), key=lambda t: (-info.counts.get(t, 0), t)
    )


def iter_bag_messages(
    path: str | Path, topics: Iterable[str] | None = None, report: BagReadReport | None = None
) -> Iterator[BagMessage]:
    """Deserialized messages in log-time order. A message that fails to deserialize is counted in
    ``report.undecodable`` and skipped; a bag that breaks mid-way stops the iteration with
    ``report.stopped_at`` saying where (the messages before it were yielded)."""
    report = report if report is not None else BagReadReport()
    opened = _Opened(Path(path))
    wanted = set(topics) if topics is not None else None
    try:
        if opened.reader is None:
            log.warning("%s: damaged bag (%s); reading it forward up to the damage", path, opened.damaged)
            yield from _iter_damaged(opened.mcaps, wanted, report, path)
            return
        reader = opened.reader
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
            except Exception as exc:
                report.stopped_at = f"after {report.messages} messages (log time {last_ns} ns): {exc}"
                log.warning("%s: stopped reading %s", path, report.stopped_at)
                break
            try:
                msg = _deserialize(reader.deserialize, raw, conn.msgtype)
            except Exception:
                report.undecodable += 1
                continue
            report.messages += 1
            last_ns = stamp
            yield BagMessage(conn.topic, conn.msgtype, int(stamp), msg)
    finally:
        opened.close()


def _deserialize(deserialize: Any, raw: bytes, msgtype: str) -> Any:
    """Deserialize, tolerating Fast-CDR's padding: rclpy / `ros2 bag record` pad a message that ends in an
    empty float64[] (e.g. JointState without effort) to 8 bytes, and rosbags accepts at most 3 trailing
    bytes. Retrying without the 4 pad bytes recovers those messages instead of dropping them."""

    try:
        return deserialize(raw, msgtype)
    except SerdeError:
        if len(raw) < 8:
            raise
        return deserialize(raw[:-4], msgtype)


def _iter_damaged(
    files: list[Path], wanted: set[str] | None, report: BagReadReport, path: str | Path
) -> Iterator[BagMessage]:
    store = _ScanTypes()
    for topic, msgtype, stamp, raw in _scan_mcaps(files, report, types=store):
        if wanted is not None and topic not in wanted:
            continue
        try:
            msg = _deserialize(store.deserialize, raw, msgtype)
        except Exception:
            report.undecodable += 1
            continue
        report.messages += 1
        yield BagMessage(topic, msgtype, stamp, msg)
    if report.stopped_at:
        log.warning("%s: stopped reading %s", path, report.stopped_at)


class _ScanTypes:
    """Our typestore, extended with definitions found in a damaged file's schema records for types it
    does not know (a type we know keeps our definition, as the intact-bag path does for old bags)."""

    def __init__(self) -> None:
        self.default: Typestore = typestore()
        self.extra: Typestore | None = None

    def add_schema(self, name: str, encoding: str, data: bytes) -> None:
        if name in self.default.types or not data:
            return
        try:
            text = data.decode()
            if encoding == "ros2msg":
                types = get_types_from_msg(text, name)
            elif encoding == "ros2idl":
                types = get_types_from_idl(text)
            else:
                return
            if self.extra is None:
                # lazy: optional: absent here is handled below
                from rosbags.typesys import Stores, get_typestore

                self.extra = get_typestore(Stores.ROS2_JAZZY)
            self.extra.register(types)
        except Exception as exc:
            log.debug("cannot parse schema %s: %s", name, exc)

    def deserialize(self, raw: bytes, msgtype: str) -> Any:
        if msgtype in self.default.types or self.extra is None:
            return self.default.deserialize_cdr(raw, msgtype)
        return self.extra.deserialize_cdr(raw, msgtype)


def _scan_mcaps(
    files: list[Path], report: BagReadReport, types: _ScanTypes | None = None, raw_only: bool = False
) -> Iterator[tuple[str, str, int, bytes]]:
    """(topic, msgtype, log time, raw CDR) by a forward scan of MCAP files in file order, stopping at
    the first record that cannot be read (``report.stopped_at`` then says where)."""
    for f in files:
        scan = _McapScan(f, types, raw_only)
        yield from scan.messages()
        if scan.stopped:
            report.stopped_at = (
                f"{f.name}: after {scan.count} messages (log time {scan.last_ns} ns, byte {scan.offset} of "
                f"{scan.size}): {scan.stopped}"
            )
            return


# MCAP record opcodes (https://mcap.dev/spec) the scan needs.
_OP_SCHEMA, _OP_CHANNEL, _OP_MESSAGE, _OP_CHUNK, _OP_DATA_END, _OP_FOOTER = 0x03, 0x04, 0x05, 0x06, 0x0F, 0x02
_MCAP_MAGIC = b"\x89MCAP0\r\n"


class _McapScan:
    """A forward MCAP reader that survives truncation.

    The ``mcap`` package's stream reader drops a chunk that is cut short, and recorders write chunks of
    up to several MB: a bag killed mid-chunk would lose seconds of data. Here a truncated chunk is
    decompressed as far as its bytes go (uncompressed, zstd and lz4 all decode a prefix) and every
    complete record inside it is kept.
    """

    def __init__(self, path: Path, types: _ScanTypes | None, raw_only: bool) -> None:
        self.path = path
        self.types = types
        self.raw_only = raw_only
        self.schemas: dict[int, str] = {}
        self.channels: dict[int, tuple[str, str]] = {}
        self.count = 0
        self.last_ns = 0
        self.offset = 0
        self.size = path.stat().st_size
        self.stopped: str | None = None

    def messages(self) -> Iterator[tuple[str, str, int, bytes]]:
        data = self.path.read_bytes()
        if not data.startswith(_MCAP_MAGIC):
            self.stopped = "not an MCAP file (bad magic)"
            return
        pos = len(_MCAP_MAGIC)
        while pos < len(data):
            self.offset = pos
            if pos + 9 > len(data):
                self.stopped = "file ends inside a record header (truncated)"
                return
            op, length = data[pos], struct.unpack_from("<Q", data, pos + 1)[0]
            body = data[pos + 9 : pos + 9 + length]
            truncated = len(body) < length
            if op in (_OP_DATA_END, _OP_FOOTER):
                return  # the summary section after DataEnd repeats what the data section had
            if op == _OP_CHUNK:
                yield from self._chunk(body, truncated)
            elif truncated:
                pass
            else:
                yield from self._record(op, body)
            if truncated:
                self.stopped = f"file ends inside a record (opcode 0x{op:02x}, {len(body)} of {length} bytes)"
                return
            pos += 9 + length
        self.offset = pos
        self.stopped = "file ends without the MCAP footer (recording not closed)"

    def _record(self, op: int, body: bytes) -> Iterator[tuple[str, str, int, bytes]]:
        if op == _OP_SCHEMA:
            sid = struct.unpack_from("<H", body, 0)[0]
            name, p = _mcap_string(body, 2)
            enc, p = _mcap_string(body, p)
            dlen = struct.unpack_from("<I", body, p)[0]
            self.schemas[sid] = name
            if self.types is not None:
                self.types.add_schema(name, enc, body[p + 4 : p + 4 + dlen])
        elif op == _OP_CHANNEL:
            cid, sid = struct.unpack_from("<HH", body, 0)
            topic, _ = _mcap_string(body, 4)
            self.channels[cid] = (topic, self.schemas.get(sid, ""))
        elif op == _OP_MESSAGE:
            cid, _seq, log_time = struct.unpack_from("<HIQ", body, 0)
            if cid in self.channels:
                topic, msgtype = self.channels[cid]
                self.count += 1
                self.last_ns = int(log_time)
                yield topic, msgtype, int(log_time), b"" if self.raw_only else body[22:]

    def _chunk(self, body: bytes, truncated: bool) -> Iterator[tuple[str, str, int, bytes]]:
        head = 8 + 8 + 8 + 4
        if len(body) < head + 4:
            return
        comp, p = _mcap_string(body, head)
        if len(body) < p + 8:
            return
        rec_len = struct.unpack_from("<Q", body, p)[0]
        payload = body[p + 8 : p + 8 + rec_len]
        inner = _decompress_prefix(comp, payload, complete=not truncated)
        q = 0
        while q + 9 <= len(inner):
            op, length = inner[q], struct.unpack_from("<Q", inner, q + 1)[0]
            if q + 9 + length > len(inner):
                break  # the cut went through this record: it and the rest of the chunk are lost
            yield from self._record(op, inner[q + 9 : q + 9 + length])
            q += 9 + length


def _mcap_string(buf: bytes, pos: int) -> tuple[str, int]:
    n = struct.unpack_from("<I", buf, pos)[0]
    return buf[pos + 4 : pos + 4 + n].decode("utf-8", "replace"), pos + 4 + n


def _decompress_prefix(compression: str, payload: bytes, complete: bool) -> bytes:
    """Decompress a chunk's records; for a cut-off chunk, as much of the prefix as decodes."""
    if compression == "":
        return payload
    try:
        if compression == "zstd":
            # lazy: optional: absent here is handled below
            import zstandard

            return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(payload))
        if compression == "lz4":
            # lazy: optional: absent here is handled below
            import lz4.frame

            return bytes(lz4.frame.LZ4FrameDecompressor().decompress(payload))
    except Exception as exc:
        if complete:
            log.debug("cannot decompress %s chunk: %s", compression, exc)
        return b""
    return b""
