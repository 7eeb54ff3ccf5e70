"""Training data from rosbag2 files: per-episode arrays decoded through the live node's own path.

Every bag is read with ``data.bag.iter_bag_messages`` and fed, message by message in log-time order,
into ``pipeline.Pipeline(backend=None)`` exactly as the perception node does, so training sees the same
decode, validation and alignment as inference. Each emitted Observation is turned into cached per-frame
arrays by ``model.preprocess.raw_frame`` (the function the runtime also uses). Ground-truth affordance
maps (``embodied_wm/msg/AffordanceMap``, not a sensor topic) are decoded here and matched to the frame
with the same stamp.

Decoded episodes are cached as ``.npz`` keyed by (bag path, size, mtime, preprocessing parameters), so a
second training run skips decoding. ``WindowDataset`` pairs frame t with the frames at t + k·dt (k = 1..K,
cut by stamp at the model's dt: ``train.windows``), the commands in force at t + (k-1)·dt and the
affordance ground truth at t.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from torch.utils.data import Dataset
from tqdm import tqdm

from embodied_wm.errors import ConfigError, InvalidDataError
from embodied_wm.io.bag import BagError, bag_info, bag_paths
from embodied_wm.io.stamps import to_ns
from embodied_wm.model.config import ModelConfig
from embodied_wm.model.preprocess import RAW_KEYS, modality_spec, normalize, normalize_stats, raw_frame
from embodied_wm.observation import MODALITIES, Observation
from embodied_wm.pipeline import Pipeline
from embodied_wm.pipeline.sources import feed_bag, select_inputs
from embodied_wm.sensing.rate import measure_rate
from embodied_wm.train.windows import stamp_windows

log = logging.getLogger(__name__)

AFFORDANCE_MSGTYPE = "embodied_wm/msg/AffordanceMap"
#: 3: episodes carry the messages the Pipeline rejected (``Episode.rejected``) besides object masks.
CACHE_VERSION = 3
SEGMENTATION_TOPIC = "/ground_truth/segmentation"
#: Segmentation labels from this one up are objects (sim.scene.FIRST_OBJECT_LABEL; bags of other
#: generators without a segmentation topic simply have no object masks).
FIRST_OBJECT_LABEL = 3


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "embodied_wm" / "episodes"


@dataclass
class Episode:
    """One bag's frames. ``raw`` holds stacked ``preprocess.RAW_KEYS`` arrays ([T, ...]); affordance is
    uint8 [T, C, S, S] (probability * 255) with ``aff_valid`` [T] saying which frames had ground truth."""

    source: str
    stamps_ns: np.ndarray
    raw: dict[str, np.ndarray]
    affordance: np.ndarray
    aff_valid: np.ndarray
    channels: tuple[str, ...]
    #: uint8 [T, S, S]: 1 where the simulator's segmentation shows an object (not table or finger);
    #: all zero (and ``obj_valid`` False) for bags without a segmentation topic.
    objmask: np.ndarray | None = None
    obj_valid: np.ndarray | None = None
    #: Messages the Pipeline rejected while decoding, per "kind:reason", and the newest reason text of
    #: each (e.g. the two shapes of a tactile array that does not fit the model's tactile_shape).
    rejected: dict[str, int] = field(default_factory=dict)
    rejected_detail: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.stamps_ns.shape[0])


def _cache_key(path: Path, cfg: ModelConfig) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    sig = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    params = {
        k: cfg.to_dict()[k]
        for k in ("image_size", "audio_sample_rate", "audio_window_s", "n_mels", "n_fft", "hop_length",
                  "tactile_shape", "proprio_dim", "action_dim", "affordance_channels")
    }
    blob = json.dumps([CACHE_VERSION, str(path.resolve()), sig, params], sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def _decode_affordance(msg: Any, size: int, channels: Sequence[str]) -> np.ndarray:
    """AffordanceMap -> uint8 [len(channels), size, size]; channels absent from the message are NaN-free
    zeros (the caller marks the frame invalid if any wanted channel is missing)."""
    c, h, w = len(msg.channels), int(msg.height), int(msg.width)
    data = np.asarray(msg.data, np.float32)
    if data.size != c * h * w:
        raise InvalidDataError(f"AffordanceMap data has {data.size} values, expected {c}x{h}x{w}")
    data = np.clip(data.reshape(c, h, w), 0.0, 1.0)
    names = list(msg.channels)
    out = np.zeros((len(channels), size, size), np.uint8)
    for i, name in enumerate(channels):
        if name not in names:
            raise KeyError(name)
        ch = data[names.index(name)]
        if (h, w) != (size, size):
            ch = cv2.resize(ch, (size, size), interpolation=cv2.INTER_AREA)
        out[i] = np.round(ch * 255.0).astype(np.uint8)
    return out


def decode_episode(path: str | Path, cfg: ModelConfig) -> Episode:
    """Read one bag through Pipeline(backend=None) (the node's path) into an Episode (no cache). Its inputs
    are pipeline.sources.select_inputs' (the same topics the offline evaluation replays)."""
    path = Path(path)
    info = bag_info(path)
    inputs = select_inputs(info)
    aff_topics = [t for t, ty in info.topics.items() if ty == AFFORDANCE_MSGTYPE]
    seg_topics = [SEGMENTATION_TOPIC] if SEGMENTATION_TOPIC in info.topics else []

    pipe = Pipeline(backend=None, spec=modality_spec(cfg))
    frames: list[dict[str, np.ndarray]] = []
    stamps: list[int] = []
    aff: dict[int, np.ndarray] = {}
    seg: dict[int, np.ndarray] = {}
    n_ch = len(cfg.affordance_channels)

    def take(observations: Iterable[Observation]) -> None:
        for obs in observations:
            if obs.image is None:
                continue  # a frame without a camera image cannot be a training sample
            frames.append(raw_frame(obs, cfg))
            stamps.append(int(obs.stamp_ns))

    for item in feed_bag(path, inputs, pipe, also=[*aff_topics, *seg_topics]):
        if isinstance(item, Observation):
            take([item])
            continue
        if item.topic in seg_topics:
            labels = np.asarray(item.msg.data, np.uint8).reshape(int(item.msg.height), int(item.msg.width))
            mask = (labels >= FIRST_OBJECT_LABEL).astype(np.uint8)
            if mask.shape != (cfg.image_size, cfg.image_size):
                size = (cfg.image_size, cfg.image_size)
                mask = np.asarray(cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST), np.uint8)
            seg[to_ns(item.msg.header.stamp)] = mask
            continue
        st = item.msg.header.stamp
        try:
            aff[to_ns(st)] = _decode_affordance(
                item.msg, cfg.image_size, cfg.affordance_channels
            )
        except (KeyError, ValueError) as exc:
            log.warning("%s: skipping affordance map: %s", path, exc)
    if not frames:
        raise BagError(f"{path}: no complete observations decoded")
    order = np.argsort(np.asarray(stamps), kind="stable")
    stamps_arr = np.asarray(stamps, np.int64)[order]
    raw = {k: np.stack([frames[i][k] for i in order]) for k in RAW_KEYS}
    s = cfg.image_size
    aff_arr = np.zeros((len(order), n_ch, s, s), np.uint8)
    valid = np.zeros(len(order), bool)
    if aff:
        keys = np.asarray(sorted(aff), np.int64)
        # Half a camera period (half-open), whatever the model's dt: a map belongs to one camera frame.
        rate = measure_rate(stamps_arr)
        tol = (rate.period_ns if rate is not None else cfg.dt_ns) / 2
        for i, st in enumerate(stamps_arr):
            j = int(np.clip(np.searchsorted(keys, st), 1, len(keys) - 1)) if len(keys) > 1 else 0
            cand = [j - 1, j] if len(keys) > 1 else [0]
            best = min(cand, key=lambda c: abs(int(keys[c]) - int(st)))
            if abs(int(keys[best]) - int(st)) < tol:
                aff_arr[i], valid[i] = aff[int(keys[best])], True
    objmask = np.zeros((len(order), s, s), np.uint8)
    obj_valid = np.zeros(len(order), bool)
    for i, st in enumerate(stamps_arr):
        if int(st) in seg:  # the simulator stamps segmentation with the camera frame's stamp
            objmask[i], obj_valid[i] = seg[int(st)], True
    return Episode(
        str(path), stamps_arr, raw, aff_arr, valid, tuple(cfg.affordance_channels), objmask, obj_valid,
        rejected=dict(pipe.stats.invalid), rejected_detail=dict(pipe.stats.invalid_detail),
    )


def load_episode(path: str | Path, cfg: ModelConfig, cache_dir: str | Path | None = None) -> Episode:
    """``decode_episode`` with an .npz cache (``cache_dir=None``: the user cache; '' disables caching)."""
    path = Path(path)
    if cache_dir == "":
        return decode_episode(path, cfg)
    cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    f = cdir / f"{path.name}-{_cache_key(path, cfg)}.npz"
    if f.is_file():
        try:
            with np.load(f, allow_pickle=False) as z:
                raw = {k: z[k] for k in RAW_KEYS}
                rejected = json.loads(str(z["rejected"]))
                return Episode(
                    str(z["source"]), z["stamps_ns"], raw, z["affordance"], z["aff_valid"],
                    tuple(str(c) for c in z["channels"]), z["objmask"], z["obj_valid"],
                    rejected=rejected["counts"], rejected_detail=rejected["detail"],
                )
        except (OSError, ValueError, KeyError) as exc:
            log.warning("%s: unreadable cache entry (%s), decoding again", f, exc)
    ep = decode_episode(path, cfg)
    cdir.mkdir(parents=True, exist_ok=True)
    tmp = f.with_name(f.name + f".{os.getpid()}.tmp.npz")
    arrays: dict[str, np.ndarray] = {
        "source": np.asarray(ep.source), "stamps_ns": ep.stamps_ns, "affordance": ep.affordance,
        "aff_valid": ep.aff_valid, "channels": np.asarray(ep.channels), **ep.raw,
        "objmask": ep.objmask if ep.objmask is not None else np.zeros((len(ep), 0, 0), np.uint8),
        "obj_valid": ep.obj_valid if ep.obj_valid is not None else np.zeros(len(ep), bool),
        "rejected": np.asarray(json.dumps({"counts": ep.rejected, "detail": ep.rejected_detail})),
    }
    np.savez(tmp, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds too narrowly
    os.replace(tmp, f)
    return ep


def load_episodes(
    inputs: Sequence[str | Path],
    cfg: ModelConfig,
    cache_dir: str | Path | None = None,
    progress: bool = False,
) -> list[Episode]:
    """All bags under ``inputs`` (bag files/dirs, or dirs of bags), sorted by path."""
    paths = bag_paths(inputs)
    it: Iterable[Path] = paths
    if progress:
        it = tqdm(paths, desc="decode bags", unit="bag")
    return [load_episode(p, cfg, cache_dir) for p in it]


def split_episodes(episodes: Sequence[Episode], val_fraction: float, seed: int = 0) -> tuple[list, list]:
    """Held-out split by episode (never by frame: neighbouring frames are near-duplicates)."""
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError("val_fraction must be in [0, 1)")
    n_val = round(len(episodes) * val_fraction)
    if val_fraction > 0 and len(episodes) > 1:
        n_val = max(1, n_val)
    order = np.random.default_rng(seed).permutation(len(episodes))
    val = {int(i) for i in order[:n_val]}
    train = [e for i, e in enumerate(episodes) if i not in val]
    return train, [e for i, e in enumerate(episodes) if i in val]


def stats_from_episodes(episodes: Sequence[Episode]) -> dict[str, Any]:
    """Normalisation statistics (ModelConfig fields) measured on these episodes."""
    raw = {k: np.concatenate([e.raw[k] for e in episodes]) for k in RAW_KEYS}
    return normalize_stats(raw)


class WindowDataset(Dataset):
    """Samples (frame t, frames t+1..t+K, actions t..t+K-1, affordance GT at t), t over all episodes.

    ``__getitem__`` returns numpy arrays (no batch axis):
      image/prev_image [3,S,S], audio_mel [1,M,F], tactile [1,r,c], proprio [P], action [A], mask [5]
      (the encoder inputs of frame t), future [K,S,S,3] uint8, actions [K,A] raw, affordance [C,S,S]
      float in [0,1], aff_valid () float, and with ``with_future_inputs`` the encoder inputs of frames
      t+1..t+K stacked as ``future_<name>`` [K,...] (latent-consistency targets).
    Targets are the frames at t + k·dt by stamp (``train.windows``). A frame's prev is the previous camera
    frame when it is at most 1.5 camera periods older, else the frame itself (as at runtime, where the
    backend's previous observation is the previous camera frame whatever the model's dt).
    With ``teacher_flow``, ``flow`` [K,2,S,S] is ``teacher_flow(frame t, frames t+1..t+K)``.
    ``objmask`` [K,1,S,S] float is 1 where an object is at t or t+k (segmentation ground truth; zeros
    without it): the frame and flow losses weight moving object pixels up, because the finger dominates
    the moving pixels and planning is about the objects.
    ``weights`` [len] are per-window sampling weights: windows in which an object moves or the finger
    touches something are rare and are what planning needs (see ``window_weights``).
    """

    def __init__(
        self,
        episodes: Sequence[Episode],
        cfg: ModelConfig,
        with_future_inputs: bool = True,
        teacher_flow: bool = False,
    ) -> None:
        self.cfg = cfg
        self.k = cfg.horizon
        self.with_future = with_future_inputs
        self.teacher_flow = teacher_flow
        self.eps = []
        self.index: list[tuple[int, int]] = []
        #: Per episode, [T, K] frame indices of t + k·dt for every window start t (-1 elsewhere).
        self.future_index: list[np.ndarray] = []
        for ei, ep in enumerate(episodes):
            norm = normalize(ep.raw, cfg)
            # Windows are cut by stamp at the model's dt (train.windows), not as K consecutive frames.
            win = stamp_windows(ep.stamps_ns, cfg.dt_ns, self.k, source=ep.source)
            self.eps.append((ep, norm, win.prev))
            fut = np.full((len(ep), self.k), -1, np.int64)
            fut[win.anchors] = win.future
            self.future_index.append(fut)
            self.index.extend((ei, int(t)) for t in win.anchors)
        self.weights = np.asarray([self._window_weight(ei, t) for ei, t in self.index], np.float64)

    #: Extra sampling weight of a window in which an object moves / the finger is in contact.
    OBJECT_MOTION_WEIGHT = 3.0
    CONTACT_WEIGHT = 1.0
    #: Object pixels that must change between t and t+K for "an object moves" (64 px: ~1 % of the image).
    MOTION_PIXELS = 12

    def _window_weight(self, ei: int, t: int) -> float:
        ep = self.eps[ei][0]
        frames = np.concatenate([[t], self.future_index[ei][t]])  # t and its targets at t + k·dt
        last = int(frames[-1])
        w = 1.0
        if ep.objmask is not None and ep.obj_valid is not None and ep.objmask.shape[1:] != (0, 0):
            if ep.obj_valid[t] and ep.obj_valid[last]:
                changed = int(np.count_nonzero(ep.objmask[t] != ep.objmask[last]))
                if changed >= self.MOTION_PIXELS:
                    w += self.OBJECT_MOTION_WEIGHT
        tact = ep.raw["tactile"][frames]
        tmask = ep.raw["mask"][frames, MODALITIES.index("tactile")] > 0
        if tmask.any() and float(np.abs(tact[tmask]).max()) > 1e-3:
            w += self.CONTACT_WEIGHT
        return w

    def __len__(self) -> int:
        return len(self.index)

    def _enc(
        self, norm: dict[str, np.ndarray], prev_idx: np.ndarray, t: np.ndarray | int
    ) -> dict[str, np.ndarray]:
        def chw(img: np.ndarray) -> np.ndarray:
            return np.moveaxis(img, -1, -3).astype(np.float32) / np.float32(255.0)

        return {
            "image": chw(norm["image"][t]),
            "prev_image": chw(norm["image"][prev_idx[t]]),
            "audio_mel": norm["audio_mel"][t][..., None, :, :],
            "tactile": norm["tactile"][t][..., None, :, :],
            "proprio": norm["proprio"][t],
            "action": norm["action"][t],
            "mask": norm["mask"][t],
        }

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        ei, t = self.index[i]
        ep, norm, prev_idx = self.eps[ei]
        k = self.k
        out = self._enc(norm, prev_idx, t)
        fut_idx = self.future_index[ei][t]
        out["future"] = ep.raw["image"][fut_idx]
        # The command in force at t + j·dt drives step j+1 (frames t, then the first K-1 targets).
        act_idx = np.concatenate([[t], fut_idx[:-1]])
        acts = ep.raw["action"][act_idx].astype(np.float32)
        # A missing action reading means "unknown", the best guess is the last known command.
        amask = ep.raw["mask"][act_idx, MODALITIES.index("action")] > 0
        for j in range(1, k):
            if not amask[j]:
                acts[j] = acts[j - 1]
        out["actions"] = acts
        out["affordance"] = ep.affordance[t].astype(np.float32) / np.float32(255.0)
        out["aff_valid"] = np.array(1.0 if ep.aff_valid[t] else 0.0, np.float32)
        if self.teacher_flow:
            out["flow"] = teacher_flow(ep.raw["image"][t], out["future"])
        s = self.cfg.image_size
        if ep.objmask is not None and ep.objmask.shape[1:] == (s, s):
            obj = np.maximum(ep.objmask[t][None], ep.objmask[fut_idx])
        else:
            obj = np.zeros((k, s, s), np.uint8)
        out["objmask"] = obj[:, None].astype(np.float32)
        if self.with_future:
            fut = self._enc(norm, prev_idx, fut_idx)
            out.update({f"future_{n}": v for n, v in fut.items()})
        return {n: v if v.ndim == 0 else np.ascontiguousarray(v) for n, v in out.items()}


#: Dense optical flow parameters of the training teacher (Farneback). Chosen on held-out sim frames by how
#: well warping frame t with the flow to t+k reproduces the moving pixels of t+k (14.7 dB vs 12.1 dB for
#: the linear baseline's settings): a 4-level pyramid reaches the ~20 px an object moves over the
#: horizon, the small Gaussian window keeps thin parts (the finger) from being smoothed away.
FLOW_PARAMS: dict[str, Any] = {
    "pyr_scale": 0.5, "levels": 4, "winsize": 11, "iterations": 5, "poly_n": 7, "poly_sigma": 1.5,
    "flags": cv2.OPTFLOW_FARNEBACK_GAUSSIAN,
}


def teacher_flow(current: np.ndarray, futures: np.ndarray) -> np.ndarray:
    """Backward flow of each future frame to ``current`` ([K,2,S,S] float32, grid_sample units: x then
    y, 2 = the image side): futures[k](x) ~ current(x + flow[k](x)). Farneback, 64 px: ~1 ms per frame."""
    s = current.shape[0]
    cur = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
    out = np.empty((len(futures), 2, s, s), np.float32)
    for k, fut in enumerate(futures):
        gray = cv2.cvtColor(fut, cv2.COLOR_RGB2GRAY)
        f = cv2.calcOpticalFlowFarneback(gray, cur, None, **FLOW_PARAMS)  # type: ignore[call-overload]
        out[k] = np.moveaxis(f, -1, 0) * (2.0 / s)
    return out
