"""Our generated interfaces across two processes over Fast DDS: a child publishes every message type
and serves PredictRollout; this process subscribes and calls it with rclpy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from conftest import requires_ros

pytestmark = [requires_ros, pytest.mark.ros]

PREFIX = "/ewm_dds_test"

# The child publishes at 20 Hz (reliable, depth 10) until terminated, and answers PredictRollout with
# score = sum of each candidate's actions.
CHILD = r"""
import numpy as np, rclpy
from rclpy.node import Node
from builtin_interfaces.msg import Duration
from sensor_msgs.msg import Image
from embodied_wm.msg import AffordanceMap, AudioFrame, PredictedFrames, TactileArray, WorldState
from embodied_wm.srv import PredictRollout

P = "__PREFIX__"
rclpy.init()
node = Node("ewm_dds_child")

def stamp(msg, frame):
    msg.header.stamp = node.get_clock().now().to_msg()
    msg.header.frame_id = frame
    return msg

def image(v):
    return Image(height=2, width=3, encoding="rgb8", step=9, data=bytes(range(v, v + 18)))

def frames_msg(k, base):
    m = stamp(PredictedFrames(), "camera")
    m.offsets = [Duration(sec=0, nanosec=100_000_000 * (i + 1)) for i in range(k)]
    m.frames = [image(base + i) for i in range(k)]
    m.confidence = [0.5] * k
    m.model_id = "child-model"
    return m

def aff_msg():
    m = stamp(AffordanceMap(), "camera")
    m.channels = ["contact", "movable"]
    m.height, m.width = 2, 3
    m.data = (np.arange(12, dtype=np.float32) / 12).tolist()
    m.horizon = Duration(sec=0, nanosec=500_000_000)
    m.model_id = "child-model"
    return m

pubs = {
    "tactile": node.create_publisher(TactileArray, P + "/tactile", 10),
    "audio": node.create_publisher(AudioFrame, P + "/audio", 10),
    "frames": node.create_publisher(PredictedFrames, P + "/frames", 10),
    "affordance": node.create_publisher(AffordanceMap, P + "/affordance", 10),
    "world": node.create_publisher(WorldState, P + "/world", 10),
}

def tick():
    t = stamp(TactileArray(), "finger")
    t.sensor_model, t.rows, t.cols, t.unit = "mujoco_touch_5x5", 5, 5, "N"
    t.values = (np.arange(25, dtype=np.float32) / 10).tolist()
    pubs["tactile"].publish(t)
    a = stamp(AudioFrame(), "mic")
    a.sample_rate, a.channels, a.encoding = 16000, 1, "S16LE"
    a.data = np.arange(-100, 100, dtype="<i2").tobytes()
    pubs["audio"].publish(a)
    pubs["frames"].publish(frames_msg(3, 7))
    pubs["affordance"].publish(aff_msg())
    w = stamp(WorldState(), "camera")
    w.latent = (np.arange(8, dtype=np.float32) - 4).tolist()
    w.shape = [2, 4]
    w.model_id = "child-model"
    pubs["world"].publish(w)

def rollout(req, resp):
    acts = np.asarray(req.actions, np.float32)
    ok = acts.size == req.num_candidates * req.horizon * req.action_dim
    resp.success = bool(ok)
    resp.message = "ok" if ok else "actions has the wrong length"
    if ok:
        scores = acts.reshape(req.num_candidates, -1).sum(axis=1)
        resp.scores = scores.tolist()
        resp.best_index = int(np.argmax(scores))
        if req.return_predictions:
            resp.predictions = [frames_msg(req.horizon, 10 * i) for i in range(req.num_candidates)]
            resp.affordances = [aff_msg() for _ in range(req.num_candidates)]
    resp.model_id = "child-model"
    return resp

node.create_service(PredictRollout, P + "/predict_rollout", rollout)
node.create_timer(0.05, tick)
print("child ready", flush=True)
rclpy.spin(node)
""".replace("__PREFIX__", PREFIX)


def spin_until(executor: Any, cond: Callable[[], bool], timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():
            return True
        executor.spin_once(timeout_sec=0.05)
    return cond()


def test_messages_and_service_across_processes(spawn: Callable) -> None:
    import rclpy
    from embodied_wm.msg import AffordanceMap, AudioFrame, PredictedFrames, TactileArray, WorldState
    from embodied_wm.srv import PredictRollout
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    from embodied_wm.sensing.audio import decode_audio
    from embodied_wm.sensing.image import image_to_rgb
    from embodied_wm.sensing.tactile import decode_tactile

    child = spawn(["python", "-c", CHILD], "dds_child")
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = Node("ewm_dds_test", context=ctx)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        got: dict[str, Any] = {}
        types = {
            "tactile": TactileArray,
            "audio": AudioFrame,
            "frames": PredictedFrames,
            "affordance": AffordanceMap,
            "world": WorldState,
        }
        for name, msg_type in types.items():
            node.create_subscription(msg_type, f"{PREFIX}/{name}", lambda m, n=name: got.setdefault(n, m), 10)
        assert spin_until(executor, lambda: len(got) == len(types), 15.0), (
            f"received only {sorted(got)} (child alive: {child.poll() is None})"
        )

        stamp, tactile = decode_tactile(got["tactile"])
        assert stamp > 0 and got["tactile"].header.frame_id == "finger"
        np.testing.assert_allclose(tactile, np.arange(25, dtype=np.float32).reshape(5, 5) / 10)
        assert got["tactile"].sensor_model == "mujoco_touch_5x5" and got["tactile"].unit == "N"
        chunk = decode_audio(got["audio"], 16000)
        np.testing.assert_allclose(chunk.samples, np.arange(-100, 100) / 32768, rtol=1e-6)
        frames = got["frames"]
        assert [d.nanosec for d in frames.offsets] == [100_000_000, 200_000_000, 300_000_000]
        assert frames.model_id == "child-model" and list(frames.confidence) == [0.5] * 3
        np.testing.assert_array_equal(
            image_to_rgb(frames.frames[1]), np.arange(8, 26, dtype=np.uint8).reshape(2, 3, 3)
        )
        aff = got["affordance"]
        assert list(aff.channels) == ["contact", "movable"] and (aff.height, aff.width) == (2, 3)
        np.testing.assert_allclose(aff.data, np.arange(12) / 12, rtol=1e-6)
        assert aff.horizon.nanosec == 500_000_000
        world = got["world"]
        np.testing.assert_array_equal(world.latent, np.arange(8) - 4)
        assert list(world.shape) == [2, 4]

        client = node.create_client(PredictRollout, f"{PREFIX}/predict_rollout")
        assert spin_until(executor, lambda: client.service_is_ready(), 10.0)
        req = PredictRollout.Request()
        req.num_candidates, req.horizon, req.action_dim = 3, 2, 6
        actions = np.zeros((3, 2, 6), np.float32)
        actions[1] += 0.5
        actions[2, :, 0] = -1.0
        req.actions = actions.reshape(-1).tolist()
        req.return_predictions = True
        future = client.call_async(req)
        assert spin_until(executor, future.done, 10.0)
        resp = future.result()
        assert resp is not None and resp.success, resp
        np.testing.assert_allclose(resp.scores, [0.0, 6.0, -2.0])
        assert resp.best_index == 1 and resp.model_id == "child-model"
        assert len(resp.predictions) == 3 and len(resp.affordances) == 3
        assert len(resp.predictions[2].frames) == 2
        np.testing.assert_array_equal(
            image_to_rgb(resp.predictions[2].frames[1]), np.arange(21, 39, dtype=np.uint8).reshape(2, 3, 3)
        )
        # a malformed request gets an answer, not a crash
        bad = PredictRollout.Request(num_candidates=2, horizon=2, action_dim=6, actions=[0.0] * 5)
        future = client.call_async(bad)
        assert spin_until(executor, future.done, 10.0)
        assert future.result() is not None and not future.result().success
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
