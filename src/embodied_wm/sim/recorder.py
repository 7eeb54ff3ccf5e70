"""Recording simulated episodes to rosbag2 (MCAP), one bag per episode, byte-identical per seed.

Determinism: episode i is seeded from (seed, i); every timestamp is sim time from a fixed epoch
(``episode.EPOCH_NS`` + i * ``EPISODE_OFFSET_NS``); rosbags' MCAP writer embeds no wall-clock time
(its header carries only the library name and version, "rosbags-<version>", and metadata.yaml holds
message times only), so the same seed, frames and resolution give the same bytes as long as the
rosbags, MuJoCo and Mesa versions are the same.

Ground truth looks K frames ahead, so the recorder simulates K extra frames past the requested count
(never written) and writes each frame, sensors and ground truth together, once its future is known;
messages are therefore written in time order.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from tqdm import tqdm

from embodied_wm.errors import ConfigError
from embodied_wm.sim import ground_truth as gt
from embodied_wm.sim import messages as mk
from embodied_wm.sim.episode import Episode, FrameData
from embodied_wm.sim.scene import FIRST_OBJECT_LABEL, LABEL_BACKGROUND, LABEL_FINGER, LABEL_TABLE

_TIME0 = QosTime(0, 0)
#: /tf_static is latched (transient local) so a player replays it to late subscribers.
TF_STATIC_QOS = Qos(
    QosHistory.KEEP_LAST,
    1,
    QosReliability.RELIABLE,
    QosDurability.TRANSIENT_LOCAL,
    _TIME0,
    _TIME0,
    QosLiveliness.AUTOMATIC,
    _TIME0,
    False,
)


@dataclass(frozen=True)
class RecordConfig:
    frames: int = 100
    seed: int = 0
    res: int = 64
    randomize: bool = True
    dt: float = 0.1
    ground_truth: bool = True
    hidden_physics: bool = False

    def validate(self) -> None:
        if self.frames < 1:
            raise ConfigError(f"frames must be >= 1, got {self.frames}")
        if not 8 <= self.res <= 1024:
            raise ConfigError(f"res must be in [8, 1024], got {self.res}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.hidden_physics and not self.randomize:
            raise ConfigError("--hidden-physics needs a randomized scene (drop --no-randomize)")


def bag_name(episode: int) -> str:
    return f"episode_{episode:05d}"


def _scene_json(ep: Episode) -> str:
    return json.dumps(
        {
            "objects": [dict(asdict(o), label=FIRST_OBJECT_LABEL + k) for k, o in enumerate(ep.spec.objects)],
            "camera": asdict(ep.spec.camera),
            "labels": {
                "background": LABEL_BACKGROUND,
                "table": LABEL_TABLE,
                "finger": LABEL_FINGER,
                "first_object": FIRST_OBJECT_LABEL,
            },
        },
        sort_keys=True,
    )


def record_episode(
    out_dir: Path | str, episode: int, cfg: RecordConfig, on_frame: Callable[[], None] | None = None
) -> Path:
    """Simulate and write one episode's bag to ``out_dir/episode_NNNNN``; returns its path.

    The bag is written under a hidden temporary name and renamed when complete, so a directory
    named ``episode_NNNNN`` is always a finished bag.
    """
    cfg.validate()
    out_dir = Path(out_dir)
    final = out_dir / bag_name(episode)
    if final.exists():
        raise FileExistsError(f"{final} exists already; remove it or record into another directory")
    tmp_parent = out_dir / f".tmp-{bag_name(episode)}"
    shutil.rmtree(tmp_parent, ignore_errors=True)
    tmp_parent.mkdir(parents=True)
    ids = mk.FrameIds()
    kit = mk.RosbagsKit()
    store = kit.store
    ep = Episode(
        cfg.seed, episode, cfg.res, cfg.randomize, cfg.dt, ground_truth=cfg.ground_truth,
        hidden_physics=cfg.hidden_physics,
    )
    writer = Writer(tmp_parent / final.name, version=9, storage_plugin=StoragePlugin.MCAP)
    try:
        for key, val in (
            ("seed", str(cfg.seed)),
            ("episode", str(episode)),
            ("resolution", str(cfg.res)),
            ("randomize", str(cfg.randomize).lower()),
            ("hidden_physics", str(cfg.hidden_physics).lower()),
            ("dt_s", repr(cfg.dt)),
            ("scene", _scene_json(ep)),
            ("generator", "embodied_wm.sim"),
        ):
            writer.set_custom_data(f"embodied_wm.{key}", val)
        writer.open()
        keys = [k for k in mk.TOPICS if cfg.ground_truth or k not in mk.GROUND_TRUTH_KEYS]
        conns = {
            k: writer.add_connection(
                mk.TOPICS[k],
                mk.MSGTYPES[k],
                typestore=store,
                offered_qos_profiles=[TF_STATIC_QOS] if k == "tf_static" else [],
            )
            for k in keys
        }

        def put(key: str, msg: object, log_ns: int) -> None:
            writer.write(conns[key], log_ns, store.serialize_cdr(msg, mk.MSGTYPES[key]))

        cam_pos, cam_rot = ep.sim.camera_pose()
        put("tf_static", mk.tf_static(kit, ep.stamp_ns, ids, cam_pos, cam_rot), ep.stamp_ns)
        intr = ep.sim.intrinsics()
        horizon = gt.HORIZON if cfg.ground_truth else 0
        buf: deque[FrameData] = deque()

        def emit(f: FrameData, future: list[FrameData]) -> None:
            for key, msg, log_ns in mk.sensor_messages(kit, f, ids, cfg.res, intr):
                put(key, msg, log_ns)
            if cfg.ground_truth:
                assert f.seg is not None
                maps = gt.affordance(
                    f.seg,
                    f.object_poses,
                    [x.object_poses for x in future],
                    [x.interval_contacts for x in future],
                    ep.spec.objects,
                    ep.sim.project,
                    intr[0],
                )
                uv, _ = ep.sim.project(f.tip_contacts) if len(f.tip_contacts) else (np.zeros((0, 2)), None)
                for key, msg, log_ns in mk.ground_truth_messages(kit, f, ids, maps, ep.dt_ns, uv):
                    put(key, msg, log_ns)
            if on_frame is not None:
                on_frame()

        for _ in range(cfg.frames + horizon):
            f = ep.observe()
            f.action = ep.step(ep.scripted_action())
            buf.append(f)
            if len(buf) > horizon:
                first = buf.popleft()
                emit(first, list(buf))
        writer.close()
    except BaseException:
        writer.abort()  # closes the storage file without an index; the temp dir goes below
        shutil.rmtree(tmp_parent, ignore_errors=True)
        raise
    finally:
        ep.close()
    (tmp_parent / final.name).rename(final)
    tmp_parent.rmdir()
    return final


def _worker(args: tuple[str, int, RecordConfig]) -> tuple[int, str]:
    out_dir, episode, cfg = args
    return episode, str(record_episode(out_dir, episode, cfg))


def record(
    episodes: int,
    frames: int,
    seed: int = 0,
    res: int = 64,
    out_dir: Path | str = "out/sim",
    workers: int = 1,
    randomize: bool = True,
    progress: bool = True,
    ground_truth: bool = True,
    first_episode: int = 0,
    skip_existing: bool = False,
    hidden_physics: bool = False,
) -> list[Path]:
    """Record ``episodes`` bags of ``frames`` frames into ``out_dir``; returns the bag paths in episode
    order. Episodes run in ``workers`` processes (spawned, so each has its own GL context).
    With ``skip_existing`` an episode whose bag directory exists is left alone (resume a set); the
    existing bag is trusted, not checked against the other arguments."""
    if episodes < 1:
        raise ConfigError(f"episodes must be >= 1, got {episodes}")
    if workers < 1:
        raise ConfigError(f"workers must be >= 1, got {workers}")
    cfg = RecordConfig(
        frames=frames, seed=seed, res=res, randomize=randomize, ground_truth=ground_truth,
        hidden_physics=hidden_physics,
    )
    cfg.validate()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = list(range(first_episode, first_episode + episodes))
    results: dict[int, Path] = {}
    if skip_existing:
        results = {i: out / bag_name(i) for i in ids if (out / bag_name(i)).exists()}
    todo = [i for i in ids if i not in results]
    bar = tqdm(total=len(todo) * frames, unit="frame", desc="sim record", disable=not progress)
    try:
        if workers == 1 or len(todo) <= 1:
            for i in todo:
                results[i] = record_episode(out, i, cfg, on_frame=lambda: bar.update(1))
        else:
            ctx = mp.get_context("spawn")
            with ctx.Pool(min(workers, len(todo))) as pool:
                it: Iterable[tuple[int, str]] = pool.imap_unordered(
                    _worker, [(str(out), i, cfg) for i in todo]
                )
                for i, path in it:
                    results[i] = Path(path)
                    bar.update(frames)
    finally:
        bar.close()
    return [results[i] for i in ids]


def benchmark(frames: int = 200, res: int = 64, seed: int = 0) -> float:
    """Complete frames per second of one recording process: physics, rendering (RGB, segmentation,
    depth), audio, ground truth, serialization and bag writing, scene build included."""
    with tempfile.TemporaryDirectory(prefix="ewm-bench-") as tmp:
        t0 = time.perf_counter()
        record_episode(tmp, 0, RecordConfig(frames=frames, seed=seed, res=res))
        return frames / (time.perf_counter() - t0)
