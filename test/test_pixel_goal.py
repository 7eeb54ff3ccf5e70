"""Pixel goals and the scores-only rollout: the designated-pixel map moves as the warp moves pixels, the
flow-only decoder equals the full one, ONNX (score.onnx) and PyTorch agree, backends validate pixels, and
the objective prefers what brings the object to its goal."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_runtime_common import make_observations, shared_model

from embodied_wm.observation import PixelRollout
from embodied_wm.planning import pixel_goal as PG
from embodied_wm.runtime.base import BackendError
from embodied_wm.runtime.onnx_export import FP32_TOLERANCES


def _base_grid(s: int):
    import torch

    ys, xs = torch.meshgrid(torch.linspace(-1, 1, s), torch.linspace(-1, 1, s), indexing="ij")
    return (torch.stack([xs, ys], -1) * (s - 1) / s)[None]


@pytest.mark.parametrize("shift_px", [(3.0, 0.0), (-2.5, 4.0), (0.0, -6.0)])
def test_designated_map_moves_with_a_translation_like_the_image(shift_px: tuple[float, float]) -> None:
    """A backward warp that translates the image by t pixels moves the designated pixel's map by t."""
    import torch
    import torch.nn.functional as F

    from embodied_wm.model.world_model import designated_pixel_stats

    s = 64
    t = torch.tensor(shift_px)
    # frame(x) = last(x + flow): content moves by -flow; flow in grid units is 2 * pixels / s.
    grid = _base_grid(s) - t * 2 / s
    designated = torch.tensor([[20.0, 30.0], [40.5, 25.0]])
    goals = torch.tensor([[20.0, 30.0], [10.0, 50.0]])
    pos, dist = designated_pixel_stats(grid, designated, goals, 1.5)
    moved = designated + t
    assert torch.allclose(pos[0], moved, atol=1e-3), (pos, moved)
    want = torch.linalg.norm(moved - goals, dim=-1)
    # The expected distance of a small blob is close to (and, by convexity, not below) the centre's.
    assert (dist[0] >= want - 1e-3).all() and torch.allclose(dist[0], want, atol=0.5)
    # The same warp applied to an image with a bright blob on the designated pixel moves the blob alike.
    vv, uu = torch.meshgrid(torch.arange(s).float(), torch.arange(s).float(), indexing="ij")
    img = torch.exp(-((uu - designated[0, 0]) ** 2 + (vv - designated[0, 1]) ** 2) / (2 * 1.5**2))
    warped = F.grid_sample(img[None, None], grid, mode="bilinear", padding_mode="border", align_corners=False)
    w = warped[0, 0] / warped.sum()
    centroid = torch.stack([(w * uu).sum(), (w * vv).sum()])
    assert torch.allclose(centroid, pos[0, 0], atol=0.05), (centroid, pos[0, 0])


def test_designated_map_warped_out_of_view_stays_finite() -> None:
    import torch

    from embodied_wm.model.world_model import designated_pixel_stats

    grid = _base_grid(32) * 0 + 0.9  # every pixel samples the same far corner region
    pos, dist = designated_pixel_stats(grid, torch.tensor([[3.0, 3.0]]), torch.tensor([[0.0, 0.0]]), 1.0)
    assert torch.isfinite(pos).all() and torch.isfinite(dist).all()
    assert torch.allclose(pos[0, 0], torch.tensor([3.0, 3.0]), atol=1e-2)  # it stays where it was


def test_flow_only_decoder_equals_the_full_decoder(tmp_path_factory: pytest.TempPathFactory) -> None:
    import torch

    from embodied_wm.model.checkpoint import load_checkpoint

    model = load_checkpoint(shared_model(tmp_path_factory).ckpt).model.eval()
    ex = model.example_inputs(n_candidates=3)
    acts = ex["actions"] * 20
    with torch.no_grad():
        state = model.encode(ex)
        _, _, z_ref, flow_ref = model.rollout_net.decode(*state, acts)
        flow, z = model.rollout_net.flows(*state, acts)
    assert flow_ref.abs().max() > 1e-2  # the random head moves pixels: a real comparison
    assert torch.allclose(flow, flow_ref, atol=1e-5) and torch.equal(z, z_ref)


def test_score_onnx_matches_pytorch(tmp_path_factory: pytest.TempPathFactory) -> None:
    import onnxruntime as ort
    import torch

    from embodied_wm.model.checkpoint import load_checkpoint
    from embodied_wm.model.world_model import ENCODER_OUTPUTS, SCORE_OUTPUTS

    shared = shared_model(tmp_path_factory)
    assert shared.manifest["parity"]["ok"] and shared.manifest["parity"]["score"]
    model = load_checkpoint(shared.ckpt).model.eval()
    sess = ort.InferenceSession(str(shared.export / "score.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(7)
    ex = model.example_inputs(n_candidates=5)
    acts = torch.randn(5, model.cfg.horizon, model.cfg.action_dim, generator=g) * 0.3
    d = torch.tensor([[10.0, 12.0], [33.0, 40.0], [60.0, 2.0], [31.5, 31.5]])  # P=4: not the traced 2
    goals = torch.tensor([[50.0, 12.0], [3.0, 4.0], [31.0, 31.0], [0.0, 63.0]])
    with torch.no_grad():
        state = model.encode(ex)
        ref = model.rollout_net.score(*state, acts, d, goals)
    feeds = {k: v.numpy() for k, v in zip(ENCODER_OUTPUTS, state)}
    got = sess.run(
        None, {**feeds, "actions": acts.numpy(), "designated_pixels": d.numpy(), "goal_pixels": goals.numpy()}
    )
    assert got[0].shape == (5, 8, 4, 2) and got[1].shape == (5, 8, 4) and got[2].shape == (5, 8, 256)
    assert np.abs(got[0] - d.numpy()).max() > 1e-2  # the maps moved
    for name, r, o in zip(SCORE_OUTPUTS, ref, got):
        assert np.abs(r.numpy() - o).max() <= FP32_TOLERANCES[name], name


def test_backends_score_pixels_agree_and_reject_bad_pixels(tmp_path_factory: pytest.TempPathFactory) -> None:
    from embodied_wm.runtime.onnxruntime_backend import OnnxRuntimeBackend
    from embodied_wm.runtime.torch_backend import TorchBackend

    shared = shared_model(tmp_path_factory)
    obs = make_observations(3)
    cand = np.random.default_rng(0).uniform(-0.1, 0.1, (4, 8, 6)).astype(np.float32)
    d, g = np.array([[20.0, 30.0]], np.float32), np.array([[40.0, 10.0]], np.float32)
    results = []
    for be in (
        TorchBackend(shared.ckpt, device="cpu"),
        OnnxRuntimeBackend(shared.ckpt, device="cpu", cache_dir=shared.cache),
    ):
        with pytest.raises(BackendError, match="before any predict"):
            be.score_pixels(cand, d, g)
        for o in obs:
            be.predict(o)
        pr = be.score_pixels(cand, d, g)
        assert (
            pr.positions.shape == (4, 8, 1, 2) and pr.latents is not None and pr.latents.shape == (4, 8, 256)
        )
        results.append(pr)
        with pytest.raises(BackendError, match=r"pixel 0 \(u=64, v=3\) is outside the 64x64 image"):
            be.score_pixels(cand, np.array([[64.0, 3.0]]), g)
        with pytest.raises(BackendError, match="one goal per designated pixel"):
            be.score_pixels(cand, np.array([[1.0, 3.0], [2.0, 2.0]]), g)
        z = be.encode_goal(obs[0].image)
        assert z.shape == (256,) and np.isfinite(z).all()
    a, b = results
    assert np.abs(a.positions - b.positions).max() <= FP32_TOLERANCES["pixel_positions"]
    assert np.abs(a.distances - b.distances).max() <= FP32_TOLERANCES["pixel_distances"]


def test_pixel_goal_from_camera_scales_and_rejects() -> None:
    goal = PG.PixelGoal.from_camera(
        np.array([63.5, 47.5]), np.array([0.0, 0.0]), (96, 128), (64, 64), np.array([10, 20])
    )
    assert np.allclose(goal.designated, [[31.5, 31.5]])  # the centre maps to the centre
    assert np.allclose(goal.to_camera(goal.designated, (96, 128)), [[63.5, 47.5]])
    assert goal.effector is not None and len(goal.query()[0]) == 2
    with pytest.raises(PG.PixelGoalError, match=r"goal pixel 0 \(u=200, v=5\) is outside the 128x96 image"):
        PG.PixelGoal.from_camera(np.array([1.0, 1.0]), np.array([200.0, 5.0]), (96, 128), (64, 64))
    with pytest.raises(PG.PixelGoalError, match="pairs"):
        PG.check_pixels("designated pixel", np.array([1.0, 2.0, 3.0]), (64, 64))


def test_pixel_terms_prefer_the_object_at_its_goal_and_the_effector_at_the_object() -> None:
    goal = PG.PixelGoal(
        np.array([[10.0, 10.0]], np.float32),
        np.array([[30.0, 10.0]], np.float32),
        (64, 64),
        np.array([0.0, 10.0], np.float32),
    )
    # Candidate 0 pushes the object to the goal, 1 leaves it; both with the effector beside the object.
    pos = np.zeros((2, 4, 2, 2), np.float32)
    pos[0, :, 0] = np.stack([np.linspace(15, 30, 4), np.full(4, 10)], -1)
    pos[1, :, 0] = [10, 10]
    pos[:, :, 1] = pos[:, :, 0] - [3, 0]
    dist = np.linalg.norm(pos - np.array([[30.0, 10.0], [0.0, 10.0]]), axis=-1)
    pr = PixelRollout(0, 1, pos, dist.astype(np.float32), None)
    terms = PG.pixel_terms(pr, goal)
    assert terms["pixel"][0] > terms["pixel"][1]
    assert np.allclose(terms["approach"], 0.0)  # within the contact radius
    far = pos.copy()
    far[1, :, 1] = [60, 60]
    terms = PG.pixel_terms(PixelRollout(0, 1, far, dist.astype(np.float32), None), goal)
    assert terms["approach"][1] < terms["approach"][0] == 0.0
    scores = PG.combine(terms, {"pixel": 1.0, "approach": 0.5})
    assert int(np.argmax(scores)) == 0
    true = PG.true_pixel_terms(pos[:, :, :1].astype(np.float64), goal, pos[:, :, 1].astype(np.float64))
    assert np.allclose(true["pixel"], terms["pixel"], atol=1e-6)


def test_gap_closed_pooled() -> None:
    from embodied_wm.eval.ranking import gap_closed_pooled

    # Per-state ratios would be (1, -9): their mean -4 is swung by the near-tie state.
    assert gap_closed_pooled([1.0, 0.5], [0.0, 0.59], [0.0, 0.49]) == pytest.approx(
        (0.75 - 0.295) / (0.75 - 0.245)
    )
    assert gap_closed_pooled([0.5, 0.5], [0.5, 0.5], [0.5, 0.5]) is None


def test_encode_goal_needs_an_image(tmp_path: Path) -> None:
    from embodied_wm.runtime.baselines import CopyLastBackend

    be = CopyLastBackend()
    with pytest.raises(BackendError, match="learned model"):
        be.encode_goal(np.zeros((8, 8, 3), np.uint8))
