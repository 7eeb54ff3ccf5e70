"""Giving freed memory back to the operating system.

glibc keeps freed heap memory in its arenas; after a burst of large temporary buffers (a big rollout,
ONNX Runtime without its own arena) the process would stay at its high-water mark. ``trim_heap`` asks
glibc to return what it can (malloc_trim); elsewhere it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any


@functools.cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        lib = ctypes.CDLL(name)
        return lib if hasattr(lib, "malloc_trim") else None
    except OSError:
        return None


def trim_heap() -> bool:
    """Return free heap memory to the OS; True if the C library supports it (glibc)."""
    lib = _libc()
    if lib is None:
        return False
    lib.malloc_trim(0)
    return True
