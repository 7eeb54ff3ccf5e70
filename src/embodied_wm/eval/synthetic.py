"""Small synthetic rosbag2 files for tests and quick evaluator checks, without MuJoCo.

A coloured square moves at constant velocity (bouncing off the borders) over a smooth background, so
copy-last is exact on a static scene and linear extrapolation is nearly exact on a moving one. The bag
has the same topics and types as the simulator's recordings (camera, audio, tactile, joint states, the
end-effector command and the ground-truth affordance map), each optional, and can be written

* as MCAP or sqlite3 through rosbags' Writer (rosbag2 format version 8 or 9),
* as an old sqlite3 bag (format version 1..3: no QoS, no schema table) written directly, because the
  rosbags Writer only emits versions 8 and 9 and field robots still carry Foxy-era bags,
* with raw ``sensor_msgs/Image`` (rgb8 or bgr8) or ``sensor_msgs/CompressedImage`` (png/jpeg).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml
from mcap.writer import CompressionType
from mcap.writer import Writer as McapWriter
from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

from embodied_wm.errors import ConfigError
from embodied_wm.io.stamps import split_ns
from embodied_wm.io.typestore import typestore
from embodied_wm.observation import NS_PER_S

CAMERA_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
AUDIO_TOPIC = "/audio"
TACTILE_TOPIC = "/tactile"
JOINT_TOPIC = "/joint_states"
ACTION_TOPIC = "/cmd_vel_ee"
AFFORDANCE_TOPIC = "/ground_truth/affordance"
AUDIO_RATE = 16000
#: Frames the ground-truth affordance refers to (the simulator's 8-frame horizon).
GT_HORIZON = 8


@dataclass(frozen=True)
class SceneConfig:
    frames: int = 40
    res: int = 64
    fps: float = 10.0
    #: Square velocity in pixels per frame (x, y); (0, 0) gives a static scene.
    velocity: tuple[float, float] = (2.0, 1.0)
    square: int = 12
    seed: int = 0
    start_ns: int = 1_700_000_000 * NS_PER_S
    camera: bool = True
    #: "raw" (sensor_msgs/Image), "compressed" (sensor_msgs/CompressedImage) or "both".
    image_transport: str = "raw"
    encoding: str = "rgb8"
    compressed_format: str = "png"
    audio: bool = True
    tactile: bool = True
    joints: bool = True
    action: bool = True
    affordance: bool = True
    #: Another robot's layout: topic names, taxel grid and joint count (proprio = 2 x joints).
    camera_topic: str = CAMERA_TOPIC
    audio_topic: str = AUDIO_TOPIC
    tactile_topic: str = TACTILE_TOPIC
    joint_topic: str = JOINT_TOPIC
    action_topic: str = ACTION_TOPIC
    tactile_shape: tuple[int, int] = (5, 5)
    joint_count: int = 3

    @property
    def dt_ns(self) -> int:
        return round(NS_PER_S / self.fps)


def _background(res: int, seed: int) -> np.ndarray:
    """Smooth colour gradient plus low-frequency blobs: textured enough for optical flow."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:res, 0:res].astype(np.float32) / max(res - 1, 1)
    img = np.stack([60 + 80 * xx, 70 + 60 * yy, 90 + 40 * (1 - xx) * yy], axis=-1)
    coarse = rng.uniform(-25, 25, size=(8, 8, 3)).astype(np.float32)
    img += cv2.resize(coarse, (res, res), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 255).astype(np.uint8)


def square_positions(cfg: SceneConfig, n: int) -> np.ndarray:
    """Top-left corner (x, y) of the square for frames 0..n-1 (bouncing at the borders)."""
    lim = cfg.res - cfg.square
    pos = np.empty((n, 2), np.float64)
    p = np.array([cfg.res * 0.2, cfg.res * 0.3])
    v = np.array(cfg.velocity, np.float64)
    for i in range(n):
        pos[i] = p
        p = p + v
        for a in range(2):
            if p[a] < 0 or p[a] > lim:
                v[a] = -v[a]
                p[a] = min(max(p[a], 0.0), float(lim))
    return pos


def _square_mask(cfg: SceneConfig, xy: np.ndarray) -> np.ndarray:
    m = np.zeros((cfg.res, cfg.res), bool)
    x, y = round(xy[0]), round(xy[1])
    m[y : y + cfg.square, x : x + cfg.square] = True
    return m


def render_frames(cfg: SceneConfig) -> np.ndarray:
    """All camera frames, N x res x res x 3 uint8 RGB."""
    bg = _background(cfg.res, cfg.seed)
    pos = square_positions(cfg, cfg.frames)
    out = np.empty((cfg.frames, cfg.res, cfg.res, 3), np.uint8)
    for i in range(cfg.frames):
        f = bg.copy()
        f[_square_mask(cfg, pos[i])] = (230, 40, 30)
        out[i] = f
    return out


def affordance_maps(cfg: SceneConfig) -> np.ndarray:
    """N x 2 x res x res float32 ground truth: contact = where the square will be within the next
    GT_HORIZON frames but is not now; movable = the square's pixels now (it will move unless static)."""
    pos = square_positions(cfg, cfg.frames + GT_HORIZON)
    out = np.zeros((cfg.frames, 2, cfg.res, cfg.res), np.float32)
    moving = cfg.velocity != (0.0, 0.0)
    for i in range(cfg.frames):
        now = _square_mask(cfg, pos[i])
        future = np.zeros_like(now)
        for k in range(1, GT_HORIZON + 1):
            future |= _square_mask(cfg, pos[i + k])
        out[i, 0] = future & ~now
        out[i, 1] = now if moving else 0.0
    return out


def _header(store: Any, stamp_ns: int, frame_id: str) -> Any:
    time_t = store.types["builtin_interfaces/msg/Time"]
    header_t = store.types["std_msgs/msg/Header"]
    sec, nanosec = split_ns(stamp_ns)
    return header_t(stamp=time_t(sec=sec, nanosec=nanosec), frame_id=frame_id)


def _messages(cfg: SceneConfig) -> Iterator[tuple[str, str, int, Any]]:
    """(topic, msgtype, log time ns, message) in time order."""
    store = typestore()
    T = store.types
    frames = render_frames(cfg)
    gts = affordance_maps(cfg) if cfg.affordance else None
    rng = np.random.default_rng(cfg.seed + 1)
    vx, vy = cfg.velocity
    spf = round(AUDIO_RATE / cfg.fps)
    for i in range(cfg.frames):
        t = cfg.start_ns + i * cfg.dt_ns
        if cfg.audio:
            samples = (rng.normal(0, 300, spf)).astype("<i2")
            yield (
                cfg.audio_topic,
                "embodied_wm/msg/AudioFrame",
                t,
                T["embodied_wm/msg/AudioFrame"](
                    header=_header(store, t - cfg.dt_ns, "mic"),
                    sample_rate=AUDIO_RATE,
                    channels=1,
                    encoding="S16LE",
                    data=np.frombuffer(samples.tobytes(), np.uint8),
                ),
            )
        if cfg.tactile:
            rows, cols = cfg.tactile_shape
            vals = np.zeros(rows * cols, np.float32)
            vals[(rows * cols) // 2] = float(abs(vx) + abs(vy))
            yield (
                cfg.tactile_topic,
                "embodied_wm/msg/TactileArray",
                t,
                T["embodied_wm/msg/TactileArray"](
                    header=_header(store, t, "fingertip"),
                    sensor_model=f"synthetic_{rows}x{cols}",
                    rows=rows,
                    cols=cols,
                    values=vals,
                    unit="N",
                ),
            )
        if cfg.joints:
            nj = cfg.joint_count
            names = ["finger_x", "finger_y", "finger_z"] if nj == 3 else [f"joint_{j}" for j in range(nj)]
            pos = np.resize(np.array([0.01 * i * vx, 0.01 * i * vy, 0.05]), nj)
            vel = np.resize(np.array([vx, vy, 0.0]), nj)
            yield (
                cfg.joint_topic,
                "sensor_msgs/msg/JointState",
                t,
                T["sensor_msgs/msg/JointState"](
                    header=_header(store, t, ""),
                    name=names,
                    position=pos,
                    velocity=vel,
                    effort=np.zeros(0),
                ),
            )
        if cfg.action:
            vec3 = T["geometry_msgs/msg/Vector3"]
            twist = T["geometry_msgs/msg/Twist"](
                linear=vec3(x=vx, y=vy, z=0.0), angular=vec3(x=0.0, y=0.0, z=0.0)
            )
            yield (
                cfg.action_topic,
                "geometry_msgs/msg/TwistStamped",
                t,
                T["geometry_msgs/msg/TwistStamped"](header=_header(store, t, "base"), twist=twist),
            )
        if cfg.camera:
            rgb = frames[i]
            if cfg.image_transport in ("raw", "both"):
                img = rgb[..., ::-1] if cfg.encoding == "bgr8" else rgb
                yield (
                    cfg.camera_topic,
                    "sensor_msgs/msg/Image",
                    t,
                    T["sensor_msgs/msg/Image"](
                        header=_header(store, t, "camera_optical_frame"),
                        height=cfg.res,
                        width=cfg.res,
                        encoding=cfg.encoding,
                        is_bigendian=0,
                        step=cfg.res * 3,
                        data=np.ascontiguousarray(img).reshape(-1),
                    ),
                )
            if cfg.image_transport in ("compressed", "both"):
                ok, buf = cv2.imencode("." + cfg.compressed_format, rgb[..., ::-1])
                if not ok:
                    raise ConfigError(f"cannot encode {cfg.compressed_format}")
                yield (
                    COMPRESSED_TOPIC,
                    "sensor_msgs/msg/CompressedImage",
                    t,
                    T["sensor_msgs/msg/CompressedImage"](
                        header=_header(store, t, "camera_optical_frame"),
                        format=cfg.compressed_format,
                        data=buf.reshape(-1),
                    ),
                )
        if gts is not None:
            yield (
                AFFORDANCE_TOPIC,
                "embodied_wm/msg/AffordanceMap",
                t,
                T["embodied_wm/msg/AffordanceMap"](
                    header=_header(store, t, "camera_optical_frame"),
                    channels=["contact", "movable"],
                    height=cfg.res,
                    width=cfg.res,
                    data=gts[i].reshape(-1),
                    horizon=_duration(store, GT_HORIZON * cfg.dt_ns),
                    model_id="ground_truth",
                ),
            )


def _duration(store: Any, ns: int) -> Any:
    sec, nanosec = split_ns(ns)
    return store.types["builtin_interfaces/msg/Duration"](sec=sec, nanosec=nanosec)


def write_bag(
    out: str | Path,
    cfg: SceneConfig | None = None,
    storage: str = "mcap",
    version: int = 9,
    compression: str = "",
) -> Path:
    """Write a synthetic bag directory at ``out`` (must not exist). ``storage`` is "mcap" or "sqlite3";
    ``version`` 8/9 uses rosbags' Writer, 1..3 writes an old-format sqlite3 bag by hand. ``compression``
    "file" or "message" applies rosbag2's zstd compression (``ros2 bag record --compression-mode``)."""
    cfg = cfg or SceneConfig()
    out = Path(out)
    if version < 8:
        if storage != "sqlite3":
            raise ConfigError("old bag versions (< 8) exist only as sqlite3")
        return _write_old_sqlite(out, cfg, version)

    store = typestore()
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    conns: dict[str, Any] = {}
    writer = Writer(out, version=version, storage_plugin=plugin)  # type: ignore[arg-type]
    if compression:
        mode = {"file": CompressionMode.FILE, "message": CompressionMode.MESSAGE}[compression]
        writer.set_compression(mode, CompressionFormat.ZSTD)
    with writer:
        for topic, msgtype, t, msg in _messages(cfg):
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msgtype, typestore=store)
            writer.write(conns[topic], t, store.serialize_cdr(msg, msgtype))
    return out


def _write_old_sqlite(out: Path, cfg: SceneConfig, version: int) -> Path:
    """rosbag2 format 1..3 as Dashing/Eloquent wrote it: topics(id, name, type, serialization_format),
    messages(id, topic_id, timestamp, data), no schema table, no QoS in metadata.yaml."""
    store = typestore()
    out.mkdir(parents=True)
    db_name = f"{out.name}_0.db3"
    con = sqlite3.connect(out / db_name)
    con.execute(
        "CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,"
        " serialization_format TEXT NOT NULL)"
    )
    con.execute(
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL,"
        " timestamp INTEGER NOT NULL, data BLOB NOT NULL)"
    )
    ids: dict[str, tuple[int, str]] = {}
    counts: dict[str, int] = {}
    first = last = None
    for topic, msgtype, t, msg in _messages(cfg):
        if topic not in ids:
            ids[topic] = (len(ids) + 1, msgtype)
            con.execute("INSERT INTO topics VALUES(?, ?, ?, ?)", (ids[topic][0], topic, msgtype, "cdr"))
        con.execute(
            "INSERT INTO messages(topic_id, timestamp, data) VALUES(?, ?, ?)",
            (ids[topic][0], t, bytes(store.serialize_cdr(msg, msgtype))),
        )
        counts[topic] = counts.get(topic, 0) + 1
        first = t if first is None else first
        last = t
    con.commit()
    con.close()
    info: dict[str, Any] = {
        "version": version,
        "storage_identifier": "sqlite3",
        # Versions < 4 stored paths relative to the bag's parent directory.
        "relative_file_paths": [f"{out.name}/{db_name}"],
        "duration": {"nanoseconds": (last or 0) - (first or 0)},
        "starting_time": {"nanoseconds_since_epoch": first or 0},
        "message_count": sum(counts.values()),
        "topics_with_message_count": [
            {
                "topic_metadata": {"name": tp, "type": mt, "serialization_format": "cdr"},
                "message_count": counts[tp],
            }
            for tp, (_, mt) in ids.items()
        ],
    }
    if version >= 3:
        info["compression_format"] = ""
        info["compression_mode"] = ""
    (out / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}, sort_keys=False))
    return out


def write_mcap_file(
    out: str | Path, cfg: SceneConfig | None = None, compression: str = "zstd", chunk_size: int = 64 * 1024
) -> Path:
    """A bare .mcap file the way rosbag2_storage_mcap (``ros2 bag record``) writes one: ros2msg schemas,
    CDR messages, zstd/lz4-compressed chunks, message indexes and a summary. Written with the ``mcap``
    package, so it also checks that we read files other writers than rosbags produce."""

    cfg = cfg or SceneConfig()
    store = typestore()
    out = Path(out)
    comp = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "": CompressionType.NONE}[compression]
    schemas: dict[str, int] = {}
    channels: dict[str, int] = {}
    with out.open("wb") as fh:
        writer = McapWriter(fh, chunk_size=chunk_size, compression=comp)
        writer.start(profile="ros2", library="embodied_wm synthetic")
        for topic, msgtype, t, msg in _messages(cfg):
            if msgtype not in schemas:
                text, _ = store.generate_msgdef(msgtype, ros_version=2)
                schemas[msgtype] = writer.register_schema(
                    name=msgtype, encoding="ros2msg", data=text.encode()
                )
            if topic not in channels:
                channels[topic] = writer.register_channel(
                    topic=topic, message_encoding="cdr", schema_id=schemas[msgtype]
                )
            writer.add_message(
                channels[topic], log_time=t, data=bytes(store.serialize_cdr(msg, msgtype)), publish_time=t
            )
        writer.finish()
    return out
