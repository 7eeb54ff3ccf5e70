"""Multimodal training and evaluation: modality dropout, camera degradations, contact features,
hidden-physics scenes, weighted window sampling, the ablation conditions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from embodied_wm.eval.robustness import (
    ABLATION_CONDITIONS,
    ABLATION_MASKS,
    ablation_condition,
    perturb,
)
from embodied_wm.model.config import load_config
from embodied_wm.model.world_model import (
    WorldModel,
    audio_contact_features,
    feature_positions,
    tactile_contact_features,
)
from embodied_wm.observation import MODALITIES, Observation
from embodied_wm.sim.scene import MATERIALS, OBJECT_MATERIALS, sample_scene
from embodied_wm.train.augment import AugmentConfig, augment_batch, degrade_camera, modality_dropout
from embodied_wm.train.trainer import WeightedWindowSampler


def _batch(b: int = 16, s: int = 16) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    return {
        "image": torch.rand(b, 3, s, s, generator=g),
        "prev_image": torch.rand(b, 3, s, s, generator=g),
        "audio_mel": torch.randn(b, 1, 8, 5, generator=g),
        "tactile": torch.rand(b, 1, 5, 5, generator=g),
        "proprio": torch.randn(b, 4, generator=g),
        "action": torch.randn(b, 6, generator=g),
        "mask": torch.ones(b, len(MODALITIES)),
    }


def test_modality_dropout_never_drops_every_modality() -> None:
    mask = torch.ones(4000, len(MODALITIES))
    mask[::3, 1] = 0  # some samples arrive without audio
    out = modality_dropout(mask, (0.9,) * len(MODALITIES), torch.Generator().manual_seed(0))
    assert (out.sum(1) >= 1).all()
    assert (out <= mask).all(), "dropout must never invent a modality that was missing"
    # With p = 0.9 most modalities go; the rescue keeps exactly one where all would have gone.
    assert 0.05 < float(out.mean()) < 0.3
    # Each modality's drop rate follows its probability (where nothing needed rescuing).
    rates = 1 - modality_dropout(
        torch.ones(20000, 5), (0.1, 0.2, 0.3, 0.0, 0.5), torch.Generator().manual_seed(1)
    ).mean(0)
    assert np.allclose(rates.numpy(), [0.1, 0.2, 0.3, 0.0, 0.5], atol=0.02)


def test_degradations_deterministic_and_camera_only() -> None:
    batch = _batch()
    cfg = AugmentConfig(drop=(0.0,) * 5, degrade=1.0)
    a = augment_batch(batch, cfg, torch.Generator().manual_seed(5))
    b = augment_batch(batch, cfg, torch.Generator().manual_seed(5))
    c = augment_batch(batch, cfg, torch.Generator().manual_seed(6))
    for k in ("image", "prev_image"):
        assert torch.equal(a[k], b[k]), "same seed, same corruption"
        assert not torch.equal(a[k], c[k])
        assert not torch.equal(a[k], batch[k]), "degrade=1 changes every camera input"
        assert float(a[k].min()) >= 0.0 and float(a[k].max()) <= 1.0
    for k in ("audio_mel", "tactile", "proprio", "action", "mask"):
        assert torch.equal(a[k], batch[k]), f"{k} must be untouched by camera degradations"
    assert "future" not in a or torch.equal(a["future"], batch["future"])


@pytest.mark.parametrize("name", ["occluded", "dark", "overexposed", "motion_blur", "dropped"])
def test_each_degradation_does_what_it_says(name: str) -> None:
    from embodied_wm.train import augment

    batch = _batch(b=64)
    g = torch.Generator().manual_seed(11)
    cfg = AugmentConfig(degrade=1.0)
    img, prev, names = degrade_camera(batch["image"], batch["prev_image"], cfg, g)
    idx = [i for i, n in enumerate(names) if n == name]
    assert idx, f"{name} never drawn in 64 samples"
    assert set(names) <= set(augment.DEGRADATIONS)
    i = idx[0]
    x, x0 = img[i], batch["image"][i]
    if name == "occluded":
        changed = (x != x0).any(0)
        assert 0.05 < float(changed.float().mean()) < 0.4  # a block, not the whole frame
        assert torch.equal((prev[i] != batch["prev_image"][i]).any(0), changed), "same place on both"
    elif name == "dark":
        assert float(x.mean()) < 0.6 * float(x0.mean())
    elif name == "overexposed":
        assert float(x.mean()) > float(x0.mean()) + 0.1
    elif name == "motion_blur":
        assert float((x[:, 1:, 1:] - x[:, :-1, :-1]).abs().mean()) < float(
            (x0[:, 1:, 1:] - x0[:, :-1, :-1]).abs().mean()
        )
    else:
        assert torch.equal(prev[i], x) and torch.equal(x, x0), "dropped: prev repeats the current frame"


def test_camera_drop_zeroes_the_image_and_is_reported() -> None:
    batch = _batch(b=200)
    cfg = AugmentConfig(drop=(0.5, 0, 0, 0, 0), degrade=0)
    out = augment_batch(batch, cfg, torch.Generator().manual_seed(2))
    gone = out["mask"][:, 0] == 0
    assert 50 < int(gone.sum()) < 150
    assert torch.equal(out["camera_kept"], out["mask"][:, 0])
    assert float(out["image"][gone].abs().max()) == 0.0 and float(out["prev_image"][gone].abs().max()) == 0.0


def test_contact_features_see_onsets_and_taxel_centroid() -> None:
    mel = torch.full((2, 1, 8, 10), -5.0)
    mel[0, :, :, 7:] = 3.0  # a broadband onset at frame 7 in sample 0, silence in sample 1
    f = audio_contact_features(mel, feature_positions(9, 0.0, 1.0), groups=4)
    assert f.shape == (2, 12)
    assert (f[0, 4:8] > 7.0).all() and (f[1, 4:8] == 0).all()  # onset peak per band group
    assert (f[0, 8:] > 0.6).all()  # the onset is late in the window
    tac = torch.zeros(1, 1, 5, 5)
    tac[0, 0, 4, 0] = 5.0  # bottom-left taxel pressed
    t = tactile_contact_features(tac, feature_positions(5, -1, 1), feature_positions(5, -1, 1))
    assert t[0, 2] > 0.5 and t[0, 3] < -0.5 and t[0, 1] == 5.0


def test_feature_branches_start_as_no_ops() -> None:
    model = WorldModel(load_config("tiny")).eval()
    torch.set_grad_enabled(False)
    ex = model.example_inputs()
    assert float(model.encoder.audio_feat(torch.randn(3, 12)).abs().max()) == 0.0
    assert float(model.encoder.tactile_feat(torch.randn(3, 4)).abs().max()) == 0.0
    latent = model.encoder(*(ex[n] for n in model.ENCODER_INPUTS))[0]
    torch.set_grad_enabled(True)
    assert torch.isfinite(latent).all()


def _nearest_material(rgb: np.ndarray) -> str:
    return min(OBJECT_MATERIALS, key=lambda m: float(np.sum((np.asarray(MATERIALS[m].rgba[:3]) - rgb) ** 2)))


def test_hidden_physics_colour_does_not_reveal_material() -> None:
    """Over many scenes: the material can be read off the colour in normal scenes, not in hidden-physics
    scenes (colour classifier at chance), and hidden masses span a much wider range."""
    hits = {False: [], True: []}
    mass_ratio: dict[bool, list[float]] = {False: [], True: []}
    by_material: dict[str, list[np.ndarray]] = {m: [] for m in OBJECT_MATERIALS}
    for seed in range(150):
        for hidden in (False, True):
            spec = sample_scene(np.random.default_rng(seed), hidden_physics=hidden)
            for o in spec.objects:
                rgb = np.asarray(o.rgba[:3])
                hits[hidden].append(_nearest_material(rgb) == o.material)
                from embodied_wm.sim.scene import _volume

                mass_ratio[hidden].append(o.mass / (MATERIALS[o.material].density * _volume(o.shape, o.size)))
                if hidden:
                    by_material[o.material].append(rgb)
    assert np.mean(hits[False]) > 0.95
    assert np.mean(hits[True]) < 0.4  # four materials: chance is 0.25
    # The colour distribution is the same for every material (means within noise of each other).
    means = np.stack([np.mean(v, 0) for v in by_material.values()])
    assert float(np.abs(means - means.mean(0)).max()) < 0.06
    assert max(mass_ratio[True]) / min(mass_ratio[True]) > 8 > max(mass_ratio[False]) / min(mass_ratio[False])


def test_normal_scenes_unchanged_by_the_option() -> None:
    a = sample_scene(np.random.default_rng(42))
    b = sample_scene(np.random.default_rng(42), hidden_physics=False)
    assert a == b
    with pytest.raises(ValueError, match="randomized"):
        sample_scene(np.random.default_rng(0), randomize=False, hidden_physics=True)


def test_weighted_sampler_is_seeded_and_weighted() -> None:
    w = np.ones(1000)
    w[:100] = 10.0
    s = WeightedWindowSampler(w, 1, 0, seed=4)
    s.set_epoch(3)
    a = list(s)
    s2 = WeightedWindowSampler(w, 1, 0, seed=4)
    s2.set_epoch(3)
    assert a == list(s2) and len(a) == 1000
    assert 0.45 < np.mean(np.asarray(a) < 100) < 0.6  # 1000 / 1900 of the mass
    r0, r1 = WeightedWindowSampler(w, 2, 0, 4), WeightedWindowSampler(w, 2, 1, 4)
    assert len(list(r0)) == len(list(r1)) == 500
    with pytest.raises(ValueError):
        WeightedWindowSampler(np.array([1.0, np.nan]), 1, 0, 0)


def _obs(stamp_ns: int) -> Observation:
    rng = np.random.default_rng(0)
    return Observation(
        stamp_ns=stamp_ns,
        image=rng.integers(0, 255, (64, 64, 3), dtype=np.uint8),
        audio=rng.standard_normal(1600).astype(np.float32),
        tactile=rng.random((5, 5)).astype(np.float32),
        proprio=np.zeros(4, np.float32),
        action=np.zeros(6, np.float32),
    )


def test_ablation_conditions_compose_and_hold_the_occluder() -> None:
    obs = _obs(10**9)
    for cond in ABLATION_CONDITIONS:
        for mask, drops in ABLATION_MASKS.items():
            name = ablation_condition(cond, mask)
            out = perturb(obs, name, seed=1)
            if out is None:
                assert cond == "dropped"
                continue
            assert (out.audio is None) == ("drop_audio" in drops)
            assert (out.tactile is None) == ("drop_touch" in drops)
            if cond == "clean":
                assert out.image is obs.image
    # The occluder stays put within its hold time and moves after it; deterministic per seed.
    a = perturb(_obs(10**9), "occluded", 1)
    b = perturb(replace(_obs(10**9 + 10**8), image=_obs(0).image), "occluded", 1)
    c = perturb(_obs(10**9), "occluded", 1)
    assert a is not None and b is not None and c is not None
    assert np.array_equal(a.image, c.image)
    grey = np.all(a.image == (90, 90, 96), -1)
    assert np.array_equal(grey, np.all(b.image == (90, 90, 96), -1))
    assert 0.2 < grey.mean() < 0.3
    moved = [perturb(_obs(10**9 + k * 2 * 10**9), "occluded", 1) for k in range(1, 6)]
    assert any(not np.array_equal(np.all(m.image == (90, 90, 96), -1), grey) for m in moved if m is not None)


def test_eval_ablate_writes_every_condition_and_mask(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    from embodied_wm.eval.cli import main
    from embodied_wm.eval.synthetic import SceneConfig, write_bag
    from embodied_wm.resources import SOURCE_ROOT

    bag = write_bag(tmp_path / "bag", SceneConfig(frames=14, res=48))
    out = tmp_path / "out"
    model = str(SOURCE_ROOT / "models" / "tiny")
    args = [str(bag), "--model", model, "--backend", "pytorch", "--out", str(out), "--robustness",
            "--perturbations", "noise", "--ablate", "--max-frames", "10", "--no-report"]
    assert main(args) == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "modality ablation" in printed and "ablation.json" in printed
    ab = json.loads((out / "ablation.json").read_text())
    assert set(ab["conditions"]) == set(ABLATION_CONDITIONS)
    for row in ab["conditions"].values():
        assert set(row) == set(ABLATION_MASKS)
        for cell in row.values():
            assert {"contact_auroc", "psnr_moving_mean", "psnr_moving_after_contact"} <= set(cell)
            assert cell["predictions"] and cell["psnr_moving_mean"] is not None
    summary = json.loads((out / "summary.json").read_text())
    clean = summary["methods"]["model"]["psnr_moving"]
    good = [v for v in clean if v is not None]
    cells = ab["conditions"]
    assert cells["clean"]["none"]["psnr_moving_mean"] == pytest.approx(sum(good) / len(good), abs=1e-3)
    # The masked conditions run the model only; dropped frames make fewer predictions.
    rob = summary["robustness"]["conditions"]
    assert set(rob["dark+drop_audio+drop_touch"]["predictions"]) == {"model"}
    assert cells["dropped"]["none"]["predictions"] < cells["clean"]["none"]["predictions"]
    # --ablate without --robustness is a one-line error.
    assert main([str(bag), "--model", model, "--out", str(tmp_path / "o2"), "--ablate"]) != 0
