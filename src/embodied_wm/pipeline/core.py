"""The one path from sensor messages to predictions: decode + validate -> Aligner -> backend.

The live ROS node, the offline bag replay and the training data loader all drive this class, so the
same messages give the same Observations (and, with the same backend, the same Predictions).
Bad messages never raise: they are counted per kind and reason and logged at a limited rate.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import threading
import time
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from embodied_wm.errors import ConfigError
from embodied_wm.observation import NS_PER_S, ModalitySpec, Observation, Prediction
from embodied_wm.runtime.base import Backend
from embodied_wm.sensing.aligner import Aligner, AlignerConfig
from embodied_wm.sensing.audio import decode_audio
from embodied_wm.sensing.common import frame_id, stamp_ns
from embodied_wm.sensing.errors import SensingError, ShapeError
from embodied_wm.sensing.image import DEFAULT_MAX_PIXELS, compressed_to_rgb, image_to_rgb
from embodied_wm.sensing.proprio import decode_joint_state, decode_twist
from embodied_wm.sensing.tactile import decode_float32_multiarray, decode_tactile

log = logging.getLogger(__name__)

KINDS = ("image", "compressed_image", "audio", "tactile", "tactile_f32", "joint_state", "twist")

_MSGTYPE_KINDS = {
    "sensor_msgs/msg/Image": "image",
    "sensor_msgs/msg/CompressedImage": "compressed_image",
    "embodied_wm/msg/AudioFrame": "audio",
    "audio_common_msgs/msg/AudioStamped": "audio",
    "embodied_wm/msg/TactileArray": "tactile",
    "std_msgs/msg/Float32MultiArray": "tactile_f32",
    "sensor_msgs/msg/JointState": "joint_state",
    "geometry_msgs/msg/TwistStamped": "twist",
}

#: Seconds between log lines for the same "kind:reason".
_LOG_EVERY_S = 5.0
#: Observations whose decode/align timings and epoch are remembered for predict().
_META_KEEP = 1024


def kind_for_msgtype(msgtype: str) -> str | None:
    """Pipeline kind for a ROS message type name ("sensor_msgs/msg/Image" or "sensor_msgs/Image")."""
    name = msgtype.strip()
    parts = name.split("/")
    if len(parts) == 2:
        name = f"{parts[0]}/msg/{parts[1]}"
    return _MSGTYPE_KINDS.get(name)


@dataclass
class PipelineStats:
    received: Counter[str] = field(default_factory=Counter)
    invalid: Counter[str] = field(default_factory=Counter)
    #: The newest rejection text per ``invalid`` key (what was wrong, e.g. both shapes).
    invalid_detail: dict[str, str] = field(default_factory=dict)
    observations: int = 0
    #: Of the observations, those made without a camera frame (camera outage, see the Aligner).
    observations_without_camera: int = 0
    predictions: int = 0
    resets: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    #: Last decode / align wall time per kind (ms), for diagnostics.
    decode_ms: dict[str, float] = field(default_factory=dict)
    align_ms: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "received": dict(self.received),
            "invalid": dict(self.invalid),
            "invalid_detail": dict(self.invalid_detail),
            "observations": self.observations,
            "observations_without_camera": self.observations_without_camera,
            "predictions": self.predictions,
            "resets": self.resets,
            "dropped": dict(self.dropped),
            "decode_ms": dict(self.decode_ms),
            "align_ms": dict(self.align_ms),
        }


@dataclass
class _ObsMeta:
    ref: weakref.ref[Observation]
    #: (pipeline serial, aligner epoch) of the Pipeline that built the observation.
    epoch: tuple[int, int]
    decode_ms: float
    align_ms: float


# Process-wide, because an observation built by one Pipeline may be predicted by another (the offline
# evaluation feeds once and predicts with one Pipeline per method). Keyed by id(); the weak reference
# tells a recycled id from the original. Feed and predict may run on different threads.
_META: OrderedDict[int, _ObsMeta] = OrderedDict()
_META_LOCK = threading.Lock()
_SERIALS = itertools.count()


class Pipeline:
    """decode + validate + align (+ predict when a backend is given). Feed messages in any order per
    the Aligner's rules; see ``embodied_wm.sensing.aligner``."""

    def __init__(
        self,
        backend: Backend | None,
        spec: ModalitySpec | None = None,
        aligner: AlignerConfig | None = None,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
    ) -> None:
        """``spec``: the shapes and rates to align to; None takes the backend's (``Backend.spec``, from its
        model's config), so a model trained with another tactile grid or audio rate gets its own inputs.
        Without a backend (decoding only) the default ModalitySpec."""
        self.backend = backend
        if spec is None:
            spec = backend.spec if backend is not None else ModalitySpec()
        #: Images (raw or compressed) of more pixels are refused before decoding ("image:too_large").
        self.max_image_pixels = int(max_image_pixels)
        self.spec = spec
        if aligner is None:
            aligner = AlignerConfig(spec=spec)
        elif aligner.spec != spec:
            if aligner.spec != ModalitySpec():
                raise ConfigError(
                    f"AlignerConfig.spec {aligner.spec} differs from the pipeline's spec {spec}"
                )
            # An AlignerConfig built for its timing options only: give it the pipeline's spec.
            aligner = dataclasses.replace(aligner, spec=spec)
        dt_ns = int(getattr(backend, "dt_ns", 0) or 0)
        if aligner.outage_period_s is None and dt_ns > 0:
            # Camera-less observations during an outage come at the model's step.
            aligner = dataclasses.replace(aligner, outage_period_s=dt_ns / NS_PER_S)
        self.aligner = Aligner(aligner)
        self.stats = PipelineStats()
        self._serial = next(_SERIALS)
        self._backend_epoch: tuple[int, int] | None = None
        self._last_predicted_ns: int | None = None
        self._last_log: dict[str, float] = {}
        self._suppressed: Counter[str] = Counter()
        self._decoders: dict[str, Callable[[Any, int | None], list[Observation]]] = {
            "image": self._feed_image,
            "compressed_image": self._feed_compressed,
            "audio": self._feed_audio,
            "tactile": self._feed_tactile,
            "tactile_f32": self._feed_tactile_f32,
            "joint_state": self._feed_joint_state,
            "twist": self._feed_twist,
        }
        self._decode_t = 0.0  # set by each _feed_* when decoding is done
        # Decode time of each held frame, by stamp (trimmed in _add_image).
        self._image_decode_ms: dict[int, float] = {}

    # ------------------------------------------------------------------ public API
    def feed(self, kind: str, msg: Any, receive_stamp_ns: int | None = None) -> list[Observation]:
        """Decode, validate and align one message; returns the Observations that became complete."""
        handler = self._decoders.get(kind)
        if handler is None:
            raise ConfigError(f"unknown message kind {kind!r}; expected one of {KINDS}")
        self.stats.received[kind] += 1
        t0 = time.perf_counter()
        self._decode_t = t0
        try:
            out = handler(msg, receive_stamp_ns)
        except SensingError as exc:
            self._invalid(kind, exc)
            return []
        t2 = time.perf_counter()
        decode_ms = (self._decode_t - t0) * 1e3
        align_ms = (t2 - self._decode_t) * 1e3
        self.stats.decode_ms[kind] = decode_ms
        self.stats.align_ms[kind] = align_ms
        self._after_align(out, align_ms)
        return out

    def reject(self, kind: str, exc: SensingError) -> None:
        """Count a message of ``kind`` its caller already refused (received and invalid under
        ``kind:exc.reason``), e.g. an oversized image the node drops before queueing it."""
        self.stats.received[kind] += 1
        self._invalid(kind, exc)

    def predict(self, obs: Observation, actions: np.ndarray | None = None) -> Prediction:
        """Run the backend on ``obs`` (resetting it first when the aligner reset since the last call)
        and add "decode" and "align" to the prediction's timings."""
        if self.backend is None:  # a bug in the caller, not bad input: not an EmbodiedWMError
            raise RuntimeError("Pipeline was created without a backend; predict() needs one")
        with _META_LOCK:
            meta = _META.get(id(obs))  # kept: other Pipelines may predict the same observation
        if meta is not None and meta.ref() is not obs:
            meta = None
        epoch = meta.epoch if meta is not None else (self._serial, self.aligner.epoch)
        # Reset the backend's history when the aligner reset (bag loop, simulator reset) or, for
        # observations from elsewhere, when time does not move forward.
        jumped = self._last_predicted_ns is not None and obs.stamp_ns <= self._last_predicted_ns
        if (self._backend_epoch is not None and epoch != self._backend_epoch) or jumped:
            self.backend.reset()
        self._backend_epoch = epoch
        self._last_predicted_ns = obs.stamp_ns
        pred = self.backend.predict(obs, actions)
        pred.timings_ms["decode"] = meta.decode_ms if meta is not None else 0.0
        pred.timings_ms["align"] = meta.align_ms if meta is not None else 0.0
        self.stats.predictions += 1
        return pred

    def process(self, kind: str, msg: Any, receive_stamp_ns: int | None = None) -> list[Prediction]:
        """feed() then predict() every Observation it completed."""
        return [self.predict(obs) for obs in self.feed(kind, msg, receive_stamp_ns)]

    def flush(self) -> list[Observation]:
        """Emit every held frame (end of a bag, shutdown)."""
        t0 = time.perf_counter()
        out = self.aligner.flush()
        self._after_align(out, (time.perf_counter() - t0) * 1e3)
        return out

    # ------------------------------------------------------------------ internals
    def _after_align(self, out: list[Observation], align_ms: float) -> None:
        self.stats.observations += len(out)
        self.stats.observations_without_camera = self.aligner.camera_missing
        self.stats.resets = self.aligner.resets
        self.stats.dropped = Counter(self.aligner.counters)
        epoch = (self._serial, self.aligner.epoch)
        metas = [
            (
                id(obs),
                _ObsMeta(weakref.ref(obs), epoch, self._image_decode_ms.pop(obs.stamp_ns, 0.0), align_ms),
            )
            for obs in out
        ]
        with _META_LOCK:
            _META.update(metas)
            while len(_META) > _META_KEEP:
                _META.popitem(last=False)

    def _invalid(self, kind: str, exc: SensingError) -> None:
        key = f"{kind}:{exc.reason}"
        self.stats.invalid[key] += 1
        self.stats.invalid_detail[key] = str(exc)
        now = time.monotonic()
        last = self._last_log.get(key)
        if last is None or now - last >= _LOG_EVERY_S:
            extra = f" ({self._suppressed[key]} more since last report)" if self._suppressed[key] else ""
            log.warning("dropping invalid %s message [%s]: %s%s", kind, exc.reason, exc, extra)
            self._last_log[key] = now
            self._suppressed[key] = 0
        else:
            self._suppressed[key] += 1

    def _decoded(self) -> None:
        self._decode_t = time.perf_counter()

    def _add_image(self, stamp: int, rgb: np.ndarray, fid: str) -> list[Observation]:
        decode_ms = (time.perf_counter() - self._decode_t) * 1e3
        self._decoded()
        cache = self._image_decode_ms
        cache[stamp] = decode_ms
        if len(cache) > 4 * self.aligner.config.max_pending:
            for key in sorted(cache)[: len(cache) // 2]:
                del cache[key]
        return self.aligner.add_image(stamp, rgb, fid)

    def _feed_image(self, msg: Any, _rx: int | None) -> list[Observation]:
        stamp = stamp_ns(msg.header)
        rgb = image_to_rgb(msg, self.max_image_pixels)
        return self._add_image(stamp, rgb, frame_id(msg.header))

    def _feed_compressed(self, msg: Any, _rx: int | None) -> list[Observation]:
        stamp = stamp_ns(msg.header)
        rgb = compressed_to_rgb(msg, self.max_image_pixels)
        return self._add_image(stamp, rgb, frame_id(msg.header))

    def _feed_audio(self, msg: Any, _rx: int | None) -> list[Observation]:
        chunk = decode_audio(msg, self.spec.audio_sample_rate)
        self._decoded()
        return self.aligner.add_audio(chunk.stamp_ns, chunk.samples)

    def _check_shape(self, what: str, values: np.ndarray, want: tuple[int, ...]) -> None:
        if values.shape != want:
            raise ShapeError(
                f"{what} has shape {values.shape}, the model takes {want} (its ModalitySpec): the message "
                "does not fit this model"
            )

    def _feed_tactile(self, msg: Any, _rx: int | None) -> list[Observation]:
        stamp, values = decode_tactile(msg)
        self._check_shape("TactileArray", values, tuple(self.spec.tactile_shape))
        self._decoded()
        return self.aligner.add_tactile(stamp, values)

    def _feed_tactile_f32(self, msg: Any, rx: int | None) -> list[Observation]:
        if rx is None:
            # Float32MultiArray has no header: the caller must pass the receive (or bag) time.
            raise ConfigError("feed('tactile_f32', ...) needs receive_stamp_ns (the message has no header)")
        stamp, values = decode_float32_multiarray(msg, rx, tuple(self.spec.tactile_shape))
        self._decoded()
        return self.aligner.add_tactile(stamp, values)

    def _feed_joint_state(self, msg: Any, _rx: int | None) -> list[Observation]:
        stamp, values = decode_joint_state(msg)
        self._check_shape("JointState (positions + velocities)", values, (self.spec.proprio_dim,))
        self._decoded()
        return self.aligner.add_proprio(stamp, values)

    def _feed_twist(self, msg: Any, _rx: int | None) -> list[Observation]:
        stamp, values = decode_twist(msg)
        self._check_shape("TwistStamped", values, (self.spec.action_dim,))
        self._decoded()
        return self.aligner.add_action(stamp, values)
