"""Pipeline: the one decode -> align -> predict path. Real messages (rclpy and rosbags), a real bag
written and read back, and a small real Backend that records what it was asked."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from conftest import requires_ros
from hypothesis import given, settings
from hypothesis import strategies as st

from embodied_wm.io.messages import (
    audio_frame_msg,
    compressed_image_msg,
    float32_multiarray_msg,
    image_msg,
    joint_state_msg,
    tactile_msg,
    twist_msg,
)
from embodied_wm.observation import NS_PER_S, ModalitySpec, Observation, Prediction
from embodied_wm.pipeline import KINDS, Pipeline, PipelineStats, kind_for_msgtype
from embodied_wm.runtime.baselines import CopyLastBackend
from embodied_wm.sensing.aligner import AlignerConfig
from embodied_wm.sensing.audio import encode_audio_frame_fields
from embodied_wm.sensing.image import rgb_to_image_fields

MS = 1_000_000
SPEC = ModalitySpec()
FLAVORS = [pytest.param("rclpy", marks=requires_ros), "rosbags"]


class RecordingBackend(CopyLastBackend):
    """The real copy-last baseline, recording the calls it gets (the order of resets matters)."""

    def __init__(self) -> None:
        super().__init__(image_size=(8, 8), horizon=2, dt_ns=100 * MS)
        self.calls: list[tuple[str, int]] = []

    def predict(self, obs: Observation, actions: np.ndarray | None = None) -> Prediction:
        self.calls.append(("predict", obs.stamp_ns))
        return super().predict(obs, actions)

    def reset(self) -> None:
        self.calls.append(("reset", -1))
        super().reset()


def frame(i: int, h: int = 48, w: int = 64) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = i % 256
    img[i % h, :, 1] = 255
    return img


def sensor_streams(duration_s: float = 1.5) -> dict[str, list[tuple[str, int, dict[str, Any]]]]:
    """Per-topic (kind, stamp, build-args) lists: camera 30 Hz, audio 20 Hz chunks, tactile 100 Hz,
    joints 50 Hz, twist 20 Hz."""
    out: dict[str, list[tuple[str, int, dict[str, Any]]]] = {
        k: [] for k in ("image", "audio", "tactile", "joint_state", "twist")
    }
    for i in range(int(duration_s * 30)):
        out["image"].append(("image", i * 33_333_333 + 1000, {"rgb": frame(i)}))
    for i in range(int(duration_s * 20)):
        samples = np.sin(np.arange(800) * 0.05 + i).astype(np.float32) * 0.3
        out["audio"].append(("audio", i * 50 * MS, {"samples": samples}))
    for i in range(int(duration_s * 100)):
        out["tactile"].append(("tactile", i * 10 * MS + 3 * MS, {"values": np.full((5, 5), i, np.float32)}))
    for i in range(int(duration_s * 50)):
        out["joint_state"].append(
            ("joint_state", i * 20 * MS, {"pos": [i, 1.0, 2.0], "vel": [0.1, 0.2, 0.3]})
        )
    for i in range(int(duration_s * 20)):
        out["twist"].append(("twist", i * 50 * MS + 7 * MS, {"v": [i, 0, 0, 0, 0, 0.5]}))
    return out


def build(kind: str, stamp: int, args: dict[str, Any], flavor: str) -> Any:
    if kind == "image":
        return image_msg(rgb_to_image_fields(args["rgb"]), stamp, "cam", flavor)  # type: ignore[arg-type]
    if kind == "audio":
        return audio_frame_msg(encode_audio_frame_fields(args["samples"], 16000), stamp, flavor=flavor)  # type: ignore[arg-type]
    if kind == "tactile":
        return tactile_msg(args["values"], stamp, flavor=flavor)  # type: ignore[arg-type]
    if kind == "joint_state":
        return joint_state_msg(args["pos"], args["vel"], stamp, flavor=flavor)  # type: ignore[arg-type]
    return twist_msg(args["v"], stamp, flavor=flavor)  # type: ignore[arg-type]


def bag_order(streams: dict[str, list]) -> list:
    return sorted((ev for evs in streams.values() for ev in evs), key=lambda e: e[1])


def live_order(streams: dict[str, list], seed: int, max_delay_s: float = 0.08) -> list:
    """Per-topic order kept, each topic's messages delayed by a random amount (DDS delivery)."""
    rng = np.random.default_rng(seed)
    keyed = []
    for evs in streams.values():
        key = -1.0
        for ev in evs:
            key = max(key + 1, ev[1] + rng.uniform(0, max_delay_s * NS_PER_S))
            keyed.append((key, ev))
    return [ev for _, ev in sorted(keyed, key=lambda k: k[0])]


def deserialize_fastcdr(ts: Any, raw: bytes, msgtype: str) -> Any:
    """rosbags deserialization of rclpy/Fast-CDR bytes. Fast-CDR pads a message that ends in an empty
    float64[] (JointState without effort) to 8 bytes; rosbags accepts at most 3 trailing bytes."""
    from rosbags.serde import SerdeError

    try:
        return ts.deserialize_cdr(raw, msgtype)
    except SerdeError:
        return ts.deserialize_cdr(raw[:-4], msgtype)


def assert_same_observations(a: list[Observation], b: list[Observation]) -> None:
    assert [o.stamp_ns for o in a] == [o.stamp_ns for o in b]
    for x, y in zip(a, b):
        assert x.present == y.present and x.frame_id == y.frame_id
        for m in ("image", "audio", "tactile", "proprio", "action"):
            if getattr(x, m) is not None:
                np.testing.assert_array_equal(getattr(x, m), getattr(y, m))


# ------------------------------------------------------------------------------------------- API
def test_kind_for_msgtype() -> None:
    assert kind_for_msgtype("sensor_msgs/msg/Image") == "image"
    assert kind_for_msgtype("sensor_msgs/Image") == "image"
    assert kind_for_msgtype("sensor_msgs/msg/CompressedImage") == "compressed_image"
    assert kind_for_msgtype("embodied_wm/msg/AudioFrame") == "audio"
    assert kind_for_msgtype("audio_common_msgs/msg/AudioStamped") == "audio"
    assert kind_for_msgtype("embodied_wm/msg/TactileArray") == "tactile"
    assert kind_for_msgtype("std_msgs/msg/Float32MultiArray") == "tactile_f32"
    assert kind_for_msgtype("sensor_msgs/msg/JointState") == "joint_state"
    assert kind_for_msgtype("geometry_msgs/msg/TwistStamped") == "twist"
    assert kind_for_msgtype("embodied_wm/msg/PredictedFrames") is None
    assert kind_for_msgtype("nonsense") is None
    assert set(KINDS) == {
        kind_for_msgtype(t)
        for t in (
            "sensor_msgs/msg/Image",
            "sensor_msgs/msg/CompressedImage",
            "embodied_wm/msg/AudioFrame",
            "embodied_wm/msg/TactileArray",
            "std_msgs/msg/Float32MultiArray",
            "sensor_msgs/msg/JointState",
            "geometry_msgs/msg/TwistStamped",
        )
    }


@pytest.mark.parametrize("flavor", FLAVORS)
def test_feed_all_kinds(flavor: str) -> None:
    pipe = Pipeline(None)
    obs: list[Observation] = []
    for kind, stamp, args in bag_order(sensor_streams()):
        obs += pipe.feed(kind, build(kind, stamp, args, flavor))
    obs += pipe.flush()
    assert len(obs) == 45 and pipe.stats.observations == 45
    assert pipe.stats.received == {"image": 45, "audio": 30, "tactile": 150, "joint_state": 75, "twist": 30}
    assert not pipe.stats.invalid
    late = [o for o in obs if o.stamp_ns > 0.3 * NS_PER_S]
    assert late and all(not o.missing for o in late)
    o = late[0]
    # native resolution, no resizing in the pipeline
    assert o.image is not None and o.image.shape == (48, 64, 3) and o.frame_id == "cam"
    assert (
        o.audio is not None and o.audio.shape == (SPEC.audio_window_samples,) and o.audio.dtype == np.float32
    )
    assert o.tactile is not None and o.tactile.shape == SPEC.tactile_shape
    assert o.proprio is not None and o.proprio.shape == (SPEC.proprio_dim,)
    assert o.action is not None and o.action.shape == (SPEC.action_dim,)
    idx = obs.index(o)
    np.testing.assert_array_equal(o.image, frame(idx))
    json.dumps(pipe.stats.as_dict())


@requires_ros
def test_rclpy_and_rosbags_messages_give_identical_observations() -> None:
    streams = sensor_streams(1.0)
    results = []
    for flavor in ("rclpy", "rosbags"):
        pipe = Pipeline(None)
        obs = [o for k, s, a in bag_order(streams) for o in pipe.feed(k, build(k, s, a, flavor))]
        results.append(obs + pipe.flush())
    assert_same_observations(*results)


@requires_ros
def test_live_interleaving_matches_bag_replay(tmp_path: Path) -> None:
    """rclpy messages in a live-like interleaving vs. the same messages serialized into an MCAP bag,
    read back with rosbags in log-time order: identical Observations and identical predictions."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer

    from embodied_wm.io.typestore import typestore

    streams = sensor_streams(1.5)
    msgtypes = {
        "image": "sensor_msgs/msg/Image",
        "audio": "embodied_wm/msg/AudioFrame",
        "tactile": "embodied_wm/msg/TactileArray",
        "joint_state": "sensor_msgs/msg/JointState",
        "twist": "geometry_msgs/msg/TwistStamped",
    }
    live_msgs = [(k, s, build(k, s, a, "rclpy")) for k, s, a in live_order(streams, seed=3)]

    bag = tmp_path / "bag"
    ts = typestore()
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conns = {k: writer.add_connection(f"/{k}", t, typestore=ts) for k, t in msgtypes.items()}
        for kind, stamp, msg in sorted(live_msgs, key=lambda e: e[1]):
            writer.write(conns[kind], stamp, serialize_message(msg))

    live_backend, bag_backend = RecordingBackend(), RecordingBackend()
    live = Pipeline(live_backend)
    live_preds = [p for k, _, m in live_msgs for p in live.process(k, m)]
    replay = Pipeline(bag_backend)
    replay_preds: list[Prediction] = []
    with Reader(bag) as reader:
        for conn, _, raw in reader.messages():
            kind = kind_for_msgtype(conn.msgtype)
            assert kind is not None
            replay_preds += replay.process(kind, deserialize_fastcdr(ts, raw, conn.msgtype))
    assert [p.stamp_ns for p in live_preds] == [p.stamp_ns for p in replay_preds]
    for a, b in zip(live_preds, replay_preds):
        np.testing.assert_array_equal(a.frames, b.frames)
        assert {"decode", "align", "rollout"} <= set(a.timings_ms)
    assert live.stats.observations == replay.stats.observations


def test_live_interleaving_matches_bag_order_rosbags() -> None:
    streams = sensor_streams(1.5)
    outs = []
    for order in (bag_order(streams), live_order(streams, seed=1), live_order(streams, seed=2)):
        pipe = Pipeline(None)
        obs = [o for k, s, a in order for o in pipe.feed(k, build(k, s, a, "rosbags"))]
        outs.append(obs + pipe.flush())
    assert_same_observations(outs[0], outs[1])
    assert_same_observations(outs[0], outs[2])


# ------------------------------------------------------------------------------------ bad messages
def test_bad_messages_are_counted_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    pipe = Pipeline(None)
    good = rgb_to_image_fields(frame(0))
    bad = dict(good, data=good["data"][:1000])
    with caplog.at_level(logging.WARNING, logger="embodied_wm.pipeline"):
        for _ in range(3):
            assert pipe.feed("image", image_msg(bad, 5, flavor="rosbags")) == []
    assert pipe.stats.invalid["image:data_length"] == 3
    assert len([r for r in caplog.records if "image" in r.message]) == 1  # rate limited
    assert pipe.feed("compressed_image", compressed_image_msg(b"\x00garbage", "jpeg", flavor="rosbags")) == []
    assert pipe.feed("image", image_msg(dict(good, encoding="xyz"), flavor="rosbags")) == []
    af = encode_audio_frame_fields(np.zeros(11), 16000)
    assert pipe.feed("audio", audio_frame_msg(dict(af, data=af["data"][:-1]), flavor="rosbags")) == []
    assert pipe.feed("tactile", tactile_msg(np.zeros((4, 4)), flavor="rosbags")) == []  # spec wants 5x5
    assert pipe.feed("tactile", tactile_msg(np.full((5, 5), np.nan), flavor="rosbags")) == []
    assert pipe.feed("joint_state", joint_state_msg([1, 2], [0, 0], flavor="rosbags")) == []  # 4 != 6
    assert pipe.feed("twist", twist_msg([np.inf, 0, 0, 0, 0, 0], flavor="rosbags")) == []
    assert dict(pipe.stats.invalid) == {
        "image:data_length": 3,
        "compressed_image:bad_compressed": 1,
        "image:unknown_encoding": 1,
        "audio:bad_audio": 1,
        "tactile:bad_shape": 1,
        "tactile:non_finite": 1,
        "joint_state:bad_shape": 1,
        "twist:non_finite": 1,
    }
    assert pipe.stats.observations == 0 and sum(pipe.stats.received.values()) == 10


def test_programming_errors_raise() -> None:
    pipe = Pipeline(None)
    with pytest.raises(ValueError, match="unknown message kind"):
        pipe.feed("lidar", object())
    with pytest.raises(ValueError, match="receive_stamp_ns"):
        pipe.feed("tactile_f32", float32_multiarray_msg(np.zeros((5, 5)), "rosbags"))
    with pytest.raises(RuntimeError, match="backend"):
        pipe.predict(Observation(stamp_ns=0, image=frame(0)))
    with pytest.raises(ValueError, match="spec"):
        Pipeline(None, ModalitySpec(proprio_dim=8), AlignerConfig(spec=ModalitySpec(proprio_dim=14)))
    pipe = Pipeline(None, ModalitySpec(proprio_dim=14), AlignerConfig(tolerance_s=0.1))
    assert pipe.aligner.config.spec.proprio_dim == 14 and pipe.aligner.config.tolerance_s == 0.1


@pytest.mark.parametrize("flavor", FLAVORS)
def test_tactile_f32_uses_receive_stamp(flavor: str) -> None:
    pipe = Pipeline(None)
    for k in range(50):
        pipe.feed(
            "tactile_f32", float32_multiarray_msg(np.full((5, 5), k), flavor), receive_stamp_ns=k * 10 * MS
        )
    pipe.feed("tactile_f32", float32_multiarray_msg(np.full(25, 99.0), flavor, layout=False), 500 * MS)
    obs = pipe.feed("image", image_msg(rgb_to_image_fields(frame(1)), 500 * MS, flavor=flavor))  # type: ignore[arg-type]
    assert len(obs) == 1 and obs[0].tactile is not None
    assert obs[0].tactile.shape == (5, 5) and obs[0].tactile[0, 0] == 99


@pytest.mark.parametrize("flavor", FLAVORS)
def test_compressed_images_keep_native_size(flavor: str) -> None:
    pipe = Pipeline(None)
    ok, buf = cv2.imencode(".png", frame(3, 30, 40)[:, :, ::-1])
    assert ok
    obs = pipe.feed("compressed_image", compressed_image_msg(buf.tobytes(), "png", 10, flavor=flavor))  # type: ignore[arg-type]
    assert len(obs) == 1 and obs[0].image is not None
    np.testing.assert_array_equal(obs[0].image, frame(3, 30, 40))


# ------------------------------------------------------------------------------------------ predict
def test_predict_adds_timings_and_resets_backend_on_bag_loop() -> None:
    backend = RecordingBackend()
    pipe = Pipeline(backend)
    preds: list[Prediction] = []
    for loop in range(2):
        for i in range(60):  # 2 s at 30 Hz, then the bag loops back to 0
            msg = image_msg(rgb_to_image_fields(frame(i)), i * 33 * MS, flavor="rosbags")
            preds += pipe.process("image", msg)
        if loop == 0:
            assert ("reset", -1) not in backend.calls
    assert len(preds) == 120 and pipe.stats.predictions == 120 and pipe.stats.resets == 1
    resets = [i for i, c in enumerate(backend.calls) if c[0] == "reset"]
    assert len(resets) == 1
    # the reset comes right before the first prediction of the new loop
    assert backend.calls[resets[0] + 1] == ("predict", 0)
    assert backend.calls[resets[0] - 1] == ("predict", 59 * 33 * MS)
    for p in preds:
        assert p.timings_ms["decode"] >= 0 and p.timings_ms["align"] >= 0 and "rollout" in p.timings_ms


def test_other_pipelines_can_predict_fed_observations() -> None:
    """The offline evaluation feeds once and predicts with one Pipeline per method: those see the
    feeder's resets too."""
    feeder = Pipeline(None)
    backends = [RecordingBackend(), RecordingBackend()]
    methods = [Pipeline(b) for b in backends]
    for _loop in range(2):
        for i in range(45):
            msg = image_msg(rgb_to_image_fields(frame(i)), i * 33 * MS, flavor="rosbags")
            for obs in feeder.feed("image", msg):
                for m in methods:
                    m.predict(obs)
    for b in backends:
        assert [c for c in b.calls if c[0] == "reset"] == [("reset", -1)]
        assert b.calls[b.calls.index(("reset", -1)) + 1] == ("predict", 0)


def test_stats_dataclass() -> None:
    stats = PipelineStats()
    stats.invalid["image:data_length"] += 2
    d = stats.as_dict()
    assert d["invalid"] == {"image:data_length": 2} and d["observations"] == 0
    json.dumps(d)


ENCODINGS = [
    "rgb8",
    "bgr8",
    "rgba8",
    "mono8",
    "mono16",
    "16UC1",
    "32FC1",
    "yuv422",
    "yuyv",
    "bayer_grbg8",
    "8UC2",
    "64FC1",
    "rgb16",
    "hsv",
    "",
]


@settings(max_examples=150, deadline=None)
@given(
    h=st.integers(0, 9),
    w=st.integers(0, 9),
    step_extra=st.integers(-4, 6),
    enc=st.sampled_from(ENCODINGS),
    big=st.booleans(),
    nbytes=st.one_of(st.none(), st.integers(0, 400)),
    seed=st.integers(0, 1000),
)
def test_fuzzed_images_never_raise(
    h: int, w: int, step_extra: int, enc: str, big: bool, nbytes: int | None, seed: int
) -> None:
    """Whatever the header says, feed() returns (an observation or nothing) and counts rejects."""
    rng = np.random.default_rng(seed)
    step = max(0, w * 3 + step_extra)
    n = step * h if nbytes is None else nbytes
    fields = {
        "height": h,
        "width": w,
        "encoding": enc,
        "step": step,
        "is_bigendian": int(big),
        "data": rng.integers(0, 256, n, dtype=np.uint8).tobytes(),
    }
    pipe = Pipeline(None)
    out = pipe.feed("image", image_msg(fields, 1, flavor="rosbags"))
    assert len(out) + sum(pipe.stats.invalid.values()) == 1
    for o in out:
        assert o.image is not None and o.image.dtype == np.uint8 and o.image.shape == (h, w, 3)
    pipe.feed("compressed_image", compressed_image_msg(fields["data"], "jpeg", 2, flavor="rosbags"))
    assert pipe.stats.received["compressed_image"] == 1
