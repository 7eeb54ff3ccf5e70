"""An evaluation as an MCAP file that Foxglove (or any ROS 2 MCAP reader) opens as it is.

Scrub the timeline and see prediction and reality side by side: at log time T the input camera shows
the frame seen at T, ``/embodied_wm/predicted/kN`` the frame the model predicted for T from the
observation at T - N·dt, and ``/embodied_wm/error/kN`` their difference. Every message's log time equals
its header stamp (data time), so the file's timeline is the bag's.

Topics (standard ROS 2 types, ``ros2msg`` schemas, CDR encoding; t = the observation's stamp):

- ``/embodied_wm/input/image`` (sensor_msgs/msg/Image, rgb8): the observation's camera frame, at t.
- ``/embodied_wm/predicted/k1`` ... ``kK`` (Image, rgb8): the model's frame for step k, stamped
  t + k·dt, the time it predicts.
- ``/embodied_wm/error/k1`` ... ``kK`` (Image, rgb8): |predicted - actual| (mean over RGB, inferno colour
  map, 0..96 of 255), at t + k·dt, only where a camera frame came at that time.
- ``/embodied_wm/affordance/<channel>`` (Image, rgb8): the predicted probability over the frame (turbo,
  blend weight proportional to p), ground truth as white contours, a colour bar; at t.
- ``/embodied_wm/metrics/<method>/<metric>`` (std_msgs/msg/Float32MultiArray): at t, ``data[k-1]`` is
  the metric of horizon step k (NaN: no target frame, or no moving pixel).

``<metric>`` is ``psnr``, ``psnr_moving`` (dB) or ``ssim``; ``<method>`` is ``model`` and each baseline.
The metrics' layout has one dimension, label ``horizon_step``, size K (so a Foxglove Plot of
``/embodied_wm/metrics/model/psnr.data[0]`` is the one-step PSNR over time). The file's metadata record
``embodied_wm`` holds the model id, dt, horizon, methods and the bag.

Messages are written in log-time order: predictions are held back until no earlier message can come
(the scorer releases them once their targets have arrived), so memory stays bounded by the horizon.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from mcap.writer import Writer

from embodied_wm.eval.scoring import HorizonScorer, PendingPrediction, ScoredPrediction
from embodied_wm.io.typestore import typestore
from embodied_wm.observation import NS_PER_S
from embodied_wm.viz import display_scale, error_map, probability_overlay
from embodied_wm.viz.overlay import probability_bar

INPUT_TOPIC = "/embodied_wm/input/image"
PREDICTED_TOPIC = "/embodied_wm/predicted/k{k}"
ERROR_TOPIC = "/embodied_wm/error/k{k}"
AFFORDANCE_TOPIC = "/embodied_wm/affordance/{channel}"
METRICS_TOPIC = "/embodied_wm/metrics/{method}/{metric}"
METRICS = ("psnr", "psnr_moving", "ssim")
IMAGE_TYPE = "sensor_msgs/msg/Image"
METRICS_TYPE = "std_msgs/msg/Float32MultiArray"
FRAME_ID = "camera"
#: Affordance overlays are drawn at least this tall, so a viewer that smooths when scaling keeps them crisp.
OVERLAY_MIN_PX = 256


class McapFile:
    """A ROS 2 MCAP file: schemas from the package's typestore (standard Jazzy types + ours), CDR bodies
    serialised by rosbags, container written by ``mcap``."""

    def __init__(self, path: str | Path, metadata: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._store = typestore()
        self._io: BinaryIO = open(self.path, "wb")
        self._writer = Writer(self._io)
        self._writer.start(profile="ros2", library="embodied_wm")
        self._schemas: dict[str, int] = {}
        self._channels: dict[str, int] = {}
        self._seq: dict[str, int] = {}
        self.messages = 0
        if metadata:
            self._writer.add_metadata("embodied_wm", {str(k): str(v) for k, v in metadata.items()})

    @property
    def types(self) -> Any:
        return self._store.types

    def _channel(self, topic: str, msgtype: str) -> int:
        ch = self._channels.get(topic)
        if ch is None:
            sid = self._schemas.get(msgtype)
            if sid is None:
                text, _ = self._store.generate_msgdef(msgtype, ros_version=2)
                sid = self._writer.register_schema(msgtype, "ros2msg", text.encode())
                self._schemas[msgtype] = sid
            ch = self._writer.register_channel(topic, "cdr", sid)
            self._channels[topic] = ch
        return ch

    def write(self, topic: str, msgtype: str, msg: Any, log_time_ns: int) -> None:
        ch = self._channel(topic, msgtype)
        data = bytes(self._store.serialize_cdr(msg, msgtype))
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        self._writer.add_message(ch, int(log_time_ns), data, int(log_time_ns), seq)
        self.messages += 1

    def close(self) -> None:
        if self._io.closed:
            return
        try:
            self._writer.finish()
        finally:
            self._io.close()


class PredictionExport:
    """Streams an evaluation into an MCAP in log-time order.

    Call ``camera`` for each observation's frame, ``expect`` when a prediction is made (so nothing older
    is written before it is scored), ``scored`` when the scorer releases it, and ``close`` at the end.
    """

    def __init__(
        self,
        path: str | Path,
        horizon: int,
        image_method: str,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        self.file = McapFile(path, metadata)
        self.horizon = int(horizon)
        self.image_method = image_method
        self._heap: list[tuple[int, int, str, str, Any]] = []
        self._order = itertools.count()
        self._awaiting: dict[tuple[str, int], int] = {}
        self._newest = -1
        types = self.file.types
        self._Image = types[IMAGE_TYPE]
        self._Header = types["std_msgs/msg/Header"]
        self._Time = types["builtin_interfaces/msg/Time"]
        self._F32 = types[METRICS_TYPE]
        self._Layout = types["std_msgs/msg/MultiArrayLayout"]
        self._Dim = types["std_msgs/msg/MultiArrayDimension"]

    # -- messages ------------------------------------------------------------------------------------
    def _image(self, rgb: np.ndarray, stamp_ns: int) -> Any:
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        h, w = int(rgb.shape[0]), int(rgb.shape[1])
        header = self._Header(
            stamp=self._Time(sec=int(stamp_ns) // NS_PER_S, nanosec=int(stamp_ns) % NS_PER_S),
            frame_id=FRAME_ID,
        )
        return self._Image(
            header=header,
            height=h,
            width=w,
            encoding="rgb8",
            is_bigendian=0,
            step=3 * w,
            data=rgb.reshape(-1),
        )

    def _metrics(self, values: Sequence[float | None]) -> Any:
        k = len(values)
        data = np.asarray([math.nan if v is None else float(v) for v in values], np.float32)
        layout = self._Layout(dim=[self._Dim(label="horizon_step", size=k, stride=k)], data_offset=0)
        return self._F32(layout=layout, data=data)

    def _push(self, log_time_ns: int, topic: str, msgtype: str, msg: Any) -> None:
        heapq.heappush(self._heap, (int(log_time_ns), next(self._order), topic, msgtype, msg))

    def _release(self) -> None:
        """Write every held message that no later call can precede."""
        limit = self._newest
        if self._awaiting:
            limit = min(limit, min(stamp for _, stamp in self._awaiting))
        while self._heap and self._heap[0][0] < limit:
            t, _, topic, msgtype, msg = heapq.heappop(self._heap)
            self.file.write(topic, msgtype, msg, t)

    # -- inputs --------------------------------------------------------------------------------------
    def camera(self, stamp_ns: int, rgb: np.ndarray) -> None:
        """The frame of an observation (as the model saw it), at its stamp."""
        stamp_ns = int(stamp_ns)
        if stamp_ns < self._newest:
            # Time went backwards (a bag loop, a simulator reset): write what is held, start over.
            self.flush()
        self._push(stamp_ns, INPUT_TOPIC, IMAGE_TYPE, self._image(rgb, stamp_ns))
        self._newest = stamp_ns
        self._release()

    def expect(self, method: str, stamp_ns: int) -> None:
        key = (method, int(stamp_ns))
        self._awaiting[key] = self._awaiting.get(key, 0) + 1

    def scored(self, s: ScoredPrediction) -> None:
        p = s.pending
        t = int(p.stamp_ns)
        key = (p.method, t)
        if key in self._awaiting:
            self._awaiting[key] -= 1
            if self._awaiting[key] <= 0:
                del self._awaiting[key]
        for metric in METRICS:
            vals = list(getattr(s, metric))
            topic = METRICS_TOPIC.format(method=p.method, metric=metric)
            self._push(t, topic, METRICS_TYPE, self._metrics(vals))
        if p.method == self.image_method:
            self._prediction_images(s)
        self._release()

    def _prediction_images(self, s: ScoredPrediction) -> None:
        p = s.pending
        h = int(p.frames.shape[1])
        scale = display_scale(h)
        for k in range(min(self.horizon, len(p.frame_stamps_ns))):
            ts = int(p.frame_stamps_ns[k])
            self._push(ts, PREDICTED_TOPIC.format(k=k + 1), IMAGE_TYPE, self._image(p.frames[k], ts))
            target = s.target_frames[k] if k < len(s.target_frames) else None
            if target is not None:
                err = error_map(p.frames[k], target, scale)
                self._push(ts, ERROR_TOPIC.format(k=k + 1), IMAGE_TYPE, self._image(err, ts))
        if p.affordance is not None and p.affordance_channels and s.observation_frame is not None:
            gt = s.gt_affordance
            base = s.observation_frame
            sa = display_scale(int(base.shape[0]), OVERLAY_MIN_PX)
            for ci, name in enumerate(p.affordance_channels):
                truth = gt[ci] if gt is not None and ci < gt.shape[0] else None
                over = probability_overlay(base, p.affordance[ci], sa, truth=truth)
                bar = probability_bar(over.shape[0], f"p({name})")
                img = np.concatenate([over, np.full((over.shape[0], 4, 3), 255, np.uint8), bar], axis=1)
                topic = AFFORDANCE_TOPIC.format(channel=name)
                self._push(int(p.stamp_ns), topic, IMAGE_TYPE, self._image(img, p.stamp_ns))

    def flush(self) -> None:
        while self._heap:
            t, _, topic, msgtype, msg = heapq.heappop(self._heap)
            self.file.write(topic, msgtype, msg, t)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self.file.close()


def export_predictions(
    path: str | Path,
    camera: Mapping[int, np.ndarray],
    predictions: Iterable[PendingPrediction],
    ground_truth: Mapping[int, tuple[Sequence[str], np.ndarray]] | None = None,
    image_method: str = "model",
    metadata: Mapping[str, str] | None = None,
) -> int:
    """Score ``predictions`` (every method's, any order) against the ``camera`` frames (stamp -> RGB)
    with the evaluation's scorer and write the MCAP; returns the number of messages written. For
    callers that hold a whole run in memory (make demo)."""
    preds = sorted(predictions, key=lambda p: (p.stamp_ns, p.method))
    horizon = max((len(p.frame_stamps_ns) for p in preds), default=0)
    export = PredictionExport(path, horizon, image_method, metadata)
    scorer = HorizonScorer(keep_frames=True)
    for stamp, (channels, maps) in sorted((ground_truth or {}).items()):
        scorer.add_ground_truth(stamp, channels, maps)
    by_stamp: dict[int, list[PendingPrediction]] = {}
    for p in preds:
        by_stamp.setdefault(int(p.stamp_ns), []).append(p)
    try:
        for stamp in sorted(camera):
            scorer.add_frame(stamp, camera[stamp])
            export.camera(stamp, camera[stamp])
            for p in by_stamp.pop(stamp, []):
                export.expect(p.method, p.stamp_ns)
                scorer.add_prediction(p)
            for s in scorer.poll():
                export.scored(s)
        for rest in by_stamp.values():  # predictions from stamps without a camera frame
            for p in rest:
                export.expect(p.method, p.stamp_ns)
                scorer.add_prediction(p)
        for s in scorer.flush():
            export.scored(s)
    finally:
        export.close()
    return export.file.messages


__all__ = [
    "AFFORDANCE_TOPIC",
    "ERROR_TOPIC",
    "INPUT_TOPIC",
    "METRICS",
    "METRICS_TOPIC",
    "PREDICTED_TOPIC",
    "McapFile",
    "PredictionExport",
    "export_predictions",
]
