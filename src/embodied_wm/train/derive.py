"""What the data fixes, read from the bags: tactile grid, proprio length, action length, audio rate and
camera resolution, so ``train --data BAGS --config tiny`` builds a model for the user's robot.

A named config (tiny, base) is a template: the fields the data fixes are taken from the bags and the
changes are printed and recorded (checkpoint metadata and metrics.json). An explicit config (a JSON file,
or a checkpoint under --init/--resume) is a contract: a bag whose messages do not fit its shapes is one
``DataSpecError`` listing every mismatch, before any training starts. Rates and sizes that the pipeline
converts (audio is resampled, images are resized) are noted, never an error.

Each bag is scanned for the first decodable message of each sensor topic it would be trained on
(``pipeline.sources.select_inputs``, what training and eval read), decoded with the sensing decoders
the Pipeline uses.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from embodied_wm.errors import InvalidDataError
from embodied_wm.io.bag import bag_info, bag_paths, iter_bag_messages
from embodied_wm.model.config import CONFIG_DIR, ModelConfig
from embodied_wm.pipeline.sources import select_inputs
from embodied_wm.sensing.audio import decode_audio
from embodied_wm.sensing.errors import SensingError
from embodied_wm.sensing.image import compressed_to_rgb, image_to_rgb
from embodied_wm.sensing.proprio import decode_joint_state, decode_twist
from embodied_wm.sensing.tactile import decode_float32_multiarray, decode_tactile

log = logging.getLogger(__name__)

#: Messages per topic tried before a topic counts as undecodable.
SCAN_TRIES = 20
#: The fields a bag fixes and that must match an explicit config exactly.
SHAPE_FIELDS: tuple[str, ...] = ("tactile_shape", "proprio_dim", "action_dim")
#: Pipeline kind -> the sensor it measures (one topic per sensor).
_SENSOR = {
    "image": "camera", "compressed_image": "camera", "audio": "audio", "tactile": "tactile",
    "tactile_f32": "tactile", "joint_state": "proprio", "twist": "action",
}


class DataSpecError(InvalidDataError):
    """The bags disagree with each other or with an explicit config (reported as one line)."""


@dataclass
class DataSpec:
    """What the bags fix. A value is None when no bag has that sensor; ``origin`` says which bag and
    topic each value came from, ``topics`` the topic of each sensor (first bag)."""

    image_hw: tuple[int, int] | None = None
    tactile_shape: tuple[int, int] | None = None
    proprio_dim: int | None = None
    action_dim: int | None = None
    audio_sample_rate: int | None = None
    topics: dict[str, str] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "image_hw": list(self.image_hw) if self.image_hw else None,
            "tactile_shape": list(self.tactile_shape) if self.tactile_shape else None,
            "proprio_dim": self.proprio_dim,
            "action_dim": self.action_dim,
            "audio_sample_rate": self.audio_sample_rate,
            "topics": dict(self.topics),
        }


def _value(kind: str, msg: Any, bag_stamp_ns: int) -> tuple[str, Any]:
    """(DataSpec field, value) of one message; SensingError when it does not decode."""
    if kind == "image":
        return "image_hw", tuple(image_to_rgb(msg).shape[:2])
    if kind == "compressed_image":
        return "image_hw", tuple(compressed_to_rgb(msg).shape[:2])
    if kind == "tactile":
        return "tactile_shape", tuple(decode_tactile(msg)[1].shape)
    if kind == "tactile_f32":
        values = decode_float32_multiarray(msg, bag_stamp_ns)[1]
        # An unshaped vector of N taxels is a 1 x N strip (what the Pipeline then reshapes it to).
        shape = values.shape if values.ndim == 2 else (1, int(values.size))
        return "tactile_shape", tuple(int(x) for x in shape)
    if kind == "joint_state":
        return "proprio_dim", int(decode_joint_state(msg)[1].size)
    if kind == "twist":
        return "action_dim", int(decode_twist(msg)[1].size)
    if kind == "audio":
        info = getattr(getattr(msg, "audio", None), "info", None)  # audio_common's AudioStamped
        native = int(info.rate) if info is not None else int(msg.sample_rate)
        decode_audio(msg, native)  # raises on an undecodable frame
        return "audio_sample_rate", native
    raise ValueError(f"unknown kind {kind!r}")


def scan_bag(path: Path) -> DataSpec:
    """The DataSpec of one bag (first decodable message of each training topic)."""
    kinds = select_inputs(bag_info(path))
    spec = DataSpec()
    tries: dict[str, int] = {}
    pending = set(kinds)
    for m in iter_bag_messages(path, topics=list(kinds)):
        if m.topic not in pending:
            continue
        kind = kinds[m.topic]
        try:
            name, value = _value(kind, m.msg, m.stamp_ns)
        except SensingError as exc:
            tries[m.topic] = tries.get(m.topic, 0) + 1
            if tries[m.topic] >= SCAN_TRIES:
                log.warning("%s: %s: no decodable message in the first %d (%s)", path, m.topic,
                            SCAN_TRIES, exc)
                pending.discard(m.topic)
            continue
        setattr(spec, name, value)
        spec.origin[name] = f"{path} {m.topic}"
        spec.topics[_SENSOR[kind]] = m.topic
        pending.discard(m.topic)
        if not pending:
            break
    return spec


def derive_spec(inputs: Iterable[str | Path]) -> DataSpec:
    """One DataSpec for all bags under ``inputs``; DataSpecError when two bags disagree on a shape."""
    out = DataSpec()
    for path in bag_paths(inputs):
        spec = scan_bag(path)
        for name in ("image_hw", *SHAPE_FIELDS, "audio_sample_rate"):
            v = getattr(spec, name)
            if v is None:
                continue
            cur = getattr(out, name)
            if cur is None:
                setattr(out, name, v)
                out.origin[name] = spec.origin[name]
            elif cur != v and name in SHAPE_FIELDS:
                raise DataSpecError(
                    f"bags disagree on {name}: {_fmt(cur)} in {out.origin[name]}, {_fmt(v)} in "
                    f"{spec.origin[name]}; train one model per robot (or per sensor layout)"
                )
        for sensor, topic in spec.topics.items():
            out.topics.setdefault(sensor, topic)
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, tuple):
        return "x".join(str(x) for x in v)
    return str(v)


def image_size_for(image_hw: tuple[int, int], cap: int) -> int:
    """The model's square image side for a camera: the config's, or the camera's smaller side rounded
    down to a multiple of 8 when the camera is smaller (a model never sees upsampled pixels)."""
    side = min(image_hw)
    return cap if side >= cap else max(8, side // 8 * 8)


def is_template(config: str | Path) -> bool:
    """A packaged named config (tiny, base): its data fields are derived, not checked."""
    p = Path(config)
    return not p.suffix and not p.exists() and (CONFIG_DIR / f"{config}.json").is_file()


def apply_spec(
    cfg: ModelConfig, spec: DataSpec, *, explicit: bool, what: str
) -> tuple[ModelConfig, dict[str, Any]]:
    """(config for the data, record of what changed). With ``explicit``, shape mismatches raise one
    DataSpecError (listing all of them) and only converted fields are noted; otherwise the data's
    shapes, audio rate and image size replace the template's."""
    changes: dict[str, Any] = {}
    mismatches: list[str] = []
    updates: dict[str, Any] = {}
    for name in SHAPE_FIELDS:
        v = getattr(spec, name)
        if v is None or getattr(cfg, name) == v:
            continue
        if explicit:
            mismatches.append(
                f"{name} {_fmt(getattr(cfg, name))} but the data has {_fmt(v)} ({spec.origin[name]})"
            )
        else:
            updates[name] = v
    if mismatches:
        raise DataSpecError(
            f"{what} does not fit the bags: " + "; ".join(mismatches)
            + ". Use a named config (e.g. --config tiny) to take these from the bags, or record the robot "
            "the model was made for"
        )
    if "proprio_dim" in updates:
        n = int(updates["proprio_dim"])
        updates["proprio_mean"], updates["proprio_std"] = (0.0,) * n, (1.0,) * n
    if "action_dim" in updates:
        n = int(updates["action_dim"])
        updates["action_mean"], updates["action_std"] = (0.0,) * n, (1.0,) * n
    rate = spec.audio_sample_rate
    if rate is not None and rate != cfg.audio_sample_rate:
        if explicit:
            changes["audio_sample_rate"] = {"model": cfg.audio_sample_rate, "data": rate, "note": "resampled"}
        else:
            # Same STFT window and hop durations at the data's rate (so the log-mel frames stay alike).
            scale = rate / cfg.audio_sample_rate
            updates.update(
                audio_sample_rate=rate, n_fft=max(16, round(cfg.n_fft * scale)),
                hop_length=max(1, round(cfg.hop_length * scale)),
            )
    if spec.image_hw is not None:
        size = image_size_for(spec.image_hw, cfg.image_size)
        if size != cfg.image_size:
            if explicit:
                changes["image_size"] = {
                    "model": cfg.image_size, "data": list(spec.image_hw), "note": "upsampled"
                }
            else:
                updates["image_size"] = size
    for name, v in updates.items():
        if not name.endswith(("_mean", "_std")):
            changes[name] = {"template": _jsonable(getattr(cfg, name)), "data": _jsonable(v)}
    return (cfg.replace(**updates) if updates else cfg), changes


def _jsonable(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def describe_changes(changes: dict[str, Any], absent: Sequence[str]) -> str:
    """One line for the log: what the data set, and which sensors no bag has."""
    parts = []
    for name, c in changes.items():
        if "template" in c:
            parts.append(f"{name} {_fmt(_tup(c['template']))} -> {_fmt(_tup(c['data']))}")
        else:
            model, data = _fmt(_tup(c["model"])), _fmt(_tup(c["data"]))
            parts.append(f"{name}: model {model}, data {data} ({c['note']})")
    if absent:
        parts.append("absent in every bag (the model sees them as missing): " + ", ".join(absent))
    return "; ".join(parts) if parts else "the config fits the data as it is"


def _tup(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


def absent_sensors(spec: DataSpec) -> list[str]:
    return [s for s in ("audio", "tactile", "proprio", "action") if s not in spec.topics]
