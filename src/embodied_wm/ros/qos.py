"""QoS profiles for embodied_wm's topics.

Inputs follow REP-2003: sensor subscriptions default to the sensor-data profile (best effort, keep last 5,
volatile), which matches both best-effort and reliable publishers, so the node works with any driver.
Each input can be switched to reliable (and its depth changed) by parameter: over loopback a best-effort
640x480 stream loses a third of its frames (see DESIGN.md), and the replay equality test needs every
message. Outputs are reliable with a small depth: planners want every prediction but never a backlog.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from pathlib import Path

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

from embodied_wm.errors import ConfigError
from embodied_wm.resources import package_file_candidates

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
        raise ConfigError(f"unknown reliability {reliability!r} (use one of {sorted(RELIABILITIES)})")
    if durability not in DURABILITIES:
        raise ConfigError(f"unknown durability {durability!r} (use one of {sorted(DURABILITIES)})")
    if int(depth) < 1:
        raise ConfigError(f"QoS depth must be >= 1, got {depth}")
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


#: Environment variables through which Fast DDS 2.x (Humble, Jazzy) and 3.x read an XML profile file.
FASTDDS_PROFILE_VARS: tuple[str, ...] = ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE")
#: Files Fast DDS loads on its own from the working directory.
FASTDDS_CWD_PROFILES: tuple[str, ...] = ("DEFAULT_FASTRTPS_PROFILES.xml", "DEFAULT_FASTDDS_PROFILES.xml")
#: Set to 0/false/off to keep Fast DDS's built-in transports in a node that would default to the profile.
SHM_PROFILE_OPT_OUT = "EWM_FASTDDS_SHM"


def shm_profile_candidates() -> list[Path]:
    """Where the package's Fast DDS profile may be: share/embodied_wm/config, then <repo>/config."""

    return package_file_candidates("config", "fastdds_shm.xml")


def default_shm_profile(env: MutableMapping[str, str] | None = None, cwd: Path | None = None) -> str | None:
    """Make a process that publishes large messages use config/fastdds_shm.xml unless told otherwise.

    Call before ``rclpy.init`` (Fast DDS reads the variable when it creates the participant). Fast DDS's
    default shared-memory segment is 0.5 MB per participant, and it recycles the oldest buffers when a
    new sample does not fit: a subscriber that stalls for a few hundred ms (CPU contention, GC) then
    finds the samples it had not read yet gone, and a reliable writer with a small keep-last depth can
    no longer repair them, so ``message_lost`` rises although the QoS is reliable. One 64x64 prediction
    (8 frames + affordance + latent) is ~0.14 MB; at 128x128 ~0.5 MB, so the default segment does not
    even hold the output depth. The 16 MB segment holds dozens.

    Nothing changes when the middleware is not Fast DDS, when a profile file is already configured
    (environment or a DEFAULT_FAST*_PROFILES.xml in the working directory), when ``EWM_FASTDDS_SHM``
    is 0/false/off, or when the file is not found. Returns the profile path set, or None.
    """
    env = os.environ if env is None else env
    cwd = Path.cwd() if cwd is None else cwd
    if env.get(SHM_PROFILE_OPT_OUT, "").strip().lower() in ("0", "false", "off", "no"):
        return None
    rmw = env.get("RMW_IMPLEMENTATION", "")
    if rmw and not rmw.startswith("rmw_fastrtps"):
        return None
    if any(env.get(v) for v in FASTDDS_PROFILE_VARS):
        return None
    if any((cwd / f).is_file() for f in FASTDDS_CWD_PROFILES):
        return None
    path = next((p for p in shm_profile_candidates() if p.is_file()), None)
    if path is None:
        return None
    # Fast DDS 2.x (the Humble and Jazzy middleware) reads only this one; setting the 3.x name as well
    # could load the file twice there (duplicate profile names).
    env[FASTDDS_PROFILE_VARS[0]] = str(path)
    return str(path)


__all__ = [
    "DURABILITIES",
    "FASTDDS_PROFILE_VARS",
    "OUTPUT_DEPTH",
    "RELIABILITIES",
    "SENSOR_DEPTH",
    "clock_qos",
    "default_shm_profile",
    "diagnostics_qos",
    "make_qos",
    "output_qos",
    "player_qos",
    "sensor_qos",
    "shm_profile_candidates",
]
