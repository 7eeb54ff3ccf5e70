"""Diagnostics for the perception node: input rates, stage latencies, drops, and the /diagnostics message.

Kept free of node state so the bookkeeping is unit-testable and cheap: the node records events here from
its callbacks and worker, and a timer turns a snapshot into a diagnostic_msgs/DiagnosticArray.

Two notions of time on purpose: rates and latencies use the monotonic wall clock (they describe this
process), while "missing" inputs are judged in data time (an input whose newest stamp lags the camera's
by more than ``missing_after_s``), so a replay at any speed or under /clock reports the same thing.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

# DiagnosticStatus.level is a ROS "byte": rclpy represents it (and these constants) as 1-byte bytes.
OK: bytes = DiagnosticStatus.OK
WARN: bytes = DiagnosticStatus.WARN
ERROR: bytes = DiagnosticStatus.ERROR


#: Observation modality -> the perception node input that feeds it.
MODALITY_INPUT: dict[str, str] = {
    "image": "camera",
    "audio": "audio",
    "tactile": "tactile",
    "proprio": "joint_states",
    "action": "action",
}


class RateMeter:
    """Arrival rate of one stream over a sliding window of wall time."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self.count = 0
        self.last_stamp_ns: int | None = None
        self.last_wall: float | None = None

    def tick(self, stamp_ns: int | None = None, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._times.append(now)
        self.count += 1
        self.last_wall = now
        if stamp_ns is not None and stamp_ns > 0:
            self.last_stamp_ns = stamp_ns
        self._trim(now)

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()

    def rate_hz(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        self._trim(now)
        n = len(self._times)
        if n < 2:
            return 0.0
        span = self._times[-1] - self._times[0]
        return (n - 1) / span if span > 0 else 0.0


class LatencyStats:
    """Recent per-stage durations (ms) with percentiles; bounded memory."""

    def __init__(self, size: int = 500) -> None:
        self._size = size
        self._values: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def add(self, stage: str, ms: float) -> None:
        with self._lock:
            self._values.setdefault(stage, deque(maxlen=self._size)).append(float(ms))

    def add_all(self, timings: Mapping[str, float], prefix: str = "") -> None:
        for stage, ms in timings.items():
            self.add(prefix + stage, ms)

    def summary(self) -> dict[str, dict[str, float]]:
        """stage -> {p50, p99, mean, max, n}."""
        with self._lock:
            snap = {k: np.asarray(v, np.float64) for k, v in self._values.items() if v}
        return {
            k: {
                "p50": float(np.percentile(v, 50)),
                "p99": float(np.percentile(v, 99)),
                "mean": float(v.mean()),
                "max": float(v.max()),
                "n": float(v.size),
            }
            for k, v in snap.items()
        }


@dataclass
class NodeCounters:
    """Events outside the pipeline's own statistics."""

    #: Observations replaced in the worker's slot before inference took them (inference was busy).
    stale: int = 0
    #: Observations skipped to honour rate_hz.
    rate_limited: int = 0
    predictions: int = 0
    prediction_errors: int = 0
    last_error: str = ""
    service_calls: int = 0
    service_rejected: int = 0
    #: Camera stamps that went backwards (bag loop, sim reset): the backend history was reset.
    time_jumps: int = 0
    #: Camera outages begun (a camera-less observation after frames, or before the first frame).
    camera_outages: int = 0
    #: Predictions from camera-less observations whose frames were not published (see perception_node).
    frames_withheld: int = 0
    #: Camera-less observations not predicted: the backend (a baseline) has no affordance output.
    no_camera_not_predicted: int = 0
    extra: dict[str, int] = field(default_factory=dict)


@dataclass
class CameraOutage:
    """The camera is missing: the newest observation (stamp ``latest_ns``) has no frame; the last frame
    before it was stamped ``last_frame_ns`` (None: no frame since activation). Data time."""

    last_frame_ns: int | None
    latest_ns: int
    #: Modalities the camera-less observations carry (what the predictions come from).
    present: list[str] = field(default_factory=list)

    @property
    def missing_for_s(self) -> float | None:
        return None if self.last_frame_ns is None else (self.latest_ns - self.last_frame_ns) / 1e9


def flatten_stats(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    """Nested dicts/lists of numbers and strings -> ('a/b/c', 'value') pairs (KeyValue wants strings)."""
    out: list[tuple[str, str]] = []
    if isinstance(value, Mapping):
        for k, v in value.items():
            out.extend(flatten_stats(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(value, list | tuple):
        out.append((prefix, ", ".join(map(str, value))))
    elif isinstance(value, float):
        out.append((prefix, f"{value:.4g}"))
    else:
        out.append((prefix, str(value)))
    return out


def _status(
    name: str, hardware_id: str, level: bytes, message: str, values: Iterable[tuple[str, str]]
) -> DiagnosticStatus:
    st = DiagnosticStatus()
    st.level = level
    st.name = name
    st.message = message
    st.hardware_id = hardware_id
    st.values = [KeyValue(key=k, value=v) for k, v in values]
    return st


@dataclass
class Snapshot:
    """Everything the diagnostics message reports, gathered by the node at publish time."""

    node_name: str
    lifecycle_state: str
    inputs: Mapping[str, str]  # input -> topic ('' = disabled)
    meters: Mapping[str, RateMeter]
    camera_stamp_ns: int | None
    missing_after_s: float
    missing_in_last_observation: list[str]
    latency: Mapping[str, Mapping[str, float]]
    counters: NodeCounters
    pipeline_stats: Mapping[str, Any]
    backend: Mapping[str, Any]
    backend_skipped: Mapping[str, str]
    pending: bool
    #: input -> QoS problem (incompatible publishers), and input -> messages the middleware reports lost.
    input_issues: Mapping[str, str] = field(default_factory=dict)
    lost: Mapping[str, int] = field(default_factory=dict)
    #: input -> publishers our subscription is matched with (DDS reader side): 0 with a driver running
    #: means discovery or QoS does not connect them yet; messages sent before the match are not seen.
    publishers: Mapping[str, int] = field(default_factory=dict)
    #: output (``predicted_frames``, ``affordance``, ...) -> subscriptions our publisher is matched with
    #: (DDS writer side): a consumer receives only what is published after its match.
    subscribers: Mapping[str, int] = field(default_factory=dict)
    #: Set while the camera is out (the node predicts from the other sensors), else None.
    camera_outage: CameraOutage | None = None
    #: The input path (ros/ingest.py): queue length, messages dropped under a flood per kind, the longest
    #: subscription callback (the executor thread's stall) and the longest processing of one message.
    ingest: Mapping[str, Any] = field(default_factory=dict)


def silent_inputs(snap: Snapshot, now: float | None = None) -> dict[str, str]:
    """Enabled inputs considered missing, with why ("no messages", "lags camera by 1.3 s")."""
    now = time.monotonic() if now is None else now
    out: dict[str, str] = {}
    for name, topic in snap.inputs.items():
        if not topic:
            continue
        m = snap.meters.get(name)
        if m is None or m.count == 0:
            out[name] = "no messages"
            continue
        if name == "camera":
            # The camera is the reference clock; judge it by wall time since its last message.
            if m.last_wall is not None and now - m.last_wall > max(snap.missing_after_s, 3.0):
                out[name] = f"silent for {now - m.last_wall:.1f} s"
            continue
        if snap.camera_stamp_ns is not None and m.last_stamp_ns is not None:
            lag = (snap.camera_stamp_ns - m.last_stamp_ns) / 1e9
            if lag > snap.missing_after_s:
                out[name] = f"lags camera by {lag:.2f} s"
    return out


def _camera_status(snap: Snapshot, hw: str) -> DiagnosticStatus:
    """'<node>: camera': WARN while the camera is out and the node predicts without it."""
    c, out = snap.counters, snap.camera_outage
    stats = snap.pipeline_stats if isinstance(snap.pipeline_stats, Mapping) else {}
    vals = [
        ("missing", str(out is not None)),
        ("outages", str(c.camera_outages)),
        ("observations_without_camera", str(stats.get("observations_without_camera", 0))),
        ("predicted_frames_withheld", str(c.frames_withheld)),
        ("not_predicted_without_camera", str(c.no_camera_not_predicted)),
    ]
    if out is None:
        return _status(f"{snap.node_name}: camera", hw, OK, "camera frames arriving", vals)
    since = out.missing_for_s
    vals += [
        ("missing_since_s", f"{since:.2f}" if since is not None else "no frame yet"),
        ("last_frame_stamp_ns", str(out.last_frame_ns) if out.last_frame_ns is not None else ""),
        ("predicting_from", ", ".join(out.present)),
    ]
    what = f"camera missing since {since:.1f} s" if since is not None else "camera missing (no frame yet)"
    if out.present:
        what += f": affordances and world state from {', '.join(out.present)}; predicted frames withheld"
    disabled = not snap.inputs.get("camera", "x")
    level = WARN if snap.lifecycle_state == "active" and not disabled else OK
    if disabled:
        what = "camera input disabled; " + what
    return _status(f"{snap.node_name}: camera", hw, level, what, vals)


def build_array(snap: Snapshot, stamp: Any, now: float | None = None) -> DiagnosticArray:
    """Four statuses: '<node>: inputs', '<node>: inference', '<node>: messages', '<node>: camera'."""
    now = time.monotonic() if now is None else now
    hw = str(snap.backend.get("device", snap.backend.get("backend", "")))
    arr = DiagnosticArray()
    arr.header.stamp = stamp

    # --- inputs
    silent = silent_inputs(snap, now)
    vals: list[tuple[str, str]] = [("lifecycle_state", snap.lifecycle_state)]
    for name, topic in snap.inputs.items():
        m = snap.meters.get(name)
        vals.append((f"{name}/topic", topic or "(disabled)"))
        if topic:
            vals.append((f"{name}/rate_hz", f"{m.rate_hz(now):.2f}" if m else "0.00"))
            vals.append((f"{name}/count", str(m.count if m else 0)))
            if name in snap.publishers:
                vals.append((f"{name}/publishers", str(snap.publishers[name])))
            if name in snap.lost:
                vals.append((f"{name}/lost", str(snap.lost[name])))
            if name in snap.input_issues:
                vals.append((f"{name}/qos_incompatible", snap.input_issues[name]))
    # A modality whose input is disabled by configuration is expected to be absent: not a warning.
    missing = [m for m in snap.missing_in_last_observation if snap.inputs.get(MODALITY_INPUT.get(m, m), "x")]
    vals += flatten_stats(dict(snap.ingest), "ingest") if snap.ingest else []
    vals.append(("missing_modalities", ", ".join(missing)))
    vals.append(("silent_inputs", ", ".join(sorted(silent))))
    for name, why in silent.items():
        vals.append((f"{name}/missing_reason", why))
    active = snap.lifecycle_state == "active"
    problems = []
    if snap.camera_outage is not None and snap.inputs.get("camera"):
        since = snap.camera_outage.missing_for_s
        problems.append("camera missing" + (f" since {since:.1f} s" if since is not None else ""))
    if missing:
        problems.append("missing modalities: " + ", ".join(missing))
    if silent:
        problems.append("silent inputs: " + ", ".join(sorted(silent)))
    if snap.input_issues:
        problems.append("incompatible QoS on: " + ", ".join(sorted(snap.input_issues)))
    level = WARN if (problems and active) else OK
    msg = "; ".join(problems) if problems else ("all inputs present" if active else snap.lifecycle_state)
    statuses = [_status(f"{snap.node_name}: inputs", hw, level, msg, vals)]

    # --- inference
    c = snap.counters
    vals = [
        ("backend", str(snap.backend.get("backend", ""))),
        ("model_id", str(snap.backend.get("model_id", ""))),
    ]
    vals += [
        (f"backend_info/{k}", str(v)) for k, v in snap.backend.items() if k not in ("backend", "model_id")
    ]
    vals += [(f"skipped/{k}", v) for k, v in snap.backend_skipped.items()]
    vals += [
        ("predictions", str(c.predictions)),
        ("dropped/stale", str(c.stale)),
        ("dropped/rate_limited", str(c.rate_limited)),
        ("prediction_errors", str(c.prediction_errors)),
        ("time_jumps", str(c.time_jumps)),
        ("predicted_frames_withheld", str(c.frames_withheld)),
        ("service_calls", str(c.service_calls)),
        ("service_rejected", str(c.service_rejected)),
        ("busy", str(snap.pending)),
    ]
    vals += [(k, str(v)) for k, v in sorted(c.extra.items())]
    vals += [(f"subscribers/{k}", str(v)) for k, v in sorted(snap.subscribers.items())]
    for stage, s in sorted(snap.latency.items()):
        vals.append((f"latency_ms/{stage}/p50", f"{s['p50']:.3f}"))
        vals.append((f"latency_ms/{stage}/p99", f"{s['p99']:.3f}"))
    if c.last_error:
        vals.append(("last_error", c.last_error))
    level = ERROR if not snap.backend else (WARN if c.prediction_errors or snap.backend_skipped else OK)
    if not snap.backend:
        msg = "no backend (not configured)"
    else:
        msg = f"{snap.backend.get('backend', '?')}: {c.predictions} predictions"
        if snap.backend_skipped:
            msg += " (fallback: " + "; ".join(f"{k}: {v}" for k, v in snap.backend_skipped.items()) + ")"
    statuses.append(_status(f"{snap.node_name}: inference", hw, level, msg, vals))

    # --- message accounting (pipeline.stats)
    vals = flatten_stats(snap.pipeline_stats)
    invalid = snap.pipeline_stats.get("invalid", {}) if isinstance(snap.pipeline_stats, Mapping) else {}
    n_invalid = sum(int(v) for v in invalid.values()) if isinstance(invalid, Mapping) else 0
    level = WARN if n_invalid else OK
    msg = f"{n_invalid} invalid messages" if n_invalid else "no invalid messages"
    detail = snap.pipeline_stats.get("invalid_detail", {}) if isinstance(snap.pipeline_stats, Mapping) else {}
    if n_invalid and isinstance(detail, Mapping) and detail:
        # Say why (e.g. both shapes of a message that does not fit the model), not only how many.
        msg += ": " + "; ".join(f"{k}: {v}" for k, v in sorted(detail.items()))
    statuses.append(_status(f"{snap.node_name}: messages", hw, level, msg, vals))
    statuses.append(_camera_status(snap, hw))
    arr.status = statuses
    return arr


def status_values(arr: DiagnosticArray, name_suffix: str) -> dict[str, str]:
    """KeyValues of the status whose name ends with ``name_suffix`` (for tests and tools)."""
    for st in arr.status:
        if st.name.endswith(name_suffix):
            return {kv.key: kv.value for kv in st.values}
    return {}


def matched_counts(entities: Mapping[str, Any], method: str) -> dict[str, int]:
    """name -> matched remote endpoints (``get_publisher_count`` of a subscription, ``get_subscription_count``
    of a publisher). Called from the diagnostics timer: an entity destroyed meanwhile by a lifecycle
    transition, or an rclpy without the method (Humble subscriptions), is left out."""
    out: dict[str, int] = {}
    for name, entity in list(entities.items()):
        try:
            out[name] = int(getattr(entity, method)())
        except Exception:  # InvalidHandle after destroy, AttributeError on older rclpy
            continue
    return out


__all__ = [
    "ERROR",
    "OK",
    "WARN",
    "CameraOutage",
    "LatencyStats",
    "NodeCounters",
    "RateMeter",
    "Snapshot",
    "build_array",
    "flatten_stats",
    "silent_inputs",
    "status_values",
]
