"""Baselines: copy-last is exact on static input, linear extrapolation tracks a translating square."""

from __future__ import annotations

import numpy as np
import pytest

from embodied_wm.observation import Observation
from embodied_wm.runtime.base import Backend, BackendError
from embodied_wm.runtime.baselines import CopyLastBackend, LinearBackend

DT = 100_000_000


def _square(t: int, size: int = 64, vx: int = 2, vy: int = 1, textured: bool = False) -> np.ndarray:
    img = np.full((size, size, 3), 40, np.uint8)
    side = 14
    if textured:
        patch = np.random.default_rng(0).integers(100, 255, (side, side, 3), dtype=np.uint8)
    else:
        patch = np.full((side, side, 3), 220, np.uint8)
    x, y = 8 + vx * t, 16 + vy * t
    img[y : y + side, x : x + side] = patch
    return img


def _mae(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


@pytest.mark.parametrize("cls", [CopyLastBackend, LinearBackend])
def test_static_input_is_copied_exactly(cls: type[Backend]) -> None:
    be = cls(image_size=(64, 64), horizon=5, dt_ns=DT)  # type: ignore[call-arg]
    img = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    for t in range(3):
        pred = be.predict(Observation(stamp_ns=t * DT, image=img))
    assert pred.frames.shape == (5, 64, 64, 3) and pred.frames.dtype == np.uint8
    if cls is CopyLastBackend:
        assert np.array_equal(pred.frames, np.broadcast_to(img, pred.frames.shape))
    else:  # zero flow on identical frames -> the identity warp (bilinear at integer points is exact)
        assert _mae(pred.frames, np.broadcast_to(img, pred.frames.shape)) < 0.5
    assert pred.affordance.shape == (0, 64, 64)
    assert pred.affordance_channels == ()
    assert list(pred.frame_stamps_ns) == [2 * DT + k * DT for k in range(1, 6)]
    assert set(pred.timings_ms) == {"preprocess", "encode", "rollout", "postprocess"}


def test_frames_are_at_model_resolution() -> None:
    be = CopyLastBackend(image_size=(32, 48), horizon=2)
    pred = be.predict(Observation(stamp_ns=0, image=np.zeros((480, 640, 3), np.uint8)))
    assert pred.frames.shape == (2, 32, 48, 3)


@pytest.mark.parametrize("textured", [False, True])
def test_linear_beats_copy_last_on_translating_square(textured: bool) -> None:
    lin, cp = LinearBackend(horizon=6, dt_ns=DT), CopyLastBackend(horizon=6, dt_ns=DT)
    for t in range(2):
        obs = Observation(stamp_ns=t * DT, image=_square(t, textured=textured))
        p_lin, p_cp = lin.predict(obs), cp.predict(obs)
    err_lin = [_mae(p_lin.frames[k], _square(2 + k, textured=textured)) for k in range(6)]
    err_cp = [_mae(p_cp.frames[k], _square(2 + k, textured=textured)) for k in range(6)]
    assert all(e_l < 0.5 * e_c for e_l, e_c in zip(err_lin, err_cp)), (err_lin, err_cp)
    assert err_lin[0] < 1.0


def test_linear_scales_velocity_to_dt() -> None:
    """Frames observed 2*dt apart: the predicted step is half the observed displacement."""
    lin = LinearBackend(horizon=2, dt_ns=DT)
    lin.predict(Observation(stamp_ns=0, image=_square(0, vx=2, vy=0)))
    pred = lin.predict(Observation(stamp_ns=2 * DT, image=_square(1, vx=2, vy=0)))
    # Square at x=10 now, moving 1 px per dt: x = 11, 12.
    assert _mae(pred.frames[0], np.roll(_square(1, vx=2, vy=0), 1, axis=1)) < 1.0
    assert _mae(pred.frames[1], _square(2, vx=2, vy=0)) < 1.0


def test_linear_without_previous_frame_is_copy_last() -> None:
    lin = LinearBackend(horizon=3)
    img = _square(0)
    pred = lin.predict(Observation(stamp_ns=0, image=img))
    assert np.array_equal(pred.frames, np.broadcast_to(img, pred.frames.shape))


def test_reset_forgets_history() -> None:
    lin = LinearBackend(horizon=3)
    lin.predict(Observation(stamp_ns=0, image=_square(0)))
    lin.reset()
    pred = lin.predict(Observation(stamp_ns=DT, image=_square(1)))
    assert np.array_equal(pred.frames, np.broadcast_to(_square(1), pred.frames.shape))
    lin.reset()
    with pytest.raises(BackendError, match="before any predict"):
        lin.rollout(np.zeros((1, 3, 6), np.float32))


def test_stamp_going_backwards_drops_motion() -> None:
    lin = LinearBackend(horizon=2)
    lin.predict(Observation(stamp_ns=5 * DT, image=_square(0)))
    pred = lin.predict(Observation(stamp_ns=DT, image=_square(1)))
    assert np.array_equal(pred.frames, np.broadcast_to(_square(1), pred.frames.shape))


@pytest.mark.parametrize("cls", [CopyLastBackend, LinearBackend])
def test_rollout_same_frames_for_every_candidate(cls: type[Backend]) -> None:
    be = cls(horizon=4)  # type: ignore[call-arg]
    be.predict(Observation(stamp_ns=0, image=_square(0)))
    pred = be.predict(Observation(stamp_ns=DT, image=_square(1)))
    ro = be.rollout(np.random.default_rng(0).normal(size=(5, 4, 6)).astype(np.float32))
    assert ro.frames.shape == (5, 4, 64, 64, 3)
    assert ro.affordance.shape == (5, 0, 64, 64)
    for i in range(5):
        assert np.array_equal(ro.frames[i], pred.frames)
    assert ro.stamp_ns == DT


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 6)),
        np.zeros((2, 3, 6)),
        np.zeros((2, 4, 5)),
        np.zeros((0, 4, 6)),
        np.full((1, 4, 6), np.nan),
    ],
)
def test_rollout_rejects_bad_candidates(bad: np.ndarray) -> None:
    be = CopyLastBackend(horizon=4)
    be.predict(Observation(stamp_ns=0, image=_square(0)))
    with pytest.raises(BackendError, match="candidates"):
        be.rollout(bad)


def test_missing_image() -> None:
    be = CopyLastBackend(horizon=2)
    with pytest.raises(BackendError, match="no image"):
        be.predict(Observation(stamp_ns=0))
    img = _square(0)
    be.predict(Observation(stamp_ns=0, image=img))
    pred = be.predict(Observation(stamp_ns=DT))  # dropped frame: repeat the last one seen
    assert np.array_equal(pred.frames[0], img)
