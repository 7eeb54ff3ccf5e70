"""ONNX Runtime and PyTorch backends: the Backend contract, and agreement with each other on the same
Observations (both CPU, fp32)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_runtime_common import DT, make_observations, shared_model

from embodied_wm.observation import Observation
from embodied_wm.runtime.base import BackendError, BackendUnavailableError
from embodied_wm.runtime.learned import LearnedBackend
from embodied_wm.runtime.onnxruntime_backend import OnnxRuntimeBackend
from embodied_wm.runtime.torch_backend import TorchBackend

#: uint8 frames may differ by one grey level where fp32 results straddle a rounding boundary.
FRAME_TOL = 1
FLOAT_TOL = 1e-4


@pytest.fixture(scope="module")
def dirs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    shared = shared_model(tmp_path_factory)
    return shared.ckpt, shared.export


@pytest.fixture(scope="module")
def ort_be(dirs: tuple[Path, Path]) -> OnnxRuntimeBackend:
    return OnnxRuntimeBackend(dirs[1], device="cpu", intra_op_threads=1)


@pytest.fixture(scope="module")
def torch_be(dirs: tuple[Path, Path]) -> TorchBackend:
    return TorchBackend(dirs[0], device="cpu")


def test_backends_agree_on_same_observations(ort_be: OnnxRuntimeBackend, torch_be: TorchBackend) -> None:
    ort_be.reset()
    torch_be.reset()
    for obs in make_observations(4):
        a, b = ort_be.predict(obs), torch_be.predict(obs)
        assert a.frames.shape == b.frames.shape == (8, 64, 64, 3)
        assert a.frames.dtype == b.frames.dtype == np.uint8
        assert np.abs(a.frames.astype(int) - b.frames.astype(int)).max() <= FRAME_TOL
        assert a.affordance.shape == b.affordance.shape == (2, 64, 64)
        assert np.abs(a.affordance - b.affordance).max() <= FLOAT_TOL
        assert a.latent.shape == b.latent.shape == (256,)
        assert np.abs(a.latent - b.latent).max() <= FLOAT_TOL
        assert a.model_id == b.model_id
    cand = np.random.default_rng(0).normal(0, 0.3, (5, 8, 6)).astype(np.float32)
    ra, rb = ort_be.rollout(cand), torch_be.rollout(cand)
    assert ra.frames.shape == rb.frames.shape == (5, 8, 64, 64, 3)
    assert np.abs(ra.frames.astype(int) - rb.frames.astype(int)).max() <= FRAME_TOL
    assert np.abs(ra.affordance - rb.affordance).max() <= FLOAT_TOL


@pytest.mark.parametrize("which", ["onnxruntime", "pytorch"])
def test_prediction_contract(which: str, ort_be: OnnxRuntimeBackend, torch_be: TorchBackend) -> None:
    be: LearnedBackend = ort_be if which == "onnxruntime" else torch_be
    be.reset()
    obs = make_observations(2)
    be.predict(obs[0])
    pred = be.predict(obs[1])
    assert set(pred.timings_ms) == {"preprocess", "encode", "rollout", "postprocess"}
    assert all(v >= 0 for v in pred.timings_ms.values())
    assert pred.affordance_channels == ("contact", "movable")
    assert (
        pred.affordance.dtype == np.float32 and 0.0 <= pred.affordance.min() <= pred.affordance.max() <= 1.0
    )
    assert list(pred.frame_stamps_ns) == [DT + k * DT for k in range(1, 9)]
    assert be.horizon == 8 and be.image_size == (64, 64) and be.dt_ns == DT and be.action_dim == 6
    desc = be.describe()
    assert desc["backend"] == which and desc["device"] == "cpu" and desc["model_id"] == be.model_id


@pytest.mark.parametrize("which", ["onnxruntime", "pytorch"])
def test_held_action_and_rollout_from_cached_state(
    which: str, ort_be: OnnxRuntimeBackend, torch_be: TorchBackend
) -> None:
    be: LearnedBackend = ort_be if which == "onnxruntime" else torch_be
    be.reset()
    obs = make_observations(2)
    be.predict(obs[0])
    pred = be.predict(obs[1])
    held = np.repeat(obs[1].action[None].astype(np.float32), 8, axis=0)
    # rollout() runs from the state of the last predict, without re-encoding.
    ro = be.rollout(np.stack([held, held * 0 + 0.5]))
    # Same inputs, but batched with another candidate: kernels may sum in another order (oneDNN picks
    # per batch size), so allow one grey level / float rounding rather than bit equality.
    assert np.abs(ro.frames[0].astype(int) - pred.frames.astype(int)).max() <= FRAME_TOL
    assert np.allclose(ro.affordance[0], pred.affordance, atol=1e-5)
    assert not np.array_equal(ro.frames[1], ro.frames[0])  # actions matter
    assert ro.stamp_ns == obs[1].stamp_ns
    # Explicit actions equal to the held ones give the same prediction as actions=None.
    be.reset()
    be.predict(obs[0])
    again = be.predict(obs[1], actions=held)
    assert np.array_equal(again.frames, pred.frames)  # same batch size: deterministic
    # A missing action is held as zeros.
    no_act = Observation(stamp_ns=obs[1].stamp_ns + DT, image=obs[1].image)
    zeros = be.held_actions(no_act)
    assert zeros.shape == (8, 6) and not zeros.any()


@pytest.mark.parametrize("which", ["onnxruntime", "pytorch"])
def test_history_and_reset(which: str, ort_be: OnnxRuntimeBackend, torch_be: TorchBackend) -> None:
    be: LearnedBackend = ort_be if which == "onnxruntime" else torch_be
    obs = make_observations(3)
    be.reset()
    first = be.predict(obs[1])  # no previous frame: prev_image = current image
    with_prev = (be.reset(), be.predict(obs[0]), be.predict(obs[1]))[2]
    assert not np.array_equal(first.latent, with_prev.latent)  # the previous frame is used
    be.reset()
    with pytest.raises(BackendError, match="before any predict"):
        be.rollout(np.zeros((1, 8, 6), np.float32))
    after_reset = be.predict(obs[1])
    assert np.array_equal(after_reset.latent, first.latent)


@pytest.mark.parametrize("which", ["onnxruntime", "pytorch"])
def test_candidate_shape_errors(which: str, ort_be: OnnxRuntimeBackend, torch_be: TorchBackend) -> None:
    be: LearnedBackend = ort_be if which == "onnxruntime" else torch_be
    be.reset()
    be.predict(make_observations(1)[0])
    with pytest.raises(BackendError, match=r"expected shape \(N>=1, 8, 6\).*got \(2, 5, 6\)"):
        be.rollout(np.zeros((2, 5, 6), np.float32))
    with pytest.raises(BackendError, match=r"actions: expected shape"):
        be.predict(make_observations(1)[0], actions=np.zeros((8, 3), np.float32))


def test_missing_image_still_predicts(ort_be: OnnxRuntimeBackend, torch_be: TorchBackend) -> None:
    """A missing camera frame (a camera outage) is explicit (mask 0), not an error, for the learned
    backends: both give the same affordances from the other modalities, which do change them; the rollout
    service works from that state; and the next frame has no previous frame (no motion across the gap)."""
    obs = make_observations(4)
    blind = [replace(o, image=None) for o in obs]
    for be in (ort_be, torch_be):
        be.reset()
    a, b = ort_be.predict(obs[0]), torch_be.predict(obs[0])  # a frame before the outage
    preds = [(ort_be.predict(o), torch_be.predict(o)) for o in blind[1:3]]
    for a, b in preds:
        assert a.frames.shape == (8, 64, 64, 3) and a.affordance.shape == (2, 64, 64)
        assert np.isfinite(a.affordance).all() and 0.0 <= a.affordance.min() <= a.affordance.max() <= 1.0
        assert np.abs(a.affordance - b.affordance).max() <= FLOAT_TOL
        assert np.abs(a.latent - b.latent).max() <= FLOAT_TOL
    # without the camera, audio and touch are what the affordance comes from
    deaf = ort_be.predict(replace(blind[1], audio=None, tactile=None, stamp_ns=blind[1].stamp_ns + 1))
    assert np.abs(preds[0][0].affordance - deaf.affordance).max() > 1e-4
    assert ort_be.rollout(np.zeros((3, 8, 6), np.float32)).affordance.shape == (3, 2, 64, 64)
    back = [be.predict(obs[3]) for be in (ort_be, torch_be)]
    for be, got in zip((ort_be, torch_be), back):
        be.reset()  # a fresh history: the frame after the outage is predicted as the first one
        np.testing.assert_array_equal(got.frames, be.predict(obs[3]).frames)


def test_onnxruntime_given_a_checkpoint_uses_the_export_cache(
    dirs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A checkpoint dir goes through ensure_onnx (export on a miss is tested in test_runtime_export)."""
    shared = shared_model(tmp_path_factory)
    be = OnnxRuntimeBackend(dirs[0], device="cpu", cache_dir=shared.cache, intra_op_threads=1)
    assert Path(be.describe()["export_dir"]) == shared.export


def test_explicit_cuda_unavailable_here(dirs: tuple[Path, Path]) -> None:
    from embodied_wm.runtime.onnxruntime_backend import available_providers
    from embodied_wm.runtime.torch_backend import cuda_available

    if cuda_available()[0]:
        pytest.skip("this machine has CUDA")
    with pytest.raises(BackendUnavailableError, match="PyTorch CUDA"):
        TorchBackend(dirs[0], device="cuda")
    if "CUDAExecutionProvider" not in available_providers():
        with pytest.raises(BackendUnavailableError, match="no CUDA execution provider"):
            OnnxRuntimeBackend(dirs[1], device="cuda")


def test_pytorch_needs_checkpoint(dirs: tuple[Path, Path]) -> None:
    with pytest.raises(BackendUnavailableError, match="only an ONNX export"):
        TorchBackend(dirs[1], device="cpu")
