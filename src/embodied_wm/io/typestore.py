"""A rosbags typestore that knows the standard Jazzy types plus embodied_wm's own messages.

The .msg files are read from the package (source tree or ROS install tree) so there is one definition.
"""

from __future__ import annotations

import functools
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from embodied_wm.resources import package_roots

#: Our message names, as rosbags spells them.
OWN_MESSAGES = ("TactileArray", "AudioFrame", "PredictedFrames", "AffordanceMap", "WorldState")


def interface_dir() -> Path:
    """The directory holding msg/ and srv/: the source checkout, or share/embodied_wm when installed."""

    candidates = package_roots()
    for cand in candidates:
        if (cand / "msg" / "TactileArray.msg").is_file():
            return cand
    raise FileNotFoundError(
        "cannot find embodied_wm's msg/ directory (looked in " + ", ".join(map(str, candidates)) + ")"
    )


@functools.cache
def typestore() -> Typestore:
    """Jazzy's standard types plus embodied_wm/msg/*. Cached: build it once per process."""
    store = get_typestore(Stores.ROS2_JAZZY)
    msg_dir = interface_dir() / "msg"
    types: dict = {}
    for name in OWN_MESSAGES:
        text = (msg_dir / f"{name}.msg").read_text()
        types.update(get_types_from_msg(text, f"embodied_wm/msg/{name}"))
    store.register(types)
    return store
