"""The planner's settings (planner_node's ROS parameters, and eval-planner's options for the same CEM)."""

from __future__ import annotations

import math
from typing import Any

from embodied_wm.paramspec import ParamSpec, any_string, integer, number, one_of, topic_name


def _check_active_dims(v: Any) -> str | None:
    if not isinstance(v, list | tuple) or not v or not all(isinstance(i, int) and 0 <= i < 6 for i in v):
        return f"must be a non-empty list of integers in 0..5; got {v!r}"
    return None


def _check_pixel_pairs(v: Any) -> str | None:
    if v is None:  # a params file's `[]` arrives untyped, as no value: no pixels
        return None
    if not isinstance(v, list | tuple) or len(v) % 2:
        return f"must be a flat list of (u, v) pairs; got {v!r}"
    if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in v):
        return f"must hold finite numbers; got {v!r}"
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
    ParamSpec(
        "goal_topic", "/goal_image", "goal image topic (sensor_msgs/Image); none = no topic", topic_name()
    ),
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
    ParamSpec(
        "contact_weight",
        0.0,
        "weight of the predicted contact affordance (nonzero makes every query decode full frames)",
        number(),
        number=True,
    ),
    ParamSpec(
        "objective",
        "pixel",
        "pixel (designated pixels moved to goal pixels, Visual Foresight) or image (goal image)",
        one_of(("pixel", "image")),
    ),
    ParamSpec(
        "designated_pixels",
        [],
        "pixel objective: (u, v) pairs on the object, camera pixels (flat list)",
        _check_pixel_pairs,
        number=True,
        live=True,
    ),
    ParamSpec(
        "goal_pixels",
        [],
        "pixel objective: one goal (u, v) per designated pixel, camera pixels (flat list)",
        _check_pixel_pairs,
        number=True,
        live=True,
    ),
    ParamSpec(
        "effector_pixel",
        [],
        "pixel objective: (u, v) of the end effector, camera pixels; [] = no approach term",
        _check_pixel_pairs,
        number=True,
        live=True,
    ),
    ParamSpec(
        "pixel_weight", 1.0, "weight of the pixel-goal term (score channel 'pixel')", number(0.0), number=True
    ),
    ParamSpec(
        "approach_weight",
        1.0,
        "weight of the term bringing the end effector to the designated pixels (score channel 'approach')",
        number(0.0),
        number=True,
    ),
    ParamSpec("seed", 0, "random seed of the sampler", integer(0)),
    ParamSpec(
        "max_steps", 0, "stop (publish zero twist) after this many control steps; 0 = run forever", integer(0)
    ),
    ParamSpec("log_path", "", "append one JSON line per control step here ('' = no log)", any_string),
)
