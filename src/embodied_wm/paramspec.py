"""Parameter tables: one ParamSpec per setting, with its default, description and check (no ROS here).

The nodes declare their ROS parameters from these tables (ros/params.py), config/*.yaml mirror them, and
the command-line evaluations validate the same settings with the same checks (eval/planning.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

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


#: The word that disables an optional topic. ``ros2 launch`` rejects an empty argument (``name:=``) and
#: passes ``name:=''`` on as two quote characters, so "off" needs a word; '' works too where it can be
#: written (YAML, ``-p name:=''``). A relative topic really called ``none`` must be written ``/none``.
DISABLED_TOPIC = "none"


def topic_disabled(topic: str) -> bool:
    """True for the values that switch an optional topic off: '' and ``none``."""
    return topic.strip() in ("", DISABLED_TOPIC)


def topic_name(allow_empty: bool = True, required_because: str = "") -> Check:
    """A plausible ROS topic name (absolute, relative or ~/private); with ``allow_empty`` also ``none``
    or '' (the topic is disabled). ``required_because`` says why a required topic cannot be."""

    def _check(v: Any) -> str | None:
        if not isinstance(v, str):
            return f"must be a string; got {v!r}"
        if topic_disabled(v):
            if allow_empty:
                return None
            return f"cannot be disabled ({required_because or 'required'}); got {v!r}"
        body = v[2:] if v.startswith("~/") else v.lstrip("/")
        ok = body != "" and all(c.isalnum() or c in "_/{}" for c in body) and not body[0].isdigit()
        if not ok or "//" in v or v.endswith("/"):
            return f"is not a valid topic name: {v!r}"
        return None

    return _check


def any_string(v: Any) -> str | None:
    return None if isinstance(v, str) else f"must be a string; got {v!r}"


def any_bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be true or false; got {v!r}"


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
