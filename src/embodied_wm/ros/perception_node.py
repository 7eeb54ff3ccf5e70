"""perception_node: live sensors in, predicted frames and affordance maps out (a lifecycle node).

Inputs (sensor-data QoS per REP-2003 unless overridden by ``qos.<input>.*``):
  ``topics.camera`` sensor_msgs/Image (or CompressedImage with ``camera_transport: compressed``),
  ``topics.audio`` embodied_wm/AudioFrame, ``topics.tactile`` embodied_wm/TactileArray (or
  std_msgs/Float32MultiArray with ``tactile_type: float32_multiarray``), ``topics.joint_states``
  sensor_msgs/JointState, ``topics.action`` geometry_msgs/TwistStamped. ``none`` (or '') disables an input
  (all but the camera).

Outputs (reliable, keep last ``qos.output.depth``):
  ``~/predicted_frames`` PredictedFrames, ``~/affordance`` AffordanceMap, ``~/world_state`` WorldState,
  ``~/preview/frames`` and ``~/preview/affordance`` sensor_msgs/Image (rgb8; only built while someone
  subscribes), ``/diagnostics`` DiagnosticArray (every ``diagnostics.period_s`` of steady time; it
  includes, per input, the publishers our subscription is matched with and, per output, the matched
  subscriptions: only messages sent after that match are delivered).
Transport: with Fast DDS and no profile configured, the node loads config/fastdds_shm.xml (16 MB
shared-memory segment); with the 0.5 MB default a subscriber that stalls briefly loses reliable
predictions (see ``qos.default_shm_profile``).
Service: ``~/predict_rollout`` (embodied_wm/srv/PredictRollout), see ``score_rollout``. At most
``rollout.max_candidates`` candidates (256) per request, run in chunks of ``rollout.chunk_candidates`` (8)
from one state with live predictions between chunks; NaN/inf actions or score weights are rejected.

Camera outage (``camera_timeout_s``, default 0.5 s of data time; 0 = off): while the camera is silent and
the other inputs go on, the Aligner makes camera-less observations at the model's dt (see
``embodied_wm.sensing.aligner``) and the node keeps publishing ``~/affordance`` and ``~/world_state`` from
them (audio, touch, joints, action through the model's missing-modality path). ``~/predicted_frames`` and
``~/preview/frames`` are *not* published for them: with no frame to warp the model's frames are not a
prediction of the scene, and a planner reading the topic cannot tell a black or invented frame from one
(a confidence of 0 would be ignored by consumers that never read it; absence cannot be). The rollout
service still scores affordances then, but refuses goal-image scoring and returns no frames. /diagnostics
adds '<node>: camera' (WARN "camera missing since X s", X in data time since the last frame) and counts
the withheld predictions. With a baseline backend (no affordances) camera-less observations are not
predicted at all. Frames coming back end the outage: predictions with frames again.

Design:
* Every message goes through ONE ``Pipeline`` (decode, validate, align): the same code the offline replay
  runs, so live and offline predictions agree for the same bag and model.
* Input path: subscription callbacks only enqueue (O(1)); one ingest thread decodes and aligns in arrival
  order (``ros/ingest.py``, bounded in messages and bytes, oldest dropped and counted under a flood), so a
  slow message (a 4096 x 4096 JPEG) never holds up the executor, /diagnostics or parameter services, and
  /diagnostics read the statistics the ingest thread last published instead of taking its lock.
* Inference runs in one worker thread on the latest observation only. While it is busy a newer
  observation replaces the pending one and the replaced one is counted as ``dropped/stale``: the node
  falls behind by at most one prediction, never by a growing queue.
* Stamps come from the data: a prediction carries the stamp of the observation it was made from.
* Executors: the node (inputs, diagnostics, lifecycle and parameter services) is spun by one
  SingleThreadedExecutor; ``~/predict_rollout`` is served by a companion node (``<name>_rollout``, same
  namespace, the service keeps the main node's resolved name) on a second SingleThreadedExecutor thread,
  so a long rollout never holds up the inputs. rclpy's MultiThreadedExecutor was measured to busy-spin
  while one mutually-exclusive group runs (a ready entity it cannot take yet), which on 2 cores starved
  the very callbacks it was meant to run in parallel.
* Lifecycle: configure creates the backend, pipeline, publishers and service; activate subscribes;
  deactivate unsubscribes and lets the worker finish; cleanup releases the backend. ``autostart: true``
  (the default, ``params.AUTOSTART_DEFAULT``) configures and activates at start-up; with ``false`` the
  node logs the ``ros2 lifecycle set`` commands that start it and waits.
* Shutdown (SIGINT/SIGTERM, any number of them): see ``ros/spin.py``; ``main`` stops the rollout
  service thread, runs the lifecycle shutdown transition (the inference thread finishes and publishes
  its prediction), destroys the nodes and shuts the context down last, and exits 0.

Run: ``perception_node --ros-args --params-file config/perception.yaml`` (or ``python -m
embodied_wm.ros.perception_node --ros-args -p model:=DIR``).

Length (~600 lines): one lifecycle node's transitions, input callbacks, inference worker hand-off,
rollout service and diagnostics; everything that is not the node lives in planning/, runtime/ and ros/*.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from rclpy.lifecycle import Node as LifecycleNode
from rclpy.qos import qos_policy_name_from_kind
from sensor_msgs.msg import Image

from embodied_wm.errors import ConfigError, EmbodiedWMError
from embodied_wm.msg import AffordanceMap, PredictedFrames, WorldState
from embodied_wm.observation import Observation, Prediction, Rollout
from embodied_wm.pipeline import Pipeline
from embodied_wm.planning import pixel_goal as PG
from embodied_wm.planning.objectives import DEFAULT_SCORE_WEIGHTS, GOAL_CHANNEL, score_rollout
from embodied_wm.ros import conversions as conv
from embodied_wm.ros import diagnostics as diag
from embodied_wm.ros import params as P
from embodied_wm.ros import spin
from embodied_wm.ros.ingest import IngestQueue, Refused, oversized_raw_image
from embodied_wm.ros.inputs import header_stamp_ns, kind_and_type
from embodied_wm.ros.qos import default_shm_profile, diagnostics_qos, output_qos, sensor_qos
from embodied_wm.ros.worker import LatestOnlyWorker
from embodied_wm.runtime.base import BackendError, concat_rollouts
from embodied_wm.runtime.memory import trim_heap
from embodied_wm.runtime.select import create_backend_with_fallback
from embodied_wm.sensing.aligner import AlignerConfig
from embodied_wm.sensing.image import DEFAULT_MAX_PIXELS
from embodied_wm.srv import PredictRollout

#: PredictRollout score_channels names per request at most.
MAX_SCORE_CHANNELS = 64
#: Between two chunks of a rollout, wait at most this long for a pending live prediction to run.
ROLLOUT_YIELD_S = 0.5


# --------------------------------------------------------------------------------------- node
class PerceptionNode(LifecycleNode):
    def __init__(self, node_name: str = "perception_node", **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._guard_change_state_service()
        self._specs = P.spec_table(P.PERCEPTION_PARAMS)
        self._live: dict[str, Any] = {}
        # Registered before declaring so bad values from a params file or -p are rejected at start-up.
        self.add_on_set_parameters_callback(P.make_set_callback(self._specs, self._on_param_change))
        P.declare_all(self, P.PERCEPTION_PARAMS)
        self._live = P.read_all(self, [s for s in P.PERCEPTION_PARAMS if s.live])
        self._cfg: dict[str, Any] = {}

        self._pipe_lock = threading.Lock()  # pipeline.feed (aligner state)
        self._infer_lock = threading.Lock()  # backend: predict (worker) vs rollout (service)
        # The rollout service's own node (see the module docstring); spun by main() in its own thread. No
        # global arguments: a `-r __node:=...` remap must not give it the main node's name.
        self.rollout_node = rclpy.create_node(
            f"{self.get_name()}_rollout",
            namespace=self.get_namespace(),
            use_global_arguments=False,
            start_parameter_services=False,
            context=self.context,
        )

        self._backend: Any = None
        self._backend_skipped: dict[str, str] = {}
        self._pipeline: Any = None
        self._pubs: dict[str, Any] = {}
        self._sub_by_input: dict[str, Any] = {}
        self._service: Any = None
        self._diag_pub: Any = None
        self._diag_timer: Any = None
        self._worker: LatestOnlyWorker[tuple[Observation, float]] | None = None
        self._ingest: IngestQueue | None = None
        #: The pipeline's statistics as of the last message handled (read by /diagnostics without a lock,
        #: so a slow message never holds the diagnostics back).
        self._pipe_stats: dict[str, Any] = {}
        self._active = False
        self._state_name = "unconfigured"
        self._autostarting = False  # autostart's configure goes straight on to activate: no hint

        self._meters: dict[str, diag.RateMeter] = {}
        self._latency = diag.LatencyStats()
        self._counters = diag.NodeCounters()
        self._camera_stamp_ns: int | None = None
        self._last_submitted_ns: int | None = None
        self._last_obs_ns: int | None = None
        self._last_missing: list[str] = []
        #: Stamp of the newest observation with a camera frame, and the outage in progress (or None).
        self._last_frame_obs_ns: int | None = None
        self._outage: diag.CameraOutage | None = None
        #: The backend's current state was encoded without a camera frame (set with _infer_lock held).
        self._state_without_camera = False
        self._input_issues: dict[str, str] = {}
        self._lost: dict[str, int] = {}
        self._last_frame_id = "camera_optical_frame"
        self._camera_size: tuple[int, int] | None = None  # (H, W) of the newest camera image

    def _guard_change_state_service(self) -> None:
        """rclpy's ~/change_state handler raises RCLError for a transition that is invalid in the current
        state (e.g. activate while unconfigured), which ends the executor and the process. A bad request
        from any client must not kill the node: answer success=false instead."""
        srv = getattr(self, "_service_change_state", None)
        if srv is None:
            return
        handler = srv.callback

        def _guarded(request: Any, response: Any) -> Any:
            try:
                return handler(request, response)
            except Exception as exc:  # rclpy's RCLError is not importable under a stable name
                self.get_logger().warning(
                    f"rejected lifecycle transition {request.transition.id} "
                    f"'{request.transition.label}' in state {self._state_name}: {exc}"
                )
                response.success = False
                return response

        srv.callback = _guarded

    # ------------------------------------------------------------------------------ parameters
    def _on_param_change(self, name: str, value: Any) -> None:
        spec = self._specs.get(name)
        if spec is not None and spec.live:
            self._live[name] = float(value) if spec.number else value

    # ------------------------------------------------------------------------------- start-up
    def start_up(self, shutdown: spin.ShutdownRequest) -> int:
        """After construction: with ``autostart`` configure and activate, else say how to start the
        node. A shutdown requested meanwhile ends start-up between the steps. Returns the exit status
        (0: go on spinning, or stop quietly when shutdown was requested; 1: a transition failed)."""
        if not self.get_parameter("autostart").value:
            self.get_logger().info(waiting_hint(self) + " (autostart is false)")
            return 0
        if shutdown.requested:
            return 0
        self._autostarting = True
        try:
            configured = self.trigger_configure()
        finally:
            self._autostarting = False
        if configured != TransitionCallbackReturn.SUCCESS:
            self.get_logger().fatal("autostart: configure failed")
            return 1
        if shutdown.requested:
            return 0
        if self.trigger_activate() != TransitionCallbackReturn.SUCCESS:
            self.get_logger().fatal("autostart: activate failed")
            return 1
        return 0

    # ------------------------------------------------------------------------------- lifecycle
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            self._configure()
        except Exception as exc:  # report any failure as a failed transition
            self.get_logger().error(f"configure failed: {exc}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._state_name = "inactive"
        if not self._autostarting:
            self.get_logger().info(waiting_hint(self))
        return TransitionCallbackReturn.SUCCESS

    def _configure(self) -> None:
        cfg = P.read_all(self, P.PERCEPTION_PARAMS)
        for inp in P.INPUTS:  # one spelling of "disabled" from here on: ''
            if P.topic_disabled(cfg[f"topics.{inp}"]):
                cfg[f"topics.{inp}"] = ""
        self._cfg = cfg
        backend, skipped = create_backend_with_fallback(
            cfg["backend"], cfg["model"], cfg["fallback_backend"], cfg["device"], self.get_logger().warning
        )
        if cfg["horizon"] and int(backend.horizon) != int(cfg["horizon"]):
            raise ConfigError(
                f"model horizon is {backend.horizon} but parameter horizon = {cfg['horizon']} "
                f"(backend {backend.name}, model {backend.model_id}); set horizon: 0 to accept any"
            )
        self._backend, self._backend_skipped = backend, skipped
        self._pipeline = self._new_pipeline()
        self._pipe_stats = {}
        self.get_logger().info(
            f"backend {backend.name} (model {backend.model_id}, horizon {backend.horizon}, "
            f"dt {backend.dt_ns / 1e9:.3f} s, {backend.image_size[1]}x{backend.image_size[0]})"
            + (f"; skipped: {skipped}" if skipped else "")
        )
        q = output_qos(cfg["qos.output.depth"])
        self._pubs = {
            "frames": self.create_lifecycle_publisher(PredictedFrames, "~/predicted_frames", q),
            "affordance": self.create_lifecycle_publisher(AffordanceMap, "~/affordance", q),
            "preview_frames": self.create_lifecycle_publisher(Image, "~/preview/frames", q),
            "preview_affordance": self.create_lifecycle_publisher(Image, "~/preview/affordance", q),
        }
        if cfg["publish_world_state"]:
            self._pubs["world_state"] = self.create_lifecycle_publisher(WorldState, "~/world_state", q)
        # Resolved by this node, so remaps of ~/predict_rollout given to it apply.
        self._service = self.rollout_node.create_service(
            PredictRollout, self.resolve_service_name("~/predict_rollout"), self._on_predict_rollout
        )

        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", diagnostics_qos())
        # Steady clock: diagnostics keep coming when /clock stops (bag finished, simulator paused).
        self._diag_timer = self.create_timer(
            float(cfg["diagnostics.period_s"]),
            self._publish_diagnostics,
            clock=Clock(clock_type=ClockType.STEADY_TIME),
        )
        self._meters = {inp: diag.RateMeter() for inp in P.INPUTS}
        self._counters = diag.NodeCounters()
        self._latency = diag.LatencyStats()
        self._camera_stamp_ns = self._last_submitted_ns = self._last_obs_ns = None
        self._reset_outage()
        self._input_issues, self._lost = {}, {}

    def _new_pipeline(self) -> Any:
        # The outage clock runs at the backend's dt (Pipeline fills it in).
        timeout = float(self._cfg["camera_timeout_s"])
        return Pipeline(
            self._backend,
            aligner=AlignerConfig(camera_timeout_s=timeout),
            max_image_pixels=int(self._cfg["max_image_pixels"]),
        )

    def _reset_outage(self) -> None:
        self._last_frame_obs_ns = None
        self._outage = None
        self._state_without_camera = False

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        cfg = self._cfg
        try:
            for inp in P.INPUTS:
                topic = cfg[f"topics.{inp}"]
                if not topic:
                    continue
                kind, msg_type = kind_and_type(inp, cfg["camera_transport"], cfg["tactile_type"])
                qos = sensor_qos(cfg[f"qos.{inp}.reliability"], cfg[f"qos.{inp}.depth"])
                sub = self.create_subscription(
                    msg_type,
                    topic,
                    self._make_callback(inp, kind),
                    qos,
                    event_callbacks=self._event_callbacks(inp, topic),
                )
                self._sub_by_input[inp] = sub
        except Exception as exc:
            self.get_logger().error(f"activate failed: {exc}")
            self._destroy_subscriptions()
            return TransitionCallbackReturn.FAILURE
        # Each activation starts from a clean aligner and backend history, like an offline replay does:
        # frames held or remembered from before a deactivation would mix two unrelated stretches of data.
        with self._infer_lock, self._pipe_lock:
            self._backend.reset()
            self._pipeline = self._new_pipeline()
            self._reset_outage()
            self._pipe_stats = {}
        self._camera_stamp_ns = self._last_submitted_ns = self._last_obs_ns = None
        self._worker = LatestOnlyWorker(self._infer, self._on_infer_error, "ewm-inference")
        self._worker.start()
        self._ingest = IngestQueue(self._ingest_one, self._on_ingest_error, "ewm-ingest")
        self._ingest.start()
        self._active = True
        self._state_name = "active"
        self.get_logger().info(
            "active: " + ", ".join(f"{i}={cfg[f'topics.{i}']}" for i in P.INPUTS if cfg[f"topics.{i}"])
        )
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._active = False
        self._destroy_subscriptions()
        self._stop_ingest()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self._state_name = "inactive"
        self.get_logger().info(waiting_hint(self))
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._release()
        self._state_name = "unconfigured"
        self.get_logger().info(waiting_hint(self))
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.release_all()
        self._state_name = "finalized"
        return TransitionCallbackReturn.SUCCESS

    def release_all(self) -> None:
        """Unsubscribe, let the inference thread finish (and publish) what it is doing, release the
        backend, publishers and service. Idempotent; the process calls it at exit whatever the state."""
        self._active = False
        self._destroy_subscriptions()
        self._stop_ingest()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        self._release()

    @property
    def lifecycle_state(self) -> str:
        """Label of the node's lifecycle state as its callbacks last set it (unconfigured, inactive,
        active, finalized)."""
        return self._state_name

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.get_logger().error(f"error processing in state {state.label}; releasing everything")
        self.on_shutdown(state)
        self._state_name = "unconfigured"
        return TransitionCallbackReturn.SUCCESS

    def _event_callbacks(self, inp: str, topic: str) -> Any:
        """Make QoS mismatches and lost messages visible in /diagnostics: a reliable subscription to a
        best-effort camera driver receives nothing, which otherwise looks like a silent sensor."""
        try:
            # lazy: optional: absent here is handled below
            from rclpy.event_handler import SubscriptionEventCallbacks
        except ImportError:  # Humble
            from rclpy.qos_event import SubscriptionEventCallbacks  # type: ignore[no-redef]

        def _incompatible(info: Any) -> None:
            policy = qos_policy_name_from_kind(info.last_policy_kind)
            self._input_issues[inp] = f"{info.total_count} publisher(s) with incompatible QoS ({policy})"
            self.get_logger().warning(
                f"{topic}: a publisher offers QoS incompatible with ours ({policy}); set qos.{inp}.* to match"
            )

        def _lost(info: Any) -> None:
            self._lost[inp] = int(info.total_count)

        return SubscriptionEventCallbacks(incompatible_qos=_incompatible, message_lost=_lost)

    def _stop_ingest(self) -> None:
        if self._ingest is not None:
            self._ingest.stop()

    def _destroy_subscriptions(self) -> None:
        subs, self._sub_by_input = self._sub_by_input, {}
        for sub in subs.values():
            self.destroy_subscription(sub)

    def _release(self) -> None:
        for pub in self._pubs.values():
            self.destroy_lifecycle_publisher(pub)
        self._pubs = {}
        if self._service is not None:
            self.rollout_node.destroy_service(self._service)
            self._service = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._diag_pub is not None:
            self.destroy_publisher(self._diag_pub)
            self._diag_pub = None
        with self._infer_lock:
            # Dropping the references frees the backend (engine memory, ORT session, torch module).
            self._backend = None
            self._pipeline = None
        self._backend_skipped = {}

    # --------------------------------------------------------------------------------- inputs
    def _make_callback(self, inp: str, kind: str) -> Callable[[Any], None]:
        meter = self._meters[inp]
        is_camera = inp == "camera"
        is_raw_image = kind == "image"
        max_pixels = int(self._cfg.get("max_image_pixels", DEFAULT_MAX_PIXELS))

        def _callback(msg: Any) -> None:
            # The executor thread: O(1) bookkeeping and a hand-over to the ingest thread, nothing more.
            t_recv = time.monotonic()
            cpu0 = time.thread_time()
            stamp = header_stamp_ns(msg)
            meter.tick(stamp, t_recv)
            if is_camera and stamp:
                self._camera_stamp_ns = stamp
            ingest = self._ingest
            if not self._active or ingest is None:
                return
            if is_raw_image:
                # A consistent raw image over the pixel limit is refused here (O(1) header check), so its
                # megabytes are freed with the callback instead of waiting in the ingest queue.
                msg = oversized_raw_image(msg, max_pixels) or msg
            ingest.put(kind, msg, (t_recv, self.get_clock().now().nanoseconds))
            ingest.record_callback((time.monotonic() - t_recv) * 1e3, (time.thread_time() - cpu0) * 1e3)

        return _callback

    def _track_camera(self, obs: Observation, jumped: bool) -> bool:
        """Follow camera outages (see the module docstring); False if ``obs`` is not worth predicting.
        ``jumped``: time went backwards at ``obs`` (a new timeline)."""
        if obs.image is not None:
            self._last_frame_obs_ns, self._outage = obs.stamp_ns, None
            return True
        present = [m for m, ok in obs.present.items() if ok]
        if self._outage is None or jumped:
            self._counters.camera_outages += 1
            since = self._last_frame_obs_ns
            if since is not None and (jumped or since > obs.stamp_ns):
                since = None  # the last frame belongs to the old timeline
            self._outage = diag.CameraOutage(since, obs.stamp_ns, present)
            self.get_logger().warning(
                "camera missing"
                + (f" since {(obs.stamp_ns - since) / 1e9:.2f} s" if since is not None else "")
                + f": predicting affordances from {', '.join(present) or 'nothing'}"
                + "; predicted frames withheld"
            )
        else:
            self._outage.latest_ns, self._outage.present = obs.stamp_ns, present
        backend = self._backend
        if backend is not None and not backend.affordance_channels:
            self._counters.no_camera_not_predicted += 1  # a baseline: frames only, and those are withheld
            return False
        return True

    def _ingest_one(self, kind: str, msg: Any, extra: tuple[float, int]) -> None:
        """On the ingest thread: decode + align one message, hand completed observations to inference."""
        t_recv, receive_ns = extra
        pipeline = self._pipeline
        if not self._active or pipeline is None:
            return
        with self._pipe_lock:
            if isinstance(msg, Refused):
                pipeline.reject(kind, msg.error)
                observations = []
            else:
                observations = pipeline.feed(kind, msg, receive_stamp_ns=receive_ns)
            self._pipe_stats = pipeline.stats.as_dict()
        for obs in observations:
            self._on_observation(obs, t_recv)

    def _on_ingest_error(self, exc: BaseException) -> None:
        # Pipeline.feed counts every bad message itself; reaching here is a bug, still never a crash.
        self._counters.extra["ingest_errors"] = self._counters.extra.get("ingest_errors", 0) + 1
        self._counters.last_error = f"ingest: {type(exc).__name__}: {exc}"
        self.get_logger().error(self._counters.last_error, throttle_duration_sec=5.0)

    def _on_observation(self, obs: Observation, t_recv: float) -> None:
        self._last_missing = list(obs.missing)
        jumped = self._last_obs_ns is not None and obs.stamp_ns < self._last_obs_ns
        if jumped:
            # Time went backwards (bag loop, simulator reset). The pipeline resets the backend itself
            # (aligner epochs), so live and offline runs reset at the same observation; we only count it.
            self._counters.time_jumps += 1
            self._last_submitted_ns = None
        self._last_obs_ns = obs.stamp_ns
        if not self._track_camera(obs, jumped):
            return
        rate = float(self._live.get("rate_hz", 0.0))
        if rate > 0 and self._last_submitted_ns is not None:
            # Rate limiting in data time, so a replay at any speed predicts at the same stamps.
            # The 1 % slack keeps a 10 Hz camera at rate_hz 10 from losing frames to stamp jitter.
            if obs.stamp_ns - self._last_submitted_ns < 0.99e9 / rate:
                self._counters.rate_limited += 1
                return
        self._last_submitted_ns = obs.stamp_ns
        worker = self._worker
        if worker is not None:
            worker.submit((obs, t_recv))
            self._counters.stale = worker.replaced

    # ------------------------------------------------------------------------------ inference
    def _on_infer_error(self, exc: BaseException) -> None:
        self._counters.prediction_errors += 1
        self._counters.last_error = f"{type(exc).__name__}: {exc}"
        self.get_logger().warning(
            f"prediction failed: {self._counters.last_error}", throttle_duration_sec=5.0
        )

    def _infer(self, item: tuple[Observation, float]) -> None:
        obs, t_recv = item
        t0 = time.monotonic()
        with self._infer_lock:
            pipeline = self._pipeline
            if pipeline is None:
                return
            pred: Prediction = pipeline.predict(obs)
            self._state_without_camera = obs.image is None
            if obs.image is not None:  # pixel goals in service requests are in this image's pixels
                self._camera_size = (int(obs.image.shape[0]), int(obs.image.shape[1]))
        t1 = time.monotonic()
        fid = self._cfg.get("frame_id") or obs.frame_id or pred.frame_id
        self._last_frame_id = fid
        self._publish_prediction(pred, obs, fid)
        t2 = time.monotonic()
        self._counters.predictions += 1
        self._latency.add_all(pred.timings_ms, prefix="model/")
        self._latency.add("queue_wait", (t0 - t_recv) * 1e3)
        self._latency.add("predict", (t1 - t0) * 1e3)
        self._latency.add("publish", (t2 - t1) * 1e3)
        self._latency.add("receive_to_publish", (t2 - t_recv) * 1e3)

    def _publish_prediction(self, pred: Prediction, obs: Observation, frame_id: str) -> None:
        pubs = self._pubs
        if not pubs:
            return
        with_camera = obs.image is not None
        if with_camera:
            pubs["frames"].publish(conv.prediction_to_frames_msg(pred, frame_id))
        else:
            # Camera outage: no frame to warp, so the frames are no prediction (module docstring).
            self._counters.frames_withheld += 1
        pubs["affordance"].publish(conv.prediction_to_affordance_msg(pred, frame_id))
        if "world_state" in pubs:
            pubs["world_state"].publish(conv.prediction_to_world_state_msg(pred, frame_id))
        if not self._live.get("preview.enabled", True):
            return
        scale = int(self._live.get("preview.scale", 1))
        # Previews are for people: skip the pixel work when nobody is looking.
        if with_camera and pubs["preview_frames"].get_subscription_count() > 0:
            tile = conv.tile_preview(
                obs.image, pred.frames, int(self._live.get("preview.max_frames", 4)), scale
            )
            pubs["preview_frames"].publish(conv.rgb_to_image_msg(tile, pred.stamp_ns, frame_id))
        if pubs["preview_affordance"].get_subscription_count() > 0:
            h, w = pred.frames.shape[1:3]
            # Without a camera frame the heat map goes over black, not over a made-up frame.
            base = np.zeros((h, w, 3), np.uint8)
            if obs.image is not None:
                base = conv.resize_nearest(obs.image, h, w)
            img = conv.affordance_preview(
                base,
                pred.affordance,
                pred.affordance_channels,
                str(self._live.get("preview.channel", "")),
                scale,
            )
            pubs["preview_affordance"].publish(conv.rgb_to_image_msg(img, pred.stamp_ns, frame_id))

    # -------------------------------------------------------------------------------- service
    def _on_predict_rollout(self, request: Any, response: Any) -> Any:
        self._counters.service_calls += 1
        try:
            self._rollout(request, response)
        except _RejectedError as exc:
            self._reject(response, exc.reason, str(exc))
        except Exception as exc:  # a service must answer, never crash the node
            self._reject(response, "failed", f"rollout failed: {type(exc).__name__}: {exc}")
            self.get_logger().warning(response.message)
        finally:
            # Rollout buffers are large and short-lived: give the heap back so RSS does not keep the
            # high-water mark of the biggest request ever served.
            trim_heap()
        return response

    def _reject(self, response: Any, reason: str, message: str) -> None:
        self._counters.service_rejected += 1
        key = f"service_rejected/{reason}"
        self._counters.extra[key] = self._counters.extra.get(key, 0) + 1
        response.success = False
        response.message = message

    def _rollout(self, request: Any, response: Any) -> None:
        backend = self._backend
        if backend is None or not self._active:
            raise _RejectedError(f"node is {self._state_name}, not active", "inactive")
        response.model_id = backend.model_id
        n, k, a = int(request.num_candidates), int(request.horizon), int(request.action_dim)
        max_n = int(self._live.get("rollout.max_candidates", 256))
        if n < 1:
            raise _RejectedError("num_candidates must be >= 1", "bad_request")
        if n > max_n:
            raise _RejectedError(
                f"num_candidates {n} exceeds rollout.max_candidates = {max_n}; send at most {max_n} per "
                "request (or raise the parameter)",
                "too_many_candidates",
            )
        if k != backend.horizon:
            raise _RejectedError(
                f"horizon {k} != model horizon {backend.horizon} (model {backend.model_id})", "bad_request"
            )
        if a != backend.action_dim:
            raise _RejectedError(f"action_dim {a} != model action_dim {backend.action_dim}", "bad_request")
        if len(request.actions) != n * k * a:
            raise _RejectedError(
                f"len(actions) = {len(request.actions)} but num_candidates*horizon*action_dim = "
                f"{n}*{k}*{a} = {n * k * a}",
                "bad_request",
            )
        actions = np.asarray(request.actions, np.float32)
        if not np.isfinite(actions).all():
            raise _RejectedError("actions contain NaN or infinite values", "bad_request")
        if len(request.score_channels) != len(request.score_weights):
            raise _RejectedError(
                f"score_channels has {len(request.score_channels)} names but score_weights "
                f"{len(request.score_weights)} values",
                "bad_request",
            )
        if len(request.score_channels) > MAX_SCORE_CHANNELS:
            raise _RejectedError(f"more than {MAX_SCORE_CHANNELS} score_channels", "bad_request")
        weights = dict(DEFAULT_SCORE_WEIGHTS)
        weights.update({str(c): float(w) for c, w in zip(request.score_channels, request.score_weights)})
        bad_weights = sorted(c for c, w in weights.items() if not np.isfinite(w))
        if bad_weights:
            raise _RejectedError(
                f"score_weights must be finite; NaN/inf for {', '.join(bad_weights)}", "bad_request"
            )
        goal = None
        if int(request.goal.height) > 0:
            try:
                goal_rgb = conv.image_msg_to_rgb(request.goal)
            except ValueError as exc:
                raise _RejectedError(f"goal image: {exc}", "bad_request") from exc
            h, w = backend.image_size
            goal = conv.resize_area(goal_rgb, h, w)
        pixel_goal = self._pixel_goal(request, backend)
        # Frames and affordances are decoded only when something needs them; pixel goals alone take the
        # scores-only path.
        need_rollout = (
            pixel_goal is None
            or request.return_predictions
            or goal is not None
            or any(weights.get(c, 0.0) != 0.0 for c in backend.affordance_channels)
        )
        t0 = time.monotonic()
        rollout: Rollout | None = None
        with self._infer_lock:
            if self._pipeline is None:
                raise _RejectedError("node was cleaned up", "inactive")
            without_camera = self._state_without_camera
            if without_camera and (goal is not None or pixel_goal is not None):
                raise _RejectedError(
                    "camera missing: the current state has no camera frame, so predicted frames (and a "
                    "goal-image or pixel-goal score) mean nothing; score affordance channels only",
                    "no_camera",
                )
            try:
                # One state for everything below: the chunked rollout starts from this snapshot even if
                # live predictions move the backend on between its chunks.
                source = backend.rollout_state() if need_rollout else None
                if pixel_goal is not None:
                    pixels = backend.score_pixels(actions.reshape(n, k, a), *pixel_goal.query())
            except BackendError as exc:
                raise _RejectedError(f"no current state yet ({exc})", "no_state") from exc
        if need_rollout:
            rollout = self._chunked_rollout(backend, actions.reshape(n, k, a), source)
        self._latency.add("service/rollout", (time.monotonic() - t0) * 1e3)
        scores = np.zeros(n, np.float64)
        if rollout is not None:
            scores += score_rollout(rollout, weights, goal)[0]
        if pixel_goal is not None:
            pixel_weights = {**PG.DEFAULT_PIXEL_WEIGHTS, **weights}
            scores += PG.combine(PG.pixel_terms(pixels, pixel_goal), pixel_weights)
            p = len(pixel_goal.designated)
            cam = self._camera_size or backend.image_size
            response.num_pixels = p
            response.pixel_positions = (
                pixel_goal.to_camera(pixels.positions[:, :, :p], cam).reshape(-1).tolist()
            )
        response.scores = scores.astype(np.float32).tolist()
        response.best_index = int(np.argmax(scores))
        if request.return_predictions and rollout is not None:
            fid = self._cfg.get("frame_id") or self._last_frame_id
            response.predictions, response.affordances = conv.rollout_to_msgs(rollout, fid)
            if without_camera:
                response.predictions = []  # withheld, as on ~/predicted_frames
        known = set(backend.affordance_channels) | {GOAL_CHANNEL, *PG.DEFAULT_PIXEL_WEIGHTS}
        ignored = sorted(set(request.score_channels) - known)
        response.success = True
        stamp = rollout.stamp_ns if rollout is not None else pixels.stamp_ns
        response.message = f"{n} candidates scored at stamp {stamp}"
        if ignored:
            response.message += f"; ignored score channels the model does not produce: {', '.join(ignored)}"
        if without_camera:
            response.message += "; camera missing: affordances only, predicted frames withheld"

    def _pixel_goal(self, request: Any, backend: Any) -> PG.PixelGoal | None:
        """The request's pixel goal in model-image pixels, None without one; _RejectedError when its
        pixels are malformed or outside the latest camera image."""
        if not (len(request.designated_pixels) or len(request.goal_pixels) or len(request.effector_pixel)):
            return None
        if not len(request.designated_pixels):
            raise _RejectedError("goal_pixels / effector_pixel given without designated_pixels")
        effector = np.asarray(request.effector_pixel, np.float64) if len(request.effector_pixel) else None
        if effector is not None and effector.size != 2:
            raise _RejectedError(f"effector_pixel needs one (u, v) pair, got {effector.size} values")
        cam = self._camera_size or backend.image_size
        try:
            return PG.PixelGoal.from_camera(
                np.asarray(request.designated_pixels), np.asarray(request.goal_pixels), cam,
                backend.image_size, effector,
            )
        except PG.PixelGoalError as exc:
            raise _RejectedError(f"pixel goal: {exc}") from exc
    def _chunked_rollout(self, backend: Any, candidates: np.ndarray, source: Any) -> Rollout:
        """All candidates from ONE state (``source``, a ``rollout_state()`` taken under the lock), in chunks
        of ``rollout.chunk_candidates``: the backend's working memory is that of one chunk, and between
        chunks a waiting live prediction takes the backend (predictions slow down, never stop)."""
        chunk = max(1, int(self._live.get("rollout.chunk_candidates", 8)))
        parts: list[Rollout] = []
        for i in range(0, candidates.shape[0], chunk):
            worker = self._worker
            if i and worker is not None:
                worker.wait_handled(worker.handled, ROLLOUT_YIELD_S)
            with self._infer_lock:
                if self._pipeline is None or self._backend is not backend:
                    raise _RejectedError("node was reconfigured during the rollout", "inactive")
                parts.append(backend.rollout(candidates[i : i + chunk], state=source))
        return concat_rollouts(parts)

    # ---------------------------------------------------------------------------- diagnostics
    def diagnostics_snapshot(self) -> diag.Snapshot:
        stats: Mapping[str, Any] = self._pipe_stats
        ingest = self._ingest
        backend_info: dict[str, Any] = {}
        if self._backend is not None:
            # "skipped"/"selection" are reported separately (skipped/...), not as raw dicts.
            info = self._backend.describe().items()
            backend_info = {k: v for k, v in info if k not in ("skipped", "selection")}
        worker = self._worker
        if worker is not None:
            self._counters.stale = worker.replaced
        return diag.Snapshot(
            node_name=self.get_name(),
            lifecycle_state=self._state_name,
            inputs={i: self._cfg.get(f"topics.{i}", "") for i in P.INPUTS},
            meters=self._meters,
            camera_stamp_ns=self._camera_stamp_ns,
            missing_after_s=float(self._live.get("diagnostics.missing_after_s", 1.0)),
            missing_in_last_observation=self._last_missing,
            latency=self._latency.summary(),
            counters=self._counters,
            pipeline_stats=stats,
            backend=backend_info,
            backend_skipped=self._backend_skipped,
            pending=worker.busy if worker is not None else False,
            input_issues=dict(self._input_issues),
            lost=dict(self._lost),
            publishers=diag.matched_counts(self._sub_by_input, "get_publisher_count"),
            subscribers=diag.matched_counts(self._pubs, "get_subscription_count"),
            camera_outage=self._outage,
            ingest=ingest.stats() if ingest is not None else {},
        )

    def _publish_diagnostics(self) -> None:
        if self._diag_pub is None:
            return
        arr = diag.build_array(self.diagnostics_snapshot(), self.get_clock().now().to_msg())
        self._diag_pub.publish(arr)


class _RejectedError(EmbodiedWMError):
    """A PredictRollout request that cannot be served; the text goes to the response message and the
    reason to /diagnostics (``service_rejected/<reason>``)."""

    def __init__(self, message: str, reason: str = "bad_request") -> None:
        super().__init__(message)
        self.reason = reason


def _spin_quietly(executor: SingleThreadedExecutor) -> None:
    """Spin until the executor is shut down (the main thread owns the process's exit)."""
    try:
        executor.spin()
    except ExternalShutdownException:
        pass
    except Exception as exc:  # one line, not a traceback from a background thread
        print(f"perception_node: rollout service thread: {type(exc).__name__}: {exc}", file=sys.stderr)


def waiting_hint(node: PerceptionNode) -> str:
    """What a node waiting in its current lifecycle state needs, as the commands that give it that."""
    name = node.get_fully_qualified_name()
    state = node.lifecycle_state
    if state == "unconfigured":
        return (
            f"unconfigured, waiting for a lifecycle transition: `ros2 lifecycle set {name} configure` "
            f"then `ros2 lifecycle set {name} activate` starts it (or run it with -p autostart:=true)"
        )
    if state == "inactive":
        return f"inactive, waiting for a lifecycle transition: `ros2 lifecycle set {name} activate` starts it"
    return state


def _stop(
    node: PerceptionNode | None,
    executor: SingleThreadedExecutor,
    rollout_executor: SingleThreadedExecutor,
    rollout_thread: threading.Thread | None,
) -> None:
    """Wind down in order, with the context still valid until the very end: the rollout service
    thread, then the lifecycle shutdown transition (unsubscribe, let the inference thread finish its
    prediction and publish it, release the backend), then the nodes, then the context. Nothing is
    left running that could publish into, or log through, a context that has gone."""
    name = "perception_node"
    spin.quietly(name, "rollout executor", lambda: rollout_executor.shutdown(timeout_sec=10.0))
    if rollout_thread is not None:
        rollout_thread.join(timeout=10.0)
    if node is not None:
        if node.lifecycle_state in ("unconfigured", "inactive", "active"):
            spin.quietly(name, "lifecycle shutdown", node.trigger_shutdown)
        spin.quietly(name, "release", node.release_all)
        executor.remove_node(node)
        spin.quietly(name, "destroy rollout node", node.rollout_node.destroy_node)
        spin.quietly(name, "destroy node", node.destroy_node)
    spin.quietly(name, "executor", lambda: executor.shutdown(timeout_sec=1.0))
    if rollout_thread is not None and rollout_thread.is_alive():
        # Finalizing logging under a thread that may still log crashes the process: leave it to exit.
        print(
            f"{name}: shutdown: rollout service thread still busy; exiting without rclpy shutdown",
            file=sys.stderr,
        )
        spin.ignore_further_signals()
        return
    spin.shutdown_context()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv if argv is None else ["perception_node", *argv])
    shutdown = spin.install_signal_handlers()
    # Before rclpy.init: Fast DDS reads its profile when the participant is created (see qos.py).
    profile = default_shm_profile()
    spin.init(args)
    node: PerceptionNode | None = None
    executor = SingleThreadedExecutor()
    rollout_executor = SingleThreadedExecutor()
    rollout_thread: threading.Thread | None = None
    rc = 0
    try:
        if shutdown.requested:  # signalled while importing: nothing to start or stop
            return 0
        node = PerceptionNode()
        rollout_executor.add_node(node.rollout_node)
        rollout_thread = threading.Thread(
            target=_spin_quietly, args=(rollout_executor,), name="ewm-rollout-service", daemon=True
        )
        rollout_thread.start()
        if profile:
            node.get_logger().info(
                f"Fast DDS profile {profile} (16 MB shared-memory segment for the large outputs; "
                "set FASTRTPS_DEFAULT_PROFILES_FILE to use your own, or EWM_FASTDDS_SHM=0 for the defaults)"
            )
        executor.add_node(node)
        rc = node.start_up(shutdown)
        if rc == 0:
            spin.spin_until_shutdown(executor)
    except ExternalShutdownException:
        pass
    except Exception as exc:  # bad parameters at start-up end here: say why, exit 1
        print(f"perception_node: {type(exc).__name__}: {exc}", file=sys.stderr)
        rc = 1
    finally:
        _stop(node, executor, rollout_executor, rollout_thread)
    return rc


if __name__ == "__main__":
    sys.exit(main())
