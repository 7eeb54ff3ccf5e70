"""Sensor perturbations for the robustness evaluation (``embodied-wm eval --robustness``).

Each perturbation is applied to a decoded Observation (after the Pipeline built it, before the backend
predicts), so every method sees exactly the same corrupted input and the targets stay the clean camera
frames: the question is how much worse predictions of the *real* future get when the sensors degrade.

Everything is deterministic: the random draws of a perturbation depend only on (seed, perturbation,
observation stamp), never on the order of processing, worker count or which method asks.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from embodied_wm.observation import Observation

#: Additive Gaussian sensor noise, standard deviation in grey levels (0..255).
NOISE_SIGMA = 12.0
#: Gaussian blur sigma in pixels per 64 px of image width (so it is resolution independent).
BLUR_SIGMA_PER_64PX = 1.5
#: Brightness shift in grey levels (over-exposure), clipped to 0..255.
BRIGHTNESS_SHIFT = 40.0
#: Occluder: a grey square of this fraction of the shorter image side, at a random place per frame.
OCCLUSION_SIDE = 0.3
OCCLUSION_GREY = 128
#: Fraction of camera frames dropped (no observation, no prediction; histories see the gap).
DROP_FRAME_RATE = 0.3


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    #: Returns the perturbed observation, or None when the observation is dropped altogether.
    apply: Callable[[Observation, np.random.Generator], Observation | None]


def _image_op(
    fn: Callable[[np.ndarray, np.random.Generator], np.ndarray],
) -> Callable[[Observation, np.random.Generator], Observation | None]:
    def _apply(obs: Observation, rng: np.random.Generator) -> Observation | None:
        if obs.image is None:
            return obs
        return replace(obs, image=np.ascontiguousarray(fn(np.asarray(obs.image), rng)))

    return _apply


def _noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    noisy = img.astype(np.float32) + rng.normal(0.0, NOISE_SIGMA, img.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    sigma = BLUR_SIGMA_PER_64PX * img.shape[1] / 64.0
    return np.asarray(cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma))


def _brightness(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img.astype(np.int16) + int(BRIGHTNESS_SHIFT), 0, 255).astype(np.uint8)


def _occlude(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = img.shape[:2]
    side = max(1, round(OCCLUSION_SIDE * min(h, w)))
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    out = img.copy()
    out[y : y + side, x : x + side] = OCCLUSION_GREY
    return out


def _drop_audio(obs: Observation, rng: np.random.Generator) -> Observation | None:
    return replace(obs, audio=None)


def _drop_touch(obs: Observation, rng: np.random.Generator) -> Observation | None:
    return replace(obs, tactile=None)


def _drop_frames(obs: Observation, rng: np.random.Generator) -> Observation | None:
    return None if rng.random() < DROP_FRAME_RATE else obs


PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation(
            "noise", f"additive Gaussian noise, sigma {NOISE_SIGMA:g} grey levels", _image_op(_noise)
        ),
        Perturbation(
            "blur", f"Gaussian blur, sigma {BLUR_SIGMA_PER_64PX:g} px per 64 px width", _image_op(_blur)
        ),
        Perturbation(
            "brightness", f"brightness +{BRIGHTNESS_SHIFT:g} grey levels (clipped)", _image_op(_brightness)
        ),
        Perturbation(
            "occlusion",
            f"grey square of {OCCLUSION_SIDE:g} x the shorter side at a random place per frame",
            _image_op(_occlude),
        ),
        Perturbation("drop_audio", "audio missing in every observation", _drop_audio),
        Perturbation("drop_touch", "tactile missing in every observation", _drop_touch),
        Perturbation(
            "drop_frames", f"{DROP_FRAME_RATE:.0%} of camera frames dropped at random", _drop_frames
        ),
    )
}


def rng_for(seed: int, name: str, stamp_ns: int) -> np.random.Generator:
    """Generator seeded by (seed, perturbation, stamp) only; crc32 rather than hash(), which Python
    randomises per process."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(name.encode()), stamp_ns & 0xFFFFFFFFFFFF])


def perturb(obs: Observation, name: str, seed: int) -> Observation | None:
    """``obs`` under perturbation ``name`` ("clean" returns it unchanged); None if it is dropped."""
    if name == "clean":
        return obs
    p = PERTURBATIONS[name]
    return p.apply(obs, rng_for(seed, name, obs.stamp_ns))


def deltas(clean: dict, perturbed: dict, metrics: tuple[str, ...] = ("psnr", "psnr_moving", "ssim")) -> dict:
    """Per-metric, per-horizon perturbed - clean (None where either is missing), and affordance deltas."""
    out: dict = {}
    for m in metrics:
        a, b = clean.get(m) or [], perturbed.get(m) or []
        out[m] = [None if (x is None or y is None) else round(float(y) - float(x), 6) for x, y in zip(a, b)]
    ca, pa = clean.get("affordance") or {}, perturbed.get("affordance") or {}
    if ca and pa:
        out["affordance"] = {
            ch: {
                k: None if ca[ch].get(k) is None or pa[ch].get(k) is None else round(pa[ch][k] - ca[ch][k], 6)
                for k in ("auroc", "ap")
            }
            for ch in ca
            if ch in pa
        }
    return out
