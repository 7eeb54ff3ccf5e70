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

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult

from embodied_wm.paramspec import (
    DISABLED_TOPIC,
    Check,
    ParamSpec,
    any_bool,
    any_string,
    flatten,
    integer,
    nested,
    number,
    one_of,
    spec_table,
    topic_disabled,
    topic_name,
    validate,
)
from embodied_wm.planning.params import PLANNER_PARAMS
from embodied_wm.runtime.learned import is_checkpoint_dir, is_export_dir
from embodied_wm.runtime.registry import BACKENDS, BASELINE_BACKENDS, DEVICES_HINT, device_problem

CAMERA_TRANSPORTS: tuple[str, ...] = ("raw", "compressed")
TACTILE_TYPES: tuple[str, ...] = ("tactile_array", "float32_multiarray")
RELIABILITY_NAMES: tuple[str, ...] = ("best_effort", "reliable", "system_default")
#: perception_node's ``autostart`` default, the same in config/perception.yaml and perception.launch.py
#: (a test keeps them equal): a node started with ``ros2 run`` and no params file starts predicting.
AUTOSTART_DEFAULT = True
#: Sensor inputs of the perception node, in the order they are subscribed.
INPUTS: tuple[str, ...] = ("camera", "audio", "tactile", "joint_states", "action")


def device_name(v: Any) -> str | None:
    return device_problem(v)


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    when = "applies immediately" if spec.live else "applies on the next configure"
    return ParameterDescriptor(
        name=spec.name, description=f"{spec.description} ({when})", dynamic_typing=spec.number
    )


#: Slowest prediction rate accepted (Hz) when rate limiting (0 = every frame). Lower rates are a
#: typo or an attack: 1e-300 Hz would silently stop predictions while diagnostics say OK.
MIN_RATE_HZ = 0.01


def prediction_rate(v: Any) -> str | None:
    reason = number(0.0, 1000.0)(v)
    if reason is None and 0 < v < MIN_RATE_HZ:
        reason = f"must be 0 (every camera frame) or >= {MIN_RATE_HZ} Hz; got {v!r}"
    return reason


def model_directory(v: Any) -> str | None:
    """'' (the package's model) or a directory holding a checkpoint or an ONNX export, checked when set
    so ``model:=/etc`` is refused at once instead of falling back to a baseline at the next configure."""
    if not isinstance(v, str):
        return f"must be a string; got {v!r}"
    if v == "":
        return None
    try:
        d = Path(v).expanduser()
        ok = d.is_dir() and (is_checkpoint_dir(d) or is_export_dir(d))
    except (OSError, RuntimeError, ValueError):  # unreadable, bad user in ~user, NUL byte
        ok = False
    return (
        None
        if ok
        else (
            "must be a model directory (model.safetensors + config.json, or an ONNX export with "
            f"export.json); got {v!r}"
        )
    )


# ------------------------------------------------------------------------------------ perception
_PERCEPTION: list[ParamSpec] = [
    ParamSpec(
        "autostart",
        AUTOSTART_DEFAULT,
        "configure and activate on start-up; false: wait for a lifecycle manager or `ros2 lifecycle set`",
        any_bool,
    ),
    ParamSpec(
        "topics.camera",
        "/camera/image_raw",
        "camera topic (sensor_msgs/Image or CompressedImage)",
        topic_name(allow_empty=False, required_because="the model predicts from camera frames"),
    ),
    ParamSpec(
        "topics.audio", "/audio", "audio topic (embodied_wm/AudioFrame); none = no audio", topic_name()
    ),
    ParamSpec("topics.tactile", "/tactile", "tactile topic; none = no tactile input", topic_name()),
    ParamSpec(
        "topics.joint_states",
        "/joint_states",
        "sensor_msgs/JointState topic; none = no joint states",
        topic_name(),
    ),
    ParamSpec(
        "topics.action",
        "/cmd_vel_ee",
        "end-effector twist command (geometry_msgs/TwistStamped); none = no actions",
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
    ParamSpec("model", "", "model directory; '' = the package's models/tiny", model_directory),
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
        f"prediction rate in data time; 0 = every camera frame, else {MIN_RATE_HZ}..1000 Hz",
        prediction_rate,
        number=True,
        live=True,
    ),
    ParamSpec(
        "camera_timeout_s",
        0.5,
        "camera outage: no frame for longer than this (data time) while other inputs go on -> affordances "
        "and world state from the other sensors at the model's dt, predicted frames withheld; 0 = off",
        number(0.0, 60.0),
        number=True,
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
    ParamSpec(
        "max_image_pixels",
        4096 * 4096,
        "camera images (raw or compressed) of more pixels are refused before decoding (image:too_large)",
        integer(1, 2**31 - 1),
    ),
    ParamSpec(
        "rollout.max_candidates",
        256,
        "PredictRollout requests with more candidates are rejected",
        integer(1, 65536),
        live=True,
    ),
    ParamSpec(
        "rollout.chunk_candidates",
        8,
        "candidates run per backend call; bounds a rollout's memory, predictions run between chunks",
        integer(1, 4096),
        live=True,
    ),
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


def declare_all(node: Any, specs: Iterable[ParamSpec]) -> None:
    """Declare every parameter of ``specs`` on ``node`` (values from params files/-p override defaults)."""
    for spec in specs:
        node.declare_parameter(spec.name, spec.default, descriptor(spec))


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
        listlike = isinstance(value, list | tuple) or type(value).__name__ == "array"
        if spec.number and value is not None and not listlike:
            value = float(value)
        if listlike:
            value = [float(x) for x in value] if spec.number else list(value)
        out[spec.name] = value
    return out


__all__ = [
    "AUTOSTART_DEFAULT",
    "BACKENDS",
    "BASELINE_BACKENDS",
    "CAMERA_TRANSPORTS",
    "DISABLED_TOPIC",
    "INPUTS",
    "PERCEPTION_PARAMS",
    "PLANNER_PARAMS",
    "TACTILE_TYPES",
    "Check",
    "ParamSpec",
    "any_bool",
    "any_string",
    "declare_all",
    "descriptor",
    "flatten",
    "integer",
    "make_set_callback",
    "nested",
    "number",
    "one_of",
    "read_all",
    "spec_table",
    "topic_disabled",
    "topic_name",
    "validate",
]
