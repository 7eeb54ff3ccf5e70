"""perception_node (and planner_node, bag_player) as real processes over Fast DDS.

* a recorded bag played in stamp order gives PredictedFrames (K frames stamped ahead) and AffordanceMaps,
  and the live predictions equal an offline Pipeline run over the same bag with the same backend;
* lifecycle transitions through lifecycle_msgs services, and ~/predict_rollout (N candidates back,
  bad requests rejected with a reason), plus planner_node commanding over the service;
* a modality that stops shows up in /diagnostics while predictions continue; malformed messages are
  counted there and do not stop the node;
* a camera outage: affordances and world state keep coming from the other sensors (predicted frames
  withheld), /diagnostics says "camera missing", and predicted frames come back with the camera.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import REPO, requires_ros

pytestmark = [pytest.mark.ros, pytest.mark.slow, requires_ros]

NODE = "perception_node"
T0_NS = 1_700_000_000_000_000_000
DT_NS = 100_000_000
INPUT_TOPICS = ["/camera/image_raw", "/audio", "/tactile", "/joint_states", "/cmd_vel_ee"]
#: perception_node's input names (diagnostics keys), in the order of INPUT_TOPICS.
INPUTS = ["camera", "audio", "tactile", "joint_states", "action"]


# ------------------------------------------------------------------------------------ fixtures
def _record_sim_bag(out: Path) -> Path | None:
    """A 40-frame simulated episode, or None when the simulator cannot run here."""
    cmd = [
        sys.executable,
        "-m",
        "embodied_wm.sim.cli",
        "record",
        "--episodes",
        "1",
        "--frames",
        "40",
        "--seed",
        "0",
        "--res",
        "64",
        "--out",
        str(out),
        "--quiet",
    ]
    try:
        subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=REPO)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, FileNotFoundError):
        return None
    bag = out / "episode_00000"
    return bag if (bag / "metadata.yaml").is_file() else None


def _write_synthetic_bag(out: Path, frames: int = 40) -> Path:
    """Fallback: camera/audio/tactile/joints/twist written with rosbags, same topics as the simulator."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from embodied_wm.io.typestore import typestore

    store = typestore()
    types = {
        "/camera/image_raw": "sensor_msgs/msg/Image",
        "/audio": "embodied_wm/msg/AudioFrame",
        "/tactile": "embodied_wm/msg/TactileArray",
        "/joint_states": "sensor_msgs/msg/JointState",
        "/cmd_vel_ee": "geometry_msgs/msg/TwistStamped",
    }
    bag = out / "synthetic"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as w:
        conns = {t: w.add_connection(t, ty, typestore=store) for t, ty in types.items()}
        for i in range(frames):
            for topic, msg in _rosbags_messages(store, i):
                w.write(conns[topic], T0_NS + i * DT_NS, store.serialize_cdr(msg, types[topic]))
    return bag


def _rosbags_messages(store: Any, i: int) -> list[tuple[str, Any]]:
    T = store.types
    stamp_ns = T0_NS + i * DT_NS

    def header(ns: int, fid: str) -> Any:
        return T["std_msgs/msg/Header"](
            stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9, nanosec=ns % 10**9), frame_id=fid
        )

    img = _frame(i)
    audio = _audio_bytes(i)
    return [
        (
            "/audio",
            T["embodied_wm/msg/AudioFrame"](
                header=header(stamp_ns - DT_NS, "mic"),
                sample_rate=16000,
                channels=1,
                encoding="S16LE",
                data=audio,
            ),
        ),
        (
            "/tactile",
            T["embodied_wm/msg/TactileArray"](
                header=header(stamp_ns, "tip"),
                sensor_model="syn",
                rows=5,
                cols=5,
                values=np.full(25, i % 3, np.float32),
                unit="N",
            ),
        ),
        (
            "/joint_states",
            T["sensor_msgs/msg/JointState"](
                header=header(stamp_ns, ""),
                name=["a", "b", "c"],
                position=np.array([i, 0, 0], np.float64) * 0.01,
                velocity=np.zeros(3),
                effort=np.zeros(0),
            ),
        ),
        (
            "/cmd_vel_ee",
            T["geometry_msgs/msg/TwistStamped"](
                header=header(stamp_ns, "world"),
                twist=T["geometry_msgs/msg/Twist"](
                    linear=T["geometry_msgs/msg/Vector3"](x=0.05, y=0.0, z=0.0),
                    angular=T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0),
                ),
            ),
        ),
        (
            "/camera/image_raw",
            T["sensor_msgs/msg/Image"](
                header=header(stamp_ns, "camera_optical_frame"),
                height=64,
                width=64,
                encoding="rgb8",
                is_bigendian=0,
                step=192,
                data=img.reshape(-1),
            ),
        ),
    ]


def _frame(i: int) -> np.ndarray:
    """64x64 RGB: gradient background and a square moving 2 px per frame (motion for the baselines)."""
    yy, xx = np.mgrid[0:64, 0:64]
    img = np.stack([xx * 3, yy * 3, np.full_like(xx, 60)], axis=-1).astype(np.uint8)
    x = 4 + (2 * i) % 48
    img[24:36, x : x + 12] = (250, 40, 40)
    return img


def _audio_bytes(i: int) -> np.ndarray:
    t = np.arange(1600) / 16000.0
    s = (0.2 * np.sin(2 * np.pi * (200 + 10 * i) * t) * 32767).astype("<i2")
    return np.frombuffer(s.tobytes(), np.uint8)


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ros_bags")
    return _record_sim_bag(root / "sim") or _write_synthetic_bag(root)


class Probe:
    """The test's own rclpy node, in its own context, spun in a background thread.

    Every collected topic also counts the samples the middleware reports lost (``lost``): predictions
    are published reliably, so a lost one is a failure of the node's transport set-up, not noise.
    """

    def __init__(self, name: str) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.ctx = rclpy.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node(name, context=self.ctx)
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.lock = threading.Lock()
        self.msgs: dict[str, list[Any]] = {}
        self.lost: dict[str, int] = {}
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._stop = False
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop:
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception as exc:
                if self._stop or not self.ctx.ok():  # context shut down at teardown
                    return
                # Anything else must not silently end the collection (every later wait would time
                # out for an unrelated reason): keep spinning, and report it with the next timeout.
                self.errors.append(f"{type(exc).__name__}: {exc}")

    def collect(self, msg_type: Any, topic: str, key: str | None = None, depth: int = 200) -> None:
        from rclpy.event_handler import SubscriptionEventCallbacks

        from embodied_wm.ros.qos import make_qos

        key = key or topic
        self.msgs.setdefault(key, [])
        self.lost.setdefault(key, 0)

        def _cb(m: Any) -> None:
            with self.lock:
                self.msgs[key].append(m)

        def _lost(info: Any) -> None:
            with self.lock:
                self.lost[key] = int(info.total_count)

        self.node.create_subscription(
            msg_type,
            topic,
            _cb,
            make_qos("reliable", depth),
            event_callbacks=SubscriptionEventCallbacks(message_lost=_lost),
        )

    def get(self, key: str) -> list[Any]:
        with self.lock:
            return list(self.msgs.get(key, []))

    def node_status(self, suffix: str, key: str = "diag") -> dict[str, str]:
        """KeyValues of perception_node's newest ``<node>: <suffix>`` status ({} before the first)."""
        for arr in reversed(self.get(key)):
            for st in arr.status:
                if st.name == f"{NODE}{suffix}":
                    return {kv.key: kv.value for kv in st.values}
        return {}

    def summary(self) -> str:
        """What arrived, what was lost, and the node's own accounting (for timeout messages)."""
        with self.lock:
            counts = {k: len(v) for k, v in self.msgs.items()}
            lost = {k: v for k, v in self.lost.items() if v}
        parts = [f"received {counts}", f"lost {lost}"]
        # More publishers than this test started means another session shares our DDS domain.
        graph = {t: self.node.count_publishers(t) for t in (f"/{NODE}/predicted_frames", INPUT_TOPICS[0])}
        parts.append(f"publishers in the graph {graph}")
        if self.errors:
            parts.append(f"probe executor errors {self.errors[-3:]}")
        for suffix, keys in (
            (": inputs", ("/count", "/publishers", "/lost", "silent_inputs")),
            (": inference", ("predictions", "dropped/", "busy", "subscribers/")),
            (": messages", ("received/", "observations")),
        ):
            vals = self.node_status(suffix) if "diag" in self.msgs else {}
            parts.append(f"node{suffix} " + str({k: v for k, v in vals.items() if any(x in k for x in keys)}))
        return "; ".join(parts)

    def wait_for(self, cond: Callable[[], bool], timeout: float, what: str = "") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if cond():
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what} ({self.summary()})")

    def wait_connected(
        self, inputs: Sequence[str] = (), outputs: Mapping[str, int] | None = None, timeout: float = 30.0
    ) -> None:
        """Wait until perception_node's /diagnostics say that its subscription on each of ``inputs`` is
        matched with a publisher, and each output publisher (``frames``, ``affordance``, ...) with at
        least that many subscriptions. DDS matches the two ends of a topic independently: our publisher
        seeing the node's subscription (``get_subscription_count``) does not mean the node's reader knows
        our writer yet, and a best-effort reader drops what arrives from a writer it has not matched;
        likewise the node's publisher sends nothing to a subscription it has not matched. Only the
        node can tell, hence the handshake through its diagnostics."""
        want = dict(outputs or {})

        def _ok() -> bool:
            ins, inf = self.node_status(": inputs"), self.node_status(": inference")
            return all(int(ins.get(f"{i}/publishers", "0")) >= 1 for i in inputs) and all(
                int(inf.get(f"subscribers/{o}", "0")) >= n for o, n in want.items()
            )

        self.wait_for(_ok, timeout, f"perception_node to match inputs {list(inputs)} and outputs {want}")

    def call(self, srv_type: Any, name: str, request: Any, timeout: float = 20.0) -> Any:
        """Call a service. A fresh client can lose the first response: DDS matches the request and the
        response paths separately, wait_for_service only sees the request path, and the server then logs
        "failed to send response (timeout)". So wait for the response path to settle, and resend
        idempotent queries (GetState) that got no answer."""
        from lifecycle_msgs.srv import GetState

        client = self.node.create_client(srv_type, name)
        try:
            assert client.wait_for_service(timeout_sec=timeout), f"service {name} not available"
            time.sleep(0.5)
            end = time.monotonic() + timeout
            resend_s = 3.0 if srv_type is GetState else timeout
            while time.monotonic() < end:
                fut = client.call_async(request)
                until = min(end, time.monotonic() + resend_s)
                while not fut.done() and time.monotonic() < until:
                    time.sleep(0.02)
                if fut.done():
                    return fut.result()
            raise AssertionError(f"service {name} did not answer in {timeout} s")
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.executor.shutdown()
        self.node.destroy_node()
        self.ctx.try_shutdown()


@pytest.fixture()
def probe(request: pytest.FixtureRequest) -> Iterator[Probe]:
    p = Probe("test_probe_" + request.node.name.replace("[", "_").replace("]", "").replace("-", "_")[:40])
    yield p
    p.close()


class SyntheticRobot:
    """Publishes camera, audio, tactile, joints and twist from the test process (data time T0 + i*dt)."""

    def __init__(self, node: Any) -> None:
        from embodied_wm.msg import AudioFrame, TactileArray
        from geometry_msgs.msg import TwistStamped
        from sensor_msgs.msg import Image, JointState

        from embodied_wm.ros.qos import make_qos

        q = make_qos("reliable", 50)
        self.pubs = {
            "camera": node.create_publisher(Image, "/camera/image_raw", q),
            "audio": node.create_publisher(AudioFrame, "/audio", q),
            "tactile": node.create_publisher(TactileArray, "/tactile", q),
            "joints": node.create_publisher(JointState, "/joint_states", q),
            "twist": node.create_publisher(TwistStamped, "/cmd_vel_ee", q),
        }

    def wait_matched(self, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(p.get_subscription_count() > 0 for p in self.pubs.values()):
                return
            time.sleep(0.05)
        raise AssertionError("perception_node did not subscribe to all inputs")

    def publish(
        self,
        i: int,
        audio: bool = True,
        bad_image: bool = False,
        nan_tactile: bool = False,
        tactile_shape: tuple[int, int] = (5, 5),
        camera: bool = True,
    ) -> None:
        from embodied_wm.msg import AudioFrame, TactileArray
        from geometry_msgs.msg import TwistStamped
        from sensor_msgs.msg import JointState

        from embodied_wm.ros.conversions import ns_to_time, rgb_to_image_msg

        ns = T0_NS + i * DT_NS
        if audio:
            a = AudioFrame(sample_rate=16000, channels=1, encoding="S16LE")
            a.header.stamp = ns_to_time(ns - DT_NS)
            a.data = _audio_bytes(i).tobytes()
            self.pubs["audio"].publish(a)
        rows, cols = tactile_shape
        t = TactileArray(sensor_model="syn", rows=rows, cols=cols, unit="N")
        t.header.stamp = ns_to_time(ns)
        vals = np.full(rows * cols, 0.5, np.float32)
        if nan_tactile:
            vals[3] = np.nan
        t.values = vals.tolist()
        self.pubs["tactile"].publish(t)
        j = JointState(name=["a", "b", "c"], position=[0.01 * i, 0.0, 0.0], velocity=[0.0, 0.0, 0.0])
        j.header.stamp = ns_to_time(ns)
        self.pubs["joints"].publish(j)
        tw = TwistStamped()
        tw.header.stamp, tw.header.frame_id = ns_to_time(ns), "world"
        tw.twist.linear.x = 0.05
        self.pubs["twist"].publish(tw)
        if not camera:
            return
        img = rgb_to_image_msg(_frame(i), ns, "camera_optical_frame")
        if bad_image:
            img.data = img.data[:-100]  # shorter than step * height
        self.pubs["camera"].publish(img)


def _node_cmd(*params: str, params_file: bool = False) -> list[str]:
    cmd = ["python", "-m", "embodied_wm.ros.perception_node", "--ros-args"]
    if params_file:
        cmd += ["--params-file", str(REPO / "config" / "perception.yaml")]
    for p in params:
        cmd += ["-p", p]
    return cmd


def _alive(proc: subprocess.Popen) -> None:
    assert proc.poll() is None, f"process exited with {proc.returncode} (see out/test-logs)"


def _diag_values(arr: Any, suffix: str) -> dict[str, str]:
    from embodied_wm.ros.diagnostics import status_values

    return status_values(arr, suffix)


# --------------------------------------------------------------------------------------- tests
def _model_dir() -> Path | None:
    """The shipped model (models/tiny) or EWM_TEST_MODEL_DIR; None when neither has files."""
    import os

    from embodied_wm.runtime.select import default_model_dir, model_dir_present

    env = os.environ.get("EWM_TEST_MODEL_DIR")
    if env:
        return Path(env) if model_dir_present(Path(env)) else None
    return default_model_dir()


@pytest.mark.parametrize("backend", ["linear", "model"])
def test_bag_replay_predictions_match_offline_pipeline(
    spawn: Callable, probe: Probe, bag: Path, backend: str
) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from embodied_wm.msg import AffordanceMap, PredictedFrames

    from embodied_wm.io.bag import iter_bag_messages
    from embodied_wm.pipeline import Pipeline, kind_for_msgtype
    from embodied_wm.ros.conversions import (
        affordance_msg_to_numpy,
        duration_to_ns,
        frames_msg_to_numpy,
        time_to_ns,
    )
    from embodied_wm.runtime.select import create_backend

    if backend == "model":
        mdir = _model_dir()
        assert mdir is not None, "models/tiny is shipped with the package but has no model files"
        node_params = ["backend:=auto", f"model:={mdir}"]
        offline_backend = create_backend("auto", model_dir=mdir)
    else:
        node_params = ["backend:=linear"]
        offline_backend = create_backend("linear")
    # Reliable inputs with deep queues: the node's reader may match the player's writers a little after the
    # player sees it (and starts), and reliability then re-sends what was published in between; a deep
    # reader queue keeps a loaded machine's scheduling hiccup from overwriting frames before the node
    # takes them (with the default depth 5 such a replay is thinned, which is what sensor QoS is for).
    reliable = [p for i in INPUTS for p in (f"qos.{i}.reliability:=reliable", f"qos.{i}.depth:=100")]
    probe.collect(PredictedFrames, f"/{NODE}/predicted_frames", "frames")
    probe.collect(AffordanceMap, f"/{NODE}/affordance", "aff")
    probe.collect(DiagnosticArray, "/diagnostics", "diag", depth=20)
    node = spawn(_node_cmd(*node_params, "use_sim_time:=true", *reliable, params_file=True), "perception")
    # Outputs are volatile: a prediction published before the node's publisher matched our subscription
    # never reaches us. Start the bag only once the node says both are matched.
    probe.wait_connected(outputs={"frames": 1, "affordance": 1}, timeout=60)
    # A best-effort publisher can never feed the node's reliable joint_states subscription: the node must
    # say so in /diagnostics (otherwise it looks like a silent sensor).
    from sensor_msgs.msg import JointState

    from embodied_wm.ros.qos import make_qos

    probe.node.create_publisher(JointState, "/joint_states", make_qos("best_effort", 1))
    player = spawn(
        [
            "python",
            "-m",
            "embodied_wm.tools.bag_player",
            str(bag),
            "--clock",
            "--rate",
            "1.0",
            "--wait-for",
            *INPUT_TOPICS,
            "--delay",
            "0.3",
        ],
        "bag_player",
    )
    assert player.wait(timeout=90) == 0
    n_cam = sum(1 for _ in iter_bag_messages(bag, ["/camera/image_raw"]))

    # The node's own accounting once it is done: every camera frame received, every observation the
    # aligner made either predicted or dropped as stale (inference still busy with an older one: the
    # node predicts the latest observation only), and every published prediction delivered to us.
    def _settled() -> bool:
        msgs, inf = probe.node_status(": messages"), probe.node_status(": inference")
        if not msgs or not inf or inf["busy"] != "False" or msgs.get("received/image") != str(n_cam):
            return False
        n_pred = int(inf["predictions"])
        done = n_pred + sum(
            int(inf[k]) for k in ("dropped/stale", "dropped/rate_limited", "prediction_errors")
        )
        return (
            done == int(msgs["observations"])
            and min(len(probe.get("frames")), len(probe.get("aff"))) >= n_pred
        )

    probe.wait_for(_settled, 20, "all observations predicted or dropped as stale, predictions delivered")
    _alive(node)
    inf = probe.node_status(": inference")
    n_pred = int(inf["predictions"])
    assert inf["prediction_errors"] == "0" and inf["dropped/rate_limited"] == "0", inf
    # Reliable outputs lose nothing, even when this process is slow to read them for a moment.
    assert probe.lost["frames"] == probe.lost["aff"] == 0, probe.lost

    frames_msgs = {time_to_ns(m.header.stamp): m for m in probe.get("frames")}
    aff_msgs = {time_to_ns(m.header.stamp): m for m in probe.get("aff")}
    assert len(probe.get("frames")) == len(frames_msgs) == n_pred
    assert set(aff_msgs) == set(frames_msgs)
    live: dict[int, np.ndarray] = {}
    for stamp, m in frames_msgs.items():
        assert m.header.frame_id == "camera_optical_frame" and m.model_id == offline_backend.model_id
        k = len(m.frames)
        assert k == offline_backend.horizon
        assert [duration_to_ns(o) for o in m.offsets] == [(i + 1) * offline_backend.dt_ns for i in range(k)]
        stamps, arr = frames_msg_to_numpy(m)
        assert [time_to_ns(f.header.stamp) for f in m.frames] == stamps.tolist()
        assert (stamps > stamp).all()
        live[stamp] = arr
        channels, aff = affordance_msg_to_numpy(aff_msgs[stamp])
        assert channels == list(offline_backend.affordance_channels)
        assert aff.shape == (len(channels), *offline_backend.image_size)

    # Offline: the same bag through one Pipeline with the same backend, predicting the observations the
    # node predicted (so a frame the node skipped as stale is skipped here too).
    pipeline = Pipeline(offline_backend)
    offline: dict[int, np.ndarray] = {}
    n_obs = 0
    for bm in iter_bag_messages(bag, INPUT_TOPICS):
        kind = kind_for_msgtype(bm.msgtype)
        assert kind is not None
        for obs in pipeline.feed(kind, bm.msg, receive_stamp_ns=bm.stamp_ns):
            n_obs += 1
            if obs.stamp_ns in live:
                offline[obs.stamp_ns] = pipeline.predict(obs).frames
    assert set(offline) == set(live)
    # The node aligned exactly the observations the offline run did (the last frame stays held: nothing
    # newer arrives to complete it) and predicted at least half of them: stale drops need inference
    # slower than the 10 Hz camera, which only a heavily loaded machine causes.
    assert int(probe.node_status(": messages")["observations"]) == n_obs
    assert 2 * len(live) >= n_obs, f"only {len(live)} of {n_obs} observations predicted ({inf})"
    worst = max(int(np.abs(live[s].astype(int) - offline[s].astype(int)).max()) for s in live)
    assert worst <= 1, f"live and offline predictions differ by {worst} grey levels"

    # Diagnostics from the same run: inputs seen, nothing invalid, latency reported.
    probe.wait_for(
        lambda: any(s.name.endswith(": inference") for a in probe.get("diag") for s in a.status),
        10,
        "diagnostics",
    )
    last = [a for a in probe.get("diag") if any(s.name.startswith(NODE) for s in a.status)][-1]
    inf = _diag_values(last, ": inference")
    assert inf["backend"] == offline_backend.name and int(inf["predictions"]) == len(live)
    assert "latency_ms/predict/p50" in inf
    assert _diag_values(last, ": messages").get("received/image") == str(n_cam)
    inputs = _diag_values(last, ": inputs")
    assert "RELIABILITY" in inputs.get("joint_states/qos_incompatible", ""), inputs


def test_lifecycle_services_and_predict_rollout(spawn: Callable, probe: Probe, tmp_path: Path) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from embodied_wm.msg import PredictedFrames
    from embodied_wm.srv import PredictRollout
    from lifecycle_msgs.msg import State, Transition
    from lifecycle_msgs.srv import ChangeState, GetState
    from sensor_msgs.msg import Image

    from embodied_wm.ros.conversions import rgb_to_image_msg

    # Our subscriptions and the robot's publishers exist before the node does, so the node matches them
    # as soon as it creates its own ends (configure: publishers, activate: subscriptions).
    probe.collect(PredictedFrames, f"/{NODE}/predicted_frames", "frames")
    probe.collect(Image, f"/{NODE}/preview/frames", "preview")
    probe.collect(DiagnosticArray, "/diagnostics", "diag", depth=20)
    robot = SyntheticRobot(probe.node)
    node = spawn(_node_cmd("autostart:=false", "backend:=linear", "diagnostics.period_s:=0.5"), "perception")

    def state() -> int:
        return int(probe.call(GetState, f"/{NODE}/get_state", GetState.Request()).current_state.id)

    def change(tid: int) -> bool:
        req = ChangeState.Request()
        req.transition.id = tid
        return bool(probe.call(ChangeState, f"/{NODE}/change_state", req).success)

    assert state() == State.PRIMARY_STATE_UNCONFIGURED
    assert not change(Transition.TRANSITION_ACTIVATE)  # not allowed from unconfigured
    assert change(Transition.TRANSITION_CONFIGURE) and state() == State.PRIMARY_STATE_INACTIVE

    def rollout_request(n: int, k: int = 8, a: int = 6, goal: bool = False, preds: bool = False) -> Any:
        req = PredictRollout.Request(num_candidates=n, horizon=k, action_dim=a, return_predictions=preds)
        req.actions = np.random.default_rng(0).uniform(-0.05, 0.05, n * k * a).astype(np.float32).tolist()
        if goal:
            req.goal = rgb_to_image_msg(_frame(30), 0, "")
        return req

    inactive = probe.call(PredictRollout, f"/{NODE}/predict_rollout", rollout_request(2))
    assert not inactive.success and "inactive" in inactive.message

    assert change(Transition.TRANSITION_ACTIVATE) and state() == State.PRIMARY_STATE_ACTIVE
    # Sensor inputs are best effort (REP-2003): what we publish before the node's new subscriptions have
    # matched our publishers is dropped, so both ends must be matched before the data starts.
    robot.wait_matched()
    probe.wait_connected(INPUTS, {"frames": 1, "preview_frames": 1})
    for i in range(12):
        robot.publish(i)
        time.sleep(0.03)
    probe.wait_for(lambda: len(probe.get("frames")) >= 5, 20, "predictions after activate")
    probe.wait_for(lambda: len(probe.get("preview")) >= 1, 10, "preview image")
    assert probe.lost["frames"] == 0, probe.lost
    pv = probe.get("preview")[-1]
    assert pv.encoding == "rgb8" and pv.height == 2 * 64 and pv.width > pv.height

    # The planner interface: N candidates in, N scores (and N x K frames) out.
    ok = probe.call(PredictRollout, f"/{NODE}/predict_rollout", rollout_request(5, goal=True, preds=True))
    assert ok.success, ok.message
    assert len(ok.scores) == 5 and 0 <= ok.best_index < 5 and ok.best_index == int(np.argmax(ok.scores))
    assert len(ok.predictions) == 5 and all(len(p.frames) == 8 for p in ok.predictions)
    assert len(ok.affordances) == 5 and ok.model_id == "linear"
    cheap = probe.call(PredictRollout, f"/{NODE}/predict_rollout", rollout_request(3))
    assert cheap.success and len(cheap.scores) == 3 and not cheap.predictions
    bad = rollout_request(3)
    bad.actions = bad.actions[:-1]
    r = probe.call(PredictRollout, f"/{NODE}/predict_rollout", bad)
    assert not r.success and "len(actions)" in r.message
    r = probe.call(PredictRollout, f"/{NODE}/predict_rollout", rollout_request(2, k=5))
    assert not r.success and "horizon" in r.message
    r = probe.call(PredictRollout, f"/{NODE}/predict_rollout", rollout_request(2, a=3))
    assert not r.success and "action_dim" in r.message

    # Pixel goals: per candidate the expected designated-pixel positions per step, scores from their goal
    # distance (the linear baseline is action-blind: its maps stay put, so the nearer goal scores higher
    # for every candidate alike). Old-style requests above carry none of these fields and still work.
    px = rollout_request(3)
    px.designated_pixels, px.goal_pixels = [10.0, 30.0, 40.0, 12.0], [20.0, 30.0, 40.0, 50.0]
    px.score_channels, px.score_weights = ["contact", "pixel"], [0.0, 1.0]
    r = probe.call(PredictRollout, f"/{NODE}/predict_rollout", px)
    assert r.success, r.message
    assert r.num_pixels == 2 and len(r.pixel_positions) == 3 * 8 * 2 * 2
    pos = np.asarray(r.pixel_positions).reshape(3, 8, 2, 2)
    assert np.allclose(pos, [[10.0, 30.0], [40.0, 12.0]], atol=1e-4)
    assert np.allclose(r.scores, -(10.0 + 38.0) / 64, atol=1e-5)
    for field, values, needle in (
        ("designated_pixels", [64.0, 3.0], "designated pixel 0 (u=64, v=3) is outside the 64x64 image"),
        ("goal_pixels", [5.0, -3.0], "goal pixel 0 (u=5, v=-3) is outside the 64x64 image"),
        ("goal_pixels", [5.0], "need (u, v) pairs"),
    ):
        bad = rollout_request(2)
        bad.designated_pixels, bad.goal_pixels = [10.0, 30.0], [20.0, 30.0]
        setattr(bad, field, values)
        r = probe.call(PredictRollout, f"/{NODE}/predict_rollout", bad)
        assert not r.success and needle in r.message, r.message

    # Parameters are validated when set at run time too (ros2 param set goes through this service).
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    req = SetParameters.Request(
        parameters=[
            Parameter("rate_hz", value=-1.0).to_parameter_msg(),
            Parameter("backend", value="x").to_parameter_msg(),
        ]
    )
    res = probe.call(SetParameters, f"/{NODE}/set_parameters", req).results
    assert not res[0].successful and "rate_hz must be >= 0" in res[0].reason
    assert not res[1].successful and "backend must be one of" in res[1].reason
    req = SetParameters.Request(parameters=[Parameter("rate_hz", value=5.0).to_parameter_msg()])
    assert probe.call(SetParameters, f"/{NODE}/set_parameters", req).results[0].successful

    # Deactivate: no more predictions, whatever arrives.
    assert change(Transition.TRANSITION_DEACTIVATE) and state() == State.PRIMARY_STATE_INACTIVE
    time.sleep(0.3)
    n_before = len(probe.get("frames"))
    for i in range(12, 20):
        robot.publish(i)
        time.sleep(0.03)
    time.sleep(1.0)
    assert len(probe.get("frames")) == n_before
    assert change(Transition.TRANSITION_CLEANUP) and state() == State.PRIMARY_STATE_UNCONFIGURED
    # The service is served by the companion node (its own executor thread) and goes with cleanup.
    assert (f"{NODE}_rollout", "/") in probe.node.get_node_names_and_namespaces()
    probe.wait_for(
        lambda: f"/{NODE}/predict_rollout" not in dict(probe.node.get_service_names_and_types()),
        10,
        "predict_rollout removed by cleanup",
    )
    # And back again: configure + activate after cleanup works.
    assert change(Transition.TRANSITION_CONFIGURE) and change(Transition.TRANSITION_ACTIVATE)
    _alive(node)


def test_missing_modality_and_malformed_messages_with_planner(
    spawn: Callable, probe: Probe, tmp_path: Path
) -> None:
    from diagnostic_msgs.msg import DiagnosticArray
    from embodied_wm.msg import PredictedFrames
    from geometry_msgs.msg import TwistStamped

    from embodied_wm.ros.conversions import time_to_ns

    # Our subscriptions and publishers first, so the node (and the planner) match them while starting.
    probe.collect(PredictedFrames, f"/{NODE}/predicted_frames", "frames")
    probe.collect(DiagnosticArray, "/diagnostics", "diag", depth=50)
    probe.collect(TwistStamped, "/planner/cmd", "cmd")
    robot = SyntheticRobot(probe.node)
    node = spawn(
        _node_cmd(
            "autostart:=true",
            "backend:=linear",
            "diagnostics.period_s:=0.3",
            "diagnostics.missing_after_s:=0.5",
        ),
        "perception",
    )
    plan_log = tmp_path / "planner.jsonl"
    planner = spawn(
        [
            "python",
            "-m",
            "embodied_wm.ros.planner_node",
            "--ros-args",
            "--params-file",
            str(REPO / "config" / "planner.yaml"),
            "-p",
            "action_topic:=/planner/cmd",
            "-p",
            "num_candidates:=8",
            "-p",
            f"log_path:={plan_log}",
            "-p",
            "goal_topic:=''",
            # Pixel goals (the default objective) over DDS: the service's scores-only path.
            "-p",
            "designated_pixels:=[20.0, 30.0]",
            "-p",
            "goal_pixels:=[40.0, 30.0]",
        ],
        "planner",
    )
    robot.wait_matched(60)
    # Both ends matched before the data starts: the node's best-effort input subscriptions with our
    # publishers (else the first frames are dropped), and its prediction publisher with our subscription
    # and planner_node's (so the planner sees the stream from the start).
    probe.wait_connected(INPUTS, {"frames": 2}, timeout=60)

    for i in range(15):
        robot.publish(i)
        time.sleep(0.04)
    probe.wait_for(lambda: len(probe.get("frames")) >= 10, 20, "predictions with all inputs")
    # Audio stops; one malformed image and one NaN tactile array arrive in between.
    for i in range(15, 45):
        robot.publish(i, audio=False, bad_image=(i == 20), nan_tactile=(i == 22))
        time.sleep(0.04)
    last_stamp = T0_NS + 44 * DT_NS
    probe.wait_for(
        lambda: any(time_to_ns(m.header.stamp) >= last_stamp - 5 * DT_NS for m in probe.get("frames")),
        20,
        "predictions after audio stopped",
    )
    time.sleep(1.0)
    _alive(node)
    _alive(planner)

    arrays = [a for a in probe.get("diag") if any(s.name.startswith(NODE) for s in a.status)]
    inputs = _diag_values(arrays[-1], ": inputs")
    assert "audio" in inputs["missing_modalities"] or "audio" in inputs["silent_inputs"], inputs
    assert "audio" in inputs["silent_inputs"]
    msgs = _diag_values(arrays[-1], ": messages")
    bad_keys = {k for k in msgs if k.startswith("invalid/")}
    assert any(k.startswith("invalid/image:") for k in bad_keys), msgs
    assert "invalid/tactile:non_finite" in bad_keys, msgs
    # The broken frame was skipped and predictions went on after it. (Some frames may be dropped as
    # stale while the planner's rollouts hold the backend: diagnostics count those.)
    stamps = {time_to_ns(m.header.stamp) for m in probe.get("frames")}
    assert T0_NS + 20 * DT_NS not in stamps
    assert len([s for s in stamps if s > T0_NS + 22 * DT_NS]) >= 10
    inf = _diag_values(arrays[-1], ": inference")
    assert int(inf["predictions"]) + int(inf["dropped/stale"]) >= 40

    # planner_node: commands within bounds, one log line per completed query, all against the model.
    cmds = probe.get("cmd")
    assert len(cmds) >= 5
    speeds = np.array([[c.twist.linear.x, c.twist.linear.y, c.twist.linear.z] for c in cmds])
    assert np.abs(speeds).max() <= 0.05 + 1e-6 and not speeds[:, 2].any()
    lines = plan_log.read_text().splitlines()
    assert lines and '"model_id": "linear"' in lines[-1] and '"objective": "pixel"' in lines[-1]
    assert probe.lost["frames"] == 0, probe.lost


def test_model_with_another_tactile_grid_gets_its_own_inputs(
    spawn: Callable, probe: Probe, tmp_path: Path
) -> None:
    """A model trained on a 3x4 tactile pad: the live node's Pipeline aligns to the backend's ModalitySpec
    (from the model's config), so 3x4 TactileArrays feed the model and 5x5 ones are rejected as the
    wrong shape (with the default spec it would be the other way round)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from embodied_wm.msg import PredictedFrames
    from test_runtime_common import make_tiny_checkpoint

    from embodied_wm.ros.conversions import time_to_ns

    model = tmp_path / "tactile_3x4"
    make_tiny_checkpoint(model, tactile_shape=(3, 4))
    probe.collect(PredictedFrames, f"/{NODE}/predicted_frames", "frames")
    probe.collect(DiagnosticArray, "/diagnostics", "diag", depth=50)
    robot = SyntheticRobot(probe.node)
    node = spawn(
        _node_cmd(
            "autostart:=true",
            "backend:=pytorch",
            "device:=cpu",
            f"model:={model}",
            "diagnostics.period_s:=0.3",
        ),
        "perception",
    )
    robot.wait_matched(90)
    probe.wait_connected(INPUTS, {"frames": 1}, timeout=90)
    for i in range(12):
        robot.publish(i, tactile_shape=(3, 4))
        time.sleep(0.1)
    # PyTorch on a loaded CPU may skip observations as stale (counted in diagnostics): a few are enough.
    probe.wait_for(lambda: len(probe.get("frames")) >= 2, 60, "predictions with 3x4 tactile input")
    assert probe.get("frames")[0].model_id != "linear"  # the model itself, not the fallback
    for i in range(12, 18):
        robot.publish(i, tactile_shape=(5, 5))
        time.sleep(0.1)
    last = T0_NS + 17 * DT_NS
    probe.wait_for(
        lambda: any(time_to_ns(m.header.stamp) >= last - 3 * DT_NS for m in probe.get("frames")),
        30,
        "predictions after the 5x5 tactile arrays",
    )
    time.sleep(1.0)
    _alive(node)
    arrays = [a for a in probe.get("diag") if any(s.name.startswith(NODE) for s in a.status)]
    msgs = _diag_values(arrays[-1], ": messages")
    rejected = {k: int(v) for k, v in msgs.items() if k.startswith("invalid/tactile")}
    # The six 5x5 arrays, and none of the twelve 3x4 ones.
    assert sum(rejected.values()) == 6, msgs


def test_camera_outage_keeps_affordances_and_flags_diagnostics(spawn: Callable, probe: Probe) -> None:
    """The camera stops for 3 s of data time while audio, tactile, joints and twist go on: the node
    (the learned model) keeps publishing ~/affordance and ~/world_state at the model's dt from the
    other sensors, publishes no ~/predicted_frames for those stamps, says "camera missing since X s" at
    WARN in /diagnostics, serves the rollout service for affordances only; the camera comes back:
    predicted frames again and the camera status back to OK."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from embodied_wm.msg import AffordanceMap, PredictedFrames, WorldState
    from embodied_wm.srv import PredictRollout

    from embodied_wm.ros.conversions import rgb_to_image_msg, time_to_ns

    mdir = _model_dir()
    assert mdir is not None, "models/tiny is shipped with the package but has no model files"
    probe.collect(PredictedFrames, f"/{NODE}/predicted_frames", "frames")
    probe.collect(AffordanceMap, f"/{NODE}/affordance", "aff")
    probe.collect(WorldState, f"/{NODE}/world_state", "world")
    probe.collect(DiagnosticArray, "/diagnostics", "diag", depth=50)
    robot = SyntheticRobot(probe.node)
    spawn(
        _node_cmd(
            "autostart:=true",
            "backend:=onnxruntime",
            "device:=cpu",
            f"model:={mdir}",
            "camera_timeout_s:=0.5",
            "diagnostics.period_s:=0.3",
        ),
        "perception",
    )
    robot.wait_matched(90)
    probe.wait_connected(INPUTS, {"frames": 1, "affordance": 1, "world_state": 1}, timeout=90)

    def stamps(key: str) -> set[int]:
        return {time_to_ns(m.header.stamp) for m in probe.get(key)}

    def camera_status() -> DiagnosticStatus | None:
        for arr in reversed(probe.get("diag")):
            for st in arr.status:
                if st.name == f"{NODE}: camera":
                    return st
        return None

    for i in range(15):
        robot.publish(i)
        time.sleep(0.05)
    last_frame = T0_NS + 14 * DT_NS
    probe.wait_for(lambda: len(probe.get("frames")) >= 3, 60, "predictions with the camera")
    # The camera stops; everything else goes on for 3 s of data time.
    for i in range(15, 45):
        robot.publish(i, camera=False)
        time.sleep(0.05)
    # Outage ticks: multiples of the model's dt (0.1 s) more than 0.5 s after the last frame, up to
    # max_wait_s (0.2 s) behind the newest data (4.4 s): 2.0 .. 4.1 s after T0.
    ticks = set(range(last_frame + 6 * DT_NS, T0_NS + 42 * DT_NS, DT_NS))

    def outage_aff() -> set[int]:
        return stamps("aff") & ticks

    # Inference may skip observations as stale on a loaded CPU (counted): a few predictions suffice.
    probe.wait_for(lambda: len(outage_aff()) >= 5, 60, "affordances during the camera outage")
    probe.wait_for(
        lambda: (st := camera_status()) is not None and st.level == DiagnosticStatus.WARN,
        10,
        "/diagnostics: camera missing",
    )
    st = camera_status()
    assert st is not None and st.message.startswith("camera missing since "), st.message
    vals = {kv.key: kv.value for kv in st.values}
    assert vals["missing"] == "True" and float(vals["missing_since_s"]) >= 0.6, vals
    assert set(vals["predicting_from"].split(", ")) == {"audio", "tactile", "proprio", "action"}, vals
    assert int(vals["predicted_frames_withheld"]) >= 5 and int(vals["observations_without_camera"]) >= 5
    inputs = probe.node_status(": inputs")
    assert "image" in inputs["missing_modalities"], inputs
    # Nothing but outage ticks after the last frame, no frames for them, world state for them too.
    assert all(s in ticks for s in stamps("aff") if s > last_frame)
    assert not stamps("frames") & ticks and max(stamps("frames")) <= last_frame
    probe.wait_for(lambda: len(stamps("world") & ticks) >= 5, 10, "world state during the outage")
    aff = next(m for m in probe.get("aff") if time_to_ns(m.header.stamp) in ticks)
    assert aff.header.frame_id == "camera_optical_frame" and list(aff.channels) == ["contact", "movable"]
    data = np.asarray(aff.data, np.float32)
    assert data.size == 2 * 64 * 64 and np.isfinite(data).all() and 0 <= data.min() <= data.max() <= 1

    # The rollout service from the camera-less state: affordances scored, frames withheld, goal refused.
    req = PredictRollout.Request(num_candidates=3, horizon=8, action_dim=6, return_predictions=True)
    req.actions = np.zeros(3 * 8 * 6, np.float32).tolist()
    r = probe.call(PredictRollout, f"/{NODE}/predict_rollout", req)
    assert r.success and "camera missing" in r.message, r.message
    assert len(r.scores) == 3 and len(r.affordances) == 3 and not r.predictions
    req.goal = rgb_to_image_msg(_frame(30), 0, "")
    r = probe.call(PredictRollout, f"/{NODE}/predict_rollout", req)
    assert not r.success and "camera missing" in r.message, r.message

    # The camera comes back: predicted frames again, camera status OK.
    for i in range(45, 60):
        robot.publish(i)
        time.sleep(0.05)
    back = T0_NS + 45 * DT_NS
    probe.wait_for(lambda: any(s >= back for s in stamps("frames")), 60, "frames after the camera returns")
    probe.wait_for(
        lambda: (st := camera_status()) is not None and st.level == DiagnosticStatus.OK,
        10,
        "/diagnostics: camera back",
    )
    assert camera_status().message == "camera frames arriving"  # type: ignore[union-attr]
    # Frames and affordances share stamps again: no camera-less observation after the return (the
    # outage ticks up to 4.4 s come out when the first frame back completes them).
    assert all(s in stamps("aff") for s in stamps("frames") if s >= back)
    assert not [s for s in stamps("aff") - stamps("frames") if s > T0_NS + 44 * DT_NS]
    assert probe.lost["aff"] == probe.lost["frames"] == 0, probe.lost
