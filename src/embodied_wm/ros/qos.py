"""QoS profiles for embodied_wm's topics.

Inputs follow REP-2003: sensor subscriptions default to the sensor-data profile (best effort, keep last 5,
volatile), which matches both best-effort and reliable publishers, so the node works with any driver.
Each input can be switched to reliable (and its depth changed) by parameter: over loopback a best-effort
640x480 stream loses a third of its frames (see DESIGN.md), and the replay equality test needs every
message. Outputs are reliable with a small depth: planners want every prediction but never a backlog.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

RELIABILITIES: dict[str, ReliabilityPolicy] = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
    # rmw's own default (reliable with Fast DDS); accepted so a YAML can say "leave it alone".
    "system_default": ReliabilityPolicy.SYSTEM_DEFAULT,
}
DURABILITIES: dict[str, DurabilityPolicy] = {
    "volatile": DurabilityPolicy.VOLATILE,
    "transient_local": DurabilityPolicy.TRANSIENT_LOCAL,
}

#: REP-2003 sensor-data depth.
SENSOR_DEPTH = 5
#: Output depth: a few predictions of slack for a slow planner, never a growing queue.
OUTPUT_DEPTH = 5


def make_qos(
    reliability: str = "best_effort", depth: int = SENSOR_DEPTH, durability: str = "volatile"
) -> QoSProfile:
    """A keep-last profile from names (as they appear in parameters). Raises ValueError on bad names."""
    if reliability not in RELIABILITIES:
        raise ValueError(f"unknown reliability {reliability!r} (use one of {sorted(RELIABILITIES)})")
    if durability not in DURABILITIES:
        raise ValueError(f"unknown durability {durability!r} (use one of {sorted(DURABILITIES)})")
    if int(depth) < 1:
        raise ValueError(f"QoS depth must be >= 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=int(depth),
        reliability=RELIABILITIES[reliability],
        durability=DURABILITIES[durability],
    )


def sensor_qos(reliability: str = "best_effort", depth: int = SENSOR_DEPTH) -> QoSProfile:
    """Subscription profile for a sensor input (REP-2003 sensor data unless overridden)."""
    return make_qos(reliability, depth, "volatile")


def output_qos(depth: int = OUTPUT_DEPTH) -> QoSProfile:
    """Publisher profile for predictions, affordances, previews and the world state."""
    return make_qos("reliable", depth, "volatile")


def player_qos(depth: int = 100) -> QoSProfile:
    """Bag player publishers: reliable with a deep queue so a replay is not thinned by the transport
    (a best-effort subscriber still matches a reliable publisher)."""
    return make_qos("reliable", depth, "volatile")


def diagnostics_qos() -> QoSProfile:
    """/diagnostics as diagnostic_updater publishes it: reliable, keep last 10."""
    return make_qos("reliable", 10, "volatile")


def clock_qos() -> QoSProfile:
    """/clock publisher: reliable keep-last; it matches rclpy's best-effort /clock subscription."""
    return make_qos("reliable", 10, "volatile")


__all__ = [
    "DURABILITIES",
    "OUTPUT_DEPTH",
    "RELIABILITIES",
    "SENSOR_DEPTH",
    "clock_qos",
    "diagnostics_qos",
    "make_qos",
    "output_qos",
    "player_qos",
    "sensor_qos",
]
