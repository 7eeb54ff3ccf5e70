"""What a measurement ran on: the one reader of /proc/cpuinfo, for every benchmark and evaluation report."""

from __future__ import annotations

import os
import platform
from typing import Any


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on: CPU model, cores this process may use, OS, Python."""
    model = cpu_model()
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 0
    return {
        "cpu_model": model,
        "cpu_cores": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
        "load_avg_at_start": list(os.getloadavg()),
        "description": f"{model}, {cores} cores",
    }
