"""Parameters of embodied_wm's nodes: one table per node with defaults, descriptions and checks.

The table is the single source of truth: the nodes declare from it, config/*.yaml mirror it (a test keeps
them in step), and the set-parameters callback validates every change against it, so a bad value from a
params file, the command line or `ros2 param set` is rejected with a reason instead of failing later.

Float parameters are declared with dynamic typing and checked here, because ROS refuses ``rate_hz: 10``
(an integer) for a double parameter, a needless trap in hand-written YAML and ``-p rate_hz:=5``.

Which changes take effect when: ``rate_hz``, ``preview.*`` and ``diagnostics.missing_after_s`` apply at
once; everything else (topics, QoS, model, backend) is read on the next configure transition.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult

#: Backend names create_backend() understands (runtime/select.py).
BACKENDS: tuple[str, ...] = ("auto", "tensorrt", "onnxruntime", "pytorch", "copy_last", "linear")
#: Backends that need no model files, usable as the fallback when the model directory is missing.
BASELINE_BACKENDS: tuple[str, ...] = ("linear", "copy_last")
DEVICES_HINT = "auto, cpu, cuda or cuda:N"
CAMERA_TRANSPORTS: tuple[str, ...] = ("raw", "compressed")
TACTILE_TYPES: tuple[str, ...] = ("tactile_array", "float32_multiarray")
RELIABILITY_NAMES: tuple[str, ...] = ("best_effort", "reliable", "system_default")
#: Sensor inputs of the perception node, in the order they are subscribed.
INPUTS: tuple[str, ...] = ("camera", "audio", "tactile", "joint_states", "action")

Check = Callable[[Any], "str | None"]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    check: Check | None = None
    #: Declared with dynamic typing (numbers that may be written as int or float); checked by ``check``.
    number: bool = False
    #: Applies immediately when changed at run time (otherwise on the next configure).
    live: bool = False

    def descriptor(self) -> ParameterDescriptor:
        when = "applies immediately" if self.live else "applies on the next configure"
        return ParameterDescriptor(
            name=self.name, description=f"{self.description} ({when})", dynamic_typing=self.number
        )


# ----------------------------------------------------------------------------------------- checks
def one_of(choices: Iterable[str]) -> Check:
    allowed = tuple(choices)

    def _check(v: Any) -> str | None:
        return None if v in allowed else f"must be one of {', '.join(allowed)}; got {v!r}"

    return _check


def number(minimum: float | None = None, maximum: float | None = None, strict_min: bool = False) -> Check:
    def _check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return f"must be a number; got {v!r}"
        if not math.isfinite(float(v)):
            return f"must be finite; got {v!r}"
        if minimum is not None and (v <= minimum if strict_min else v < minimum):
            return f"must be {'>' if strict_min else '>='} {minimum}; got {v!r}"
        if maximum is not None and v > maximum:
            return f"must be <= {maximum}; got {v!r}"
        return None

    return _check


def integer(minimum: int | None = None, maximum: int | None = None) -> Check:
    def _check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer; got {v!r}"
        if minimum is not None and v < minimum:
            return f"must be >= {minimum}; got {v}"
        if maximum is not None and v > maximum:
            return f"must be <= {maximum}; got {v}"
        return None

    return _check


def topic_name(allow_empty: bool = True) -> Check:
    """A plausible ROS topic name (absolute, relative or ~/private); '' disables the input."""

    def _check(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"must be a string; got {v!r}"
        if v == "":
            return None if allow_empty else "must not be empty"
        body = v[2:] if v.startswith("~/") else v.lstrip("/")
        ok = body != "" and all(c.isalnum() or c in "_/{}" for c in body) and not body[0].isdigit()
        if not ok or "//" in v or v.endswith("/"):
            return f"is not a valid topic name: {v!r}"
        return None

    return _check


def device_name(v: Any) -> str | None:
    if not isinstance(v, str):
        return f"must be a string; got {v!r}"
    if v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()):
        return None
    return f"must be {DEVICES_HINT}; got {v!r}"


def any_string(v: Any) -> str | None:
    return None if isinstance(v, str) else f"must be a string; got {v!r}"


def any_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false; got {v!r}"


# ------------------------------------------------------------------------------------ perception
_PERCEPTION: list[ParamSpec] = [
    ParamSpec(
        "autostart", False, "configure and activate on start-up (no lifecycle manager needed)", any_bool
    ),
    ParamSpec(
        "topics.camera",
        "/camera/image_raw",
        "camera topic (sensor_msgs/Image or CompressedImage)",
        topic_name(allow_empty=False),
    ),
    ParamSpec("topics.audio", "/audio", "audio topic (embodied_wm/AudioFrame); '' = no audio", topic_name()),
    ParamSpec("topics.tactile", "/tactile", "tactile topic; '' = no tactile input", topic_name()),
    ParamSpec(
        "topics.joint_states", "/joint_states", "sensor_msgs/JointState topic; '' = none", topic_name()
    ),
    ParamSpec(
        "topics.action",
        "/cmd_vel_ee",
        "end-effector twist command (geometry_msgs/TwistStamped); '' = none",
        topic_name(),
    ),
    ParamSpec(
        "camera_transport",
        "raw",
        "raw: sensor_msgs/Image; compressed: sensor_msgs/CompressedImage",
        one_of(CAMERA_TRANSPORTS),
    ),
    ParamSpec(
        "tactile_type",
        "tactile_array",
        "tactile message type: embodied_wm/TactileArray or std_msgs/Float32MultiArray",
        one_of(TACTILE_TYPES),
    ),
    ParamSpec("model", "", "model directory; '' = the package's models/tiny", any_string),
    ParamSpec("backend", "auto", "inference backend", one_of(BACKENDS)),
    ParamSpec(
        "fallback_backend",
        "linear",
        "baseline used when the model directory is missing or the backend cannot start",
        one_of(BASELINE_BACKENDS),
    ),
    ParamSpec("device", "auto", f"inference device: {DEVICES_HINT}", device_name),
    ParamSpec(
        "horizon",
        0,
        "expected model horizon K; configure fails if the model differs (0 = any)",
        integer(0, 1000),
    ),
    ParamSpec(
        "rate_hz",
        0.0,
        "prediction rate in data time; 0 = every camera frame",
        number(0.0),
        number=True,
        live=True,
    ),
    ParamSpec("frame_id", "", "frame_id of outputs; '' = the camera image's frame_id", any_string),
    ParamSpec("publish_world_state", True, "publish ~/world_state (the latent)", any_bool),
    ParamSpec(
        "preview.enabled", True, "publish ~/preview/frames and ~/preview/affordance", any_bool, live=True
    ),
    ParamSpec(
        "preview.max_frames",
        4,
        "predicted frames shown in the preview tile (evenly spaced)",
        integer(1, 64),
        live=True,
    ),
    ParamSpec(
        "preview.scale", 2, "integer upscaling of previews (nearest neighbour)", integer(1, 16), live=True
    ),
    ParamSpec(
        "preview.channel",
        "contact",
        "affordance channel shown in the overlay (first if absent)",
        any_string,
        live=True,
    ),
    ParamSpec(
        "diagnostics.period_s",
        1.0,
        "/diagnostics period (s)",
        number(0.0, 60.0, strict_min=True),
        number=True,
    ),
    ParamSpec(
        "diagnostics.missing_after_s",
        1.0,
        "an input silent for this long (data time) is reported missing",
        number(0.0, strict_min=True),
        number=True,
        live=True,
    ),
    ParamSpec("qos.output.depth", 5, "depth of the reliable output publishers", integer(1, 1000)),
]
for _inp in INPUTS:
    _PERCEPTION.append(
        ParamSpec(
            f"qos.{_inp}.reliability",
            "best_effort",
            f"{_inp} subscription reliability (REP-2003 sensor data = best_effort)",
            one_of(RELIABILITY_NAMES),
        )
    )
    _PERCEPTION.append(
        ParamSpec(f"qos.{_inp}.depth", 5, f"{_inp} subscription queue depth", integer(1, 1000))
    )

PERCEPTION_PARAMS: tuple[ParamSpec, ...] = tuple(_PERCEPTION)


# --------------------------------------------------------------------------------------- planner
def _check_active_dims(v: Any) -> str | None:
    if not isinstance(v, list | tuple) or not v or not all(isinstance(i, int) and 0 <= i < 6 for i in v):
        return f"must be a non-empty list of integers in 0..5; got {v!r}"
    return None


PLANNER_PARAMS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "service",
        "/perception_node/predict_rollout",
        "PredictRollout service of the perception node",
        topic_name(allow_empty=False),
    ),
    ParamSpec(
        "predictions_topic",
        "/perception_node/predicted_frames",
        "PredictedFrames topic (gives the model horizon and dt; paces the planner)",
        topic_name(allow_empty=False),
    ),
    ParamSpec(
        "action_topic",
        "/cmd_vel_ee",
        "where the chosen end-effector twist is published",
        topic_name(allow_empty=False),
    ),
    ParamSpec("goal_topic", "/goal_image", "goal image topic (sensor_msgs/Image); '' = none", topic_name()),
    ParamSpec(
        "goal_image",
        "",
        "goal image file (PNG/JPEG); '' = none (the topic may still provide one)",
        any_string,
    ),
    ParamSpec("command_frame", "world", "frame_id of the published twist", any_string),
    ParamSpec(
        "method", "cem", "cem (cross-entropy method) or random (random shooting)", one_of(("cem", "random"))
    ),
    ParamSpec("num_candidates", 32, "candidate action sequences per service call", integer(1, 4096)),
    ParamSpec("iterations", 2, "CEM iterations per control step (random shooting uses 1)", integer(1, 20)),
    ParamSpec("elite_fraction", 0.25, "CEM elite fraction", number(0.0, 1.0, strict_min=True), number=True),
    ParamSpec(
        "max_speed",
        0.05,
        "bound on each commanded linear velocity component (m/s)",
        number(0.0, strict_min=True),
        number=True,
    ),
    ParamSpec(
        "active_dims",
        [0, 1],
        "action dimensions the planner varies (0..5 = vx vy vz wx wy wz)",
        _check_active_dims,
    ),
    ParamSpec(
        "init_std",
        0.5,
        "initial CEM standard deviation, as a fraction of max_speed",
        number(0.0, strict_min=True),
        number=True,
    ),
    ParamSpec(
        "goal_weight",
        1.0,
        "weight of the goal-image term (sent as score channel 'goal')",
        number(0.0),
        number=True,
    ),
    ParamSpec("contact_weight", 1.0, "weight of the predicted contact affordance", number(), number=True),
    ParamSpec("seed", 0, "random seed of the sampler", integer(0)),
    ParamSpec(
        "max_steps", 0, "stop (publish zero twist) after this many control steps; 0 = run forever", integer(0)
    ),
    ParamSpec("log_path", "", "append one JSON line per control step here ('' = no log)", any_string),
)


# ---------------------------------------------------------------------------------------- helpers
def spec_table(specs: Iterable[ParamSpec]) -> dict[str, ParamSpec]:
    return {s.name: s for s in specs}


def validate(specs: Mapping[str, ParamSpec], name: str, value: Any) -> str | None:
    """Why ``value`` is bad for parameter ``name`` (None if fine, or if the parameter is not ours,
    e.g. use_sim_time, whose checks belong to rclpy)."""
    spec = specs.get(name)
    if spec is None or spec.check is None:
        return None
    reason = spec.check(value)
    return f"{name} {reason}" if reason else None


def declare_all(node: Any, specs: Iterable[ParamSpec]) -> None:
    """Declare every parameter of ``specs`` on ``node`` (values from params files/-p override defaults)."""
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, spec.descriptor())


def make_set_callback(specs: Mapping[str, ParamSpec], on_change: Callable[[str, Any], None] | None = None):
    """An add_on_set_parameters_callback callback that rejects bad values with the reason."""

    def _callback(params: list) -> SetParametersResult:
        reasons = [r for p in params if (r := validate(specs, p.name, p.value))]
        if reasons:
            return SetParametersResult(successful=False, reason="; ".join(reasons))
        if on_change is not None:
            for p in params:
                on_change(p.name, p.value)
        return SetParametersResult(successful=True)

    return _callback


def read_all(node: Any, specs: Iterable[ParamSpec]) -> dict[str, Any]:
    """name -> current value (numbers declared dynamically come back as float)."""
    out: dict[str, Any] = {}
    for spec in specs:
        value = node.get_parameter(spec.name).value
        if spec.number and value is not None:
            value = float(value)
        if isinstance(value, list | tuple) or type(value).__name__ == "array":
            value = list(value)
        out[spec.name] = value
    return out


def nested(flat: Mapping[str, Any]) -> dict[str, Any]:
    """'a.b.c' keys -> nested dicts (the layout of a ros__parameters YAML block)."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return root


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Inverse of ``nested``: a ros__parameters block -> 'a.b.c' keys."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


__all__ = [
    "BACKENDS",
    "BASELINE_BACKENDS",
    "CAMERA_TRANSPORTS",
    "INPUTS",
    "PERCEPTION_PARAMS",
    "PLANNER_PARAMS",
    "TACTILE_TYPES",
    "ParamSpec",
    "declare_all",
    "flatten",
    "make_set_callback",
    "nested",
    "read_all",
    "spec_table",
    "validate",
]
