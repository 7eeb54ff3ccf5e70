"""Tactile, joint state and twist decoders, as rclpy and as rosbags messages."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import requires_ros

from embodied_wm.io.messages import (
    float32_multiarray_msg,
    header,
    joint_state_msg,
    tactile_msg,
    twist_msg,
)
from embodied_wm.sensing.common import stamp_ns
from embodied_wm.sensing.errors import NonFiniteError, SensingError, ShapeError
from embodied_wm.sensing.proprio import decode_joint_state, decode_twist
from embodied_wm.sensing.tactile import decode_float32_multiarray, decode_tactile

FLAVORS = [pytest.param("rclpy", marks=requires_ros), "rosbags"]
T0 = 1_700_000_000 * 10**9 + 123_456_789
GRID = np.arange(20, dtype=np.float32).reshape(4, 5) / 7


@pytest.mark.parametrize("flavor", FLAVORS)
def test_stamp_ns(flavor: str) -> None:
    assert stamp_ns(header(T0, flavor=flavor)) == T0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_tactile(flavor: str) -> None:
    stamp, values = decode_tactile(tactile_msg(GRID, T0, flavor=flavor))
    assert stamp == T0 and values.dtype == np.float32 and values.shape == (4, 5)
    np.testing.assert_array_equal(values, GRID)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_tactile_validation(flavor: str) -> None:
    with pytest.raises(ShapeError, match="5x5 needs 25 values, got 20") as err:
        decode_tactile(tactile_msg(GRID, flavor=flavor, rows=5, cols=5))
    assert err.value.reason == "bad_shape"
    with pytest.raises(ShapeError):
        decode_tactile(tactile_msg(np.zeros((0, 0)), flavor=flavor, rows=0, cols=0))
    bad = GRID.copy()
    bad[1, 1] = np.inf
    with pytest.raises(NonFiniteError, match="1 NaN/inf of 20"):
        decode_tactile(tactile_msg(bad, flavor=flavor))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_float32_multiarray(flavor: str) -> None:
    stamp, values = decode_float32_multiarray(float32_multiarray_msg(GRID, flavor), 42)
    assert stamp == 42 and values.shape == (4, 5)
    np.testing.assert_array_equal(values, GRID)
    _, flat = decode_float32_multiarray(float32_multiarray_msg(GRID, flavor, layout=False), 1, shape=(2, 10))
    np.testing.assert_array_equal(flat, GRID.reshape(2, 10))
    _, off = decode_float32_multiarray(float32_multiarray_msg(GRID, flavor, data_offset=3), 1)
    np.testing.assert_array_equal(off, GRID)
    with pytest.raises(ShapeError, match="expected 25 values"):
        decode_float32_multiarray(float32_multiarray_msg(GRID, flavor), 1, shape=(5, 5))
    with pytest.raises(ShapeError, match="none"):
        decode_float32_multiarray(float32_multiarray_msg(np.zeros(0), flavor, layout=False), 1)
    with pytest.raises(NonFiniteError):
        decode_float32_multiarray(float32_multiarray_msg(np.array([1.0, np.nan]), flavor), 1)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_joint_state(flavor: str) -> None:
    stamp, vec = decode_joint_state(joint_state_msg([0.1, 0.2, 0.3], [1.0, 2.0, 3.0], T0, flavor=flavor))
    assert stamp == T0 and vec.dtype == np.float32
    np.testing.assert_allclose(vec, [0.1, 0.2, 0.3, 1, 2, 3], rtol=1e-6)
    # positions only: velocities documented as zeros
    _, vec = decode_joint_state(joint_state_msg([0.5, 0.6], [], T0, flavor=flavor))
    np.testing.assert_allclose(vec, [0.5, 0.6, 0, 0], rtol=1e-6)
    # selection and order by name
    msg = joint_state_msg([1, 2, 3], [4, 5, 6], names=["a", "b", "c"], flavor=flavor)
    _, vec = decode_joint_state(msg, joint_names=["c", "a"])
    np.testing.assert_array_equal(vec, [3, 1, 6, 4])
    with pytest.raises(ShapeError, match="missing"):
        decode_joint_state(msg, joint_names=["z"])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_joint_state_validation(flavor: str) -> None:
    with pytest.raises(ShapeError, match="velocity must be empty or match 3 positions, got 2"):
        decode_joint_state(joint_state_msg([1, 2, 3], [1, 2], flavor=flavor))
    with pytest.raises(ShapeError):
        decode_joint_state(joint_state_msg([], [], flavor=flavor))
    with pytest.raises(NonFiniteError):
        decode_joint_state(joint_state_msg([1, np.nan], [0, 0], flavor=flavor))
    with pytest.raises(NonFiniteError):
        decode_joint_state(joint_state_msg([1, 2], [0, np.inf], flavor=flavor))


@pytest.mark.parametrize("flavor", FLAVORS)
def test_twist(flavor: str) -> None:
    stamp, vec = decode_twist(twist_msg([0.1, -0.2, 0.3, 0.0, 0.5, -1.5], T0, flavor=flavor))
    assert stamp == T0 and vec.shape == (6,) and vec.dtype == np.float32
    np.testing.assert_allclose(vec, [0.1, -0.2, 0.3, 0.0, 0.5, -1.5], rtol=1e-6)
    with pytest.raises(NonFiniteError):
        decode_twist(twist_msg([0, 0, np.nan, 0, 0, 0], flavor=flavor))


@requires_ros
def test_rclpy_and_rosbags_agree() -> None:
    for build, decode in [
        (lambda f: tactile_msg(GRID, T0, flavor=f), decode_tactile),
        (lambda f: joint_state_msg([0.1, 0.2], [0.3, 0.4], T0, flavor=f), decode_joint_state),
        (lambda f: twist_msg([1, 2, 3, 4, 5, 6], T0, flavor=f), decode_twist),
    ]:
        (sa, va), (sb, vb) = decode(build("rclpy")), decode(build("rosbags"))
        assert sa == sb
        np.testing.assert_array_equal(va, vb)


def test_negative_stamp_rejected() -> None:
    h = header(0, flavor="rosbags")
    h.stamp.sec = -1
    with pytest.raises(SensingError) as err:
        stamp_ns(h)
    assert err.value.reason == "bad_stamp"
