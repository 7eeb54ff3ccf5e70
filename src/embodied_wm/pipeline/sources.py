"""Bag -> inputs -> Observations: the one input-selection path.

Training data (train/dataset.py), the offline evaluation (eval/replay.py) and INT8 calibration
(runtime/tensorrt_backend.py) all pick a bag's sensor topics with ``select_inputs`` and feed them through
a ``Pipeline`` with ``feed_bag``, so every consumer of a bag sees the same inputs the live node would
get from the same topics.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from embodied_wm.io.bag import (
    GROUND_TRUTH_PREFIX,
    IMAGE_TYPES,
    BagInfo,
    BagMessage,
    BagReadReport,
    bag_info,
    choose_camera_topic,
    iter_bag_messages,
)
from embodied_wm.observation import ModalitySpec, Observation
from embodied_wm.pipeline.core import Pipeline, kind_for_msgtype

#: Pipeline kinds that are one sensor: a raw and a compressed camera, two tactile encodings.
SENSOR_OF_KIND: dict[str, str] = {
    "image": "camera",
    "compressed_image": "camera",
    "audio": "audio",
    "tactile": "tactile",
    "tactile_f32": "tactile",
    "joint_state": "joint_state",
    "twist": "twist",
}
#: The topics the simulator and config/perception.yaml use: preferred when a sensor has several topics
#: with equally many messages.
PREFERRED_TOPICS = ("/camera/image_raw", "/audio", "/tactile", "/joint_states", "/cmd_vel_ee")


def _rank(info: BagInfo, topic: str) -> tuple[int, bool, int, str]:
    return (-info.counts.get(topic, 0), topic not in PREFERRED_TOPICS, len(topic), topic)


def select_inputs(info: BagInfo, camera_topics: Sequence[str] = ()) -> dict[str, str]:
    """topic -> Pipeline kind, one topic per sensor.

    The camera is ``choose_camera_topic``'s (the first of ``camera_topics`` the bag has, else the image
    topic with the most messages, a shorter name on ties: raw before compressed). Every other sensor
    gets its topic with the most messages (ties: a PREFERRED_TOPICS name, then the shortest). Topics
    under /ground_truth/ and other image topics (depth, a second camera) are never inputs. Raises
    NoCameraTopicError (a BagError) when the bag has no camera.
    """
    camera = choose_camera_topic(info, camera_topics)
    chosen: dict[str, str] = {camera: str(kind_for_msgtype(info.topics[camera]))}
    best: dict[str, str] = {}
    for topic, msgtype in info.topics.items():
        if topic == camera or topic.startswith(GROUND_TRUTH_PREFIX) or msgtype in IMAGE_TYPES:
            continue
        kind = kind_for_msgtype(msgtype)
        if kind is None:
            continue
        sensor = SENSOR_OF_KIND[kind]
        if sensor not in best or _rank(info, topic) < _rank(info, best[sensor]):
            best[sensor] = topic
    chosen.update({t: str(kind_for_msgtype(info.topics[t])) for t in best.values()})
    return chosen


def feed_bag(
    bag: str | Path,
    inputs: Mapping[str, str],
    pipeline: Pipeline,
    also: Sequence[str] = (),
    report: BagReadReport | None = None,
) -> Iterator[Observation | BagMessage]:
    """Replay ``bag``: messages of ``inputs`` (topic -> kind) go through ``pipeline.feed`` (stamped with
    their log time as receive time, as a live subscription would), and each Observation is yielded as it
    completes; messages of the ``also`` topics (ground truth) are yielded as they are, in log order. The
    pipeline is flushed at the end (a caller that stops early gets no flush)."""
    for m in iter_bag_messages(bag, topics=[*inputs, *also], report=report):
        kind = inputs.get(m.topic)
        if kind is None:
            yield m
            continue
        yield from pipeline.feed(kind, m.msg, receive_stamp_ns=m.stamp_ns)
    yield from pipeline.flush()


def bag_observations(
    bag: str | Path, spec: ModalitySpec, camera_topics: Sequence[str] = ()
) -> Iterator[Observation]:
    """The Observations of a bag's sensor inputs, without a model (``Pipeline(None, spec)``)."""
    inputs = select_inputs(bag_info(bag), camera_topics)
    for item in feed_bag(bag, inputs, Pipeline(None, spec)):
        if isinstance(item, Observation):
            yield item
