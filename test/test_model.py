"""World model API: shapes, presence masks, batched rollouts, configs, param budget, ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from embodied_wm.model.config import ModelConfig, available_configs, load_config
from embodied_wm.model.preprocess import ENCODER_INPUTS, batch_encoder_inputs, encoder_inputs, log_mel
from embodied_wm.model.world_model import (
    ENCODER_OUTPUTS,
    ROLLOUT_INPUTS,
    ROLLOUT_OUTPUTS,
    WorldModel,
)
from embodied_wm.observation import MODALITIES, Observation


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: the CI machine is shared, and oversubscribed OpenMP threads are 10-50x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def tiny() -> WorldModel:
    torch.manual_seed(0)
    model = WorldModel(load_config("tiny")).eval()
    # Randomise the (zero-initialised) output head so the tests see a non-trivial function.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _obs(cfg: ModelConfig, rng: np.random.Generator, stamp: int = 0, **drop: bool) -> Observation:
    o = Observation(
        stamp_ns=stamp,
        image=rng.integers(0, 255, (48, 80, 3), dtype=np.uint8),
        audio=rng.standard_normal(cfg.audio_window_samples).astype(np.float32) * 0.1,
        tactile=rng.random(cfg.tactile_shape).astype(np.float32),
        proprio=rng.standard_normal(cfg.proprio_dim).astype(np.float32),
        action=rng.standard_normal(cfg.action_dim).astype(np.float32) * 0.1,
    )
    for m, d in drop.items():
        if d:
            setattr(o, m, None)
    return o


def _run(model: WorldModel, inputs: dict[str, np.ndarray], actions: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        state = model.encoder(*(torch.from_numpy(inputs[k]) for k in ENCODER_INPUTS))
        frames, aff = model.rollout_net(*state, actions)
    return (*state, frames, aff)


def test_configs_and_param_budget() -> None:
    assert {"tiny", "base"} <= set(available_configs())
    tiny = load_config("tiny")
    assert tiny.image_size == 64 and tiny.horizon == 8 and tiny.affordance_channels == ("contact", "movable")
    assert ModelConfig.from_dict(tiny.to_dict()) == tiny
    n_tiny = WorldModel(tiny).num_params()
    assert n_tiny <= 5_000_000, n_tiny
    assert WorldModel(load_config("base")).num_params() > n_tiny
    with pytest.raises(ValueError, match="unknown model config keys"):
        ModelConfig.from_dict({"bogus": 1})
    with pytest.raises(FileNotFoundError, match="available"):
        load_config("nonexistent")


def test_preprocess_shapes_and_mask() -> None:
    cfg = load_config("tiny")
    rng = np.random.default_rng(0)
    d = encoder_inputs(_obs(cfg, rng, tactile=True, proprio=True), None, cfg)
    assert tuple(d) == ENCODER_INPUTS
    s = cfg.image_size
    assert d["image"].shape == (1, 3, s, s) and d["prev_image"].shape == (1, 3, s, s)
    assert d["audio_mel"].shape == (1, 1, cfg.n_mels, cfg.mel_frames)
    assert d["tactile"].shape == (1, 1, 5, 5) and d["proprio"].shape == (1, 6) and d["action"].shape == (1, 6)
    assert d["mask"].tolist() == [[1.0, 1.0, 0.0, 0.0, 1.0]]
    assert all(v.dtype == np.float32 for v in d.values())
    np.testing.assert_array_equal(d["image"], d["prev_image"])  # no prev: current image
    assert not d["tactile"].any() and not d["proprio"].any()
    b = batch_encoder_inputs([d, d])
    assert b["image"].shape[0] == 2
    # Log-mel: louder audio -> larger values; a short buffer is padded, not an error.
    quiet, loud = log_mel(np.full(1600, 1e-3, np.float32), cfg), log_mel(np.full(1600, 1.0, np.float32), cfg)
    assert loud.mean() > quiet.mean()
    assert log_mel(np.ones(100, np.float32), cfg).shape == (cfg.n_mels, cfg.mel_frames)


def test_shapes_and_names(tiny: WorldModel) -> None:
    cfg = tiny.cfg
    ex = tiny.example_inputs(n_candidates=3)
    assert set(ex) == {*ENCODER_INPUTS, "actions"}
    assert ROLLOUT_INPUTS == (*ENCODER_OUTPUTS, "actions") and ROLLOUT_OUTPUTS == ("frames", "affordance")
    assert ENCODER_OUTPUTS[0] == "latent"
    with torch.no_grad():
        state = tiny.encoder(*(ex[k] for k in ENCODER_INPUTS))
        frames, aff = tiny.rollout_net(*state, ex["actions"])
    assert len(state) == len(ENCODER_OUTPUTS) and state[0].shape == (1, cfg.latent_dim)
    s = cfg.image_size
    assert frames.shape == (3, cfg.horizon, 3, s, s) and aff.shape == (3, 2, s, s)
    assert 0.0 <= float(frames.min()) and float(frames.max()) <= 1.0
    assert 0.0 <= float(aff.min()) and float(aff.max()) <= 1.0


@pytest.mark.parametrize("modality", ["audio", "tactile", "proprio", "action", "image"])
def test_missing_modality_only_through_mask(tiny: WorldModel, modality: str) -> None:
    cfg = tiny.cfg
    rng = np.random.default_rng(1)
    acts = torch.randn(2, cfg.horizon, cfg.action_dim) * 0.05
    base = encoder_inputs(_obs(cfg, rng), None, cfg)
    key = {"audio": "audio_mel"}.get(modality, modality)
    idx = MODALITIES.index(modality)
    masked = {k: v.copy() for k, v in base.items()}
    masked["mask"][0, idx] = 0.0
    # With the mask at 0 the modality's values must not matter at all...
    garbage = {k: v.copy() for k, v in masked.items()}
    garbage[key] = rng.standard_normal(garbage[key].shape).astype(np.float32) * 5
    if modality == "image":
        garbage["prev_image"] = rng.random(garbage["prev_image"].shape).astype(np.float32)
    for a, b in zip(_run(tiny, masked, acts), _run(tiny, garbage, acts)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # ...while a zero-filled *present* reading is a different input than a missing one.
    zero_real = {k: v.copy() for k, v in base.items()}
    zero_real[key] = np.zeros_like(zero_real[key])
    if modality == "image":
        zero_real["prev_image"] = np.zeros_like(zero_real["prev_image"])
    lat_zero, lat_missing = _run(tiny, zero_real, acts)[0], _run(tiny, masked, acts)[0]
    assert not torch.allclose(lat_zero, lat_missing, atol=1e-4)
    # And preprocess produces the masked form for a missing sensor.
    pre = encoder_inputs(_obs(cfg, np.random.default_rng(1), **{modality: True}), None, cfg)
    assert pre["mask"][0, idx] == 0.0


def test_batched_rollout_equals_loop(tiny: WorldModel) -> None:
    ex = tiny.example_inputs(n_candidates=5)
    with torch.no_grad():
        state = tiny.encoder(*(ex[k] for k in ENCODER_INPUTS))
        frames, aff = tiny.rollout_net(*state, ex["actions"])
        for i in range(5):
            f1, a1 = tiny.rollout_net(*state, ex["actions"][i : i + 1])
            torch.testing.assert_close(f1[0], frames[i], rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(a1[0], aff[i], rtol=1e-4, atol=1e-4)
        # Different actions give different futures (the dynamics are action-conditioned).
        assert not torch.allclose(frames[0], frames[1])
        # A batch of states with one action sequence each equals per-state calls.
        ex2 = tiny.example_inputs(n_candidates=2, batch=2)
        st2 = tiny.encoder(*(ex2[k] for k in ENCODER_INPUTS))
        f2, _ = tiny.rollout_net(*st2, ex2["actions"])
        st_b = [t[1:2] for t in st2]
        f_b, _ = tiny.rollout_net(*st_b, ex2["actions"][1:2])
        torch.testing.assert_close(f2[1], f_b[0], rtol=1e-4, atol=1e-4)


def test_onnx_export_matches_torch(tiny: WorldModel, tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    ex = tiny.example_inputs(n_candidates=1)
    enc_args = tuple(ex[k] for k in ENCODER_INPUTS)
    with torch.no_grad():
        state = tiny.encoder(*enc_args)
    torch.onnx.export(tiny.encoder, enc_args, str(tmp_path / "enc.onnx"), input_names=list(ENCODER_INPUTS),
                      output_names=list(ENCODER_OUTPUTS), opset_version=17, dynamo=False)
    torch.onnx.export(tiny.rollout_net, (*state, ex["actions"]), str(tmp_path / "roll.onnx"),
                      input_names=list(ROLLOUT_INPUTS), output_names=list(ROLLOUT_OUTPUTS), opset_version=17,
                      dynamic_axes={"actions": {0: "N"}, "frames": {0: "N"}, "affordance": {0: "N"}},
                      dynamo=False)
    enc = ort.InferenceSession(str(tmp_path / "enc.onnx"), providers=["CPUExecutionProvider"])
    roll = ort.InferenceSession(str(tmp_path / "roll.onnx"), providers=["CPUExecutionProvider"])
    st = enc.run(None, {k: ex[k].numpy() for k in ENCODER_INPUTS})
    acts = np.random.default_rng(0).standard_normal((4, tiny.cfg.horizon, 6)).astype(np.float32) * 0.05
    frames, aff = roll.run(None, {**dict(zip(ENCODER_OUTPUTS, st)), "actions": acts})
    with torch.no_grad():
        ft, at = tiny.rollout_net(*state, torch.from_numpy(acts))
    np.testing.assert_allclose(frames, ft.numpy(), atol=1e-4)
    np.testing.assert_allclose(aff, at.numpy(), atol=1e-4)
