"""Tactile messages to float32 rows x cols grids."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from embodied_wm.sensing.common import as_float32, check_finite, stamp_ns
from embodied_wm.sensing.errors import ShapeError


def decode_tactile(msg: Any) -> tuple[int, np.ndarray]:
    """embodied_wm/TactileArray to (stamp_ns, float32 rows x cols), row-major."""
    rows, cols = int(msg.rows), int(msg.cols)
    values = as_float32(msg.values)
    if rows <= 0 or cols <= 0:
        raise ShapeError(f"TactileArray {rows}x{cols}: expected a non-empty grid")
    if rows * cols != values.size:
        raise ShapeError(f"TactileArray {rows}x{cols} needs {rows * cols} values, got {values.size}")
    check_finite(values, f"TactileArray {rows}x{cols}")
    return stamp_ns(msg.header), values.reshape(rows, cols).copy()


def decode_float32_multiarray(
    msg: Any, stamp_ns: int, shape: tuple[int, ...] | None = None
) -> tuple[int, np.ndarray]:
    """std_msgs/Float32MultiArray to (stamp_ns, float32 array).

    The message has no header, so the caller supplies the stamp (the receive time). ``layout.dim``
    gives the shape when present (``data_offset`` honoured); ``shape``, when given, is the shape the
    caller needs and must hold the same number of values.
    """
    data = as_float32(msg.data)
    layout = getattr(msg, "layout", None)
    dims = list(getattr(layout, "dim", []) or [])
    offset = int(getattr(layout, "data_offset", 0) or 0)
    if dims:
        native = tuple(int(d.size) for d in dims)
        count = math.prod(native)
        if offset < 0 or data.size - offset != count:
            raise ShapeError(
                f"Float32MultiArray layout {native} (offset {offset}) needs {count + offset} values, "
                f"got {data.size}"
            )
        values = data[offset:].reshape(native)
    else:
        values = data
    if values.size == 0:
        raise ShapeError("Float32MultiArray: expected values, got none")
    if shape is not None:
        want = tuple(int(s) for s in shape)
        if math.prod(want) != values.size:
            raise ShapeError(
                f"Float32MultiArray: expected {math.prod(want)} values for shape {want}, "
                f"got {values.size} (shape {values.shape})"
            )
        values = values.reshape(want)
    check_finite(values, "Float32MultiArray")
    return int(stamp_ns), np.array(values, dtype=np.float32)
