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
#: "occluded": something between camera and table (a passing arm, a cable, a person's hand) hides a
#: large part of the view; it stays put for OCCLUDER_HOLD_S, then moves elsewhere.
OCCLUDER_SIDE = 0.5
OCCLUDER_HOLD_S = 2.0
#: "dark": a badly lit scene (gain GAIN_DARK) with the sensor noise that amplifies (sigma in grey levels).
GAIN_DARK = 0.25
DARK_NOISE_SIGMA = 6.0
#: "motion_blur": a camera shaking along one axis during the exposure, kernel length in px per 64 px.
MOTION_BLUR_PX_PER_64 = 5

#: Conditions of the modality ablation (``eval --robustness --ablate``) and the masks run under each.
ABLATION_CONDITIONS: tuple[str, ...] = ("clean", "occluded", "dark", "dropped", "motion_blur")
ABLATION_MASKS: dict[str, tuple[str, ...]] = {
    "none": (),
    "audio": ("drop_audio",),
    "touch": ("drop_touch",),
    "audio_touch": ("drop_audio", "drop_touch"),
}
#: Separator of a composite condition ("occluded+drop_audio"): perturbations applied left to right.
COMPOSITE_SEP = "+"


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    #: Returns the perturbed observation, or None when the observation is dropped altogether.
    apply: Callable[[Observation, np.random.Generator], Observation | None]
    #: Draws are shared by all frames in one block of this many seconds (None: drawn per frame).
    hold_s: float | None = None


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


def _dark(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32) * GAIN_DARK + rng.normal(0.0, DARK_NOISE_SIGMA, img.shape).astype(np.float32)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def _motion_blur(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    length = max(2, round(MOTION_BLUR_PX_PER_64 * img.shape[1] / 64.0))
    horizontal = bool(rng.random() < 0.5)
    kernel = np.full((1, length) if horizontal else (length, 1), 1.0 / length, np.float32)
    return np.asarray(cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REPLICATE))


def _occluded(obs: Observation, rng: np.random.Generator) -> Observation | None:
    """A grey block over OCCLUDER_SIDE of each side; its place is drawn per OCCLUDER_HOLD_S block of
    time (``Perturbation.hold_s``), not per frame, as a real occluder lingers."""
    if obs.image is None:
        return obs
    img = np.asarray(obs.image)
    h, w = img.shape[:2]
    place = rng
    sh, sw = max(1, round(OCCLUDER_SIDE * h)), max(1, round(OCCLUDER_SIDE * w))
    # Biased to the image centre, where the finger works: the block centre is within the middle half.
    cy = int(place.integers(h // 4, h - h // 4 + 1))
    cx = int(place.integers(w // 4, w - w // 4 + 1))
    y0, x0 = int(np.clip(cy - sh // 2, 0, h - sh)), int(np.clip(cx - sw // 2, 0, w - sw))
    out = img.copy()
    out[y0 : y0 + sh, x0 : x0 + sw] = (90, 90, 96)
    return replace(obs, image=out)


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
        Perturbation(
            "occluded",
            f"grey block of {OCCLUDER_SIDE:g} x each side near the centre, moved every {OCCLUDER_HOLD_S:g} s",
            _occluded,
            hold_s=OCCLUDER_HOLD_S,
        ),
        Perturbation(
            "dark", f"gain {GAIN_DARK:g} plus sensor noise sigma {DARK_NOISE_SIGMA:g} grey levels",
            _image_op(_dark),
        ),
        Perturbation(
            "motion_blur", f"camera shake: {MOTION_BLUR_PX_PER_64} px per 64 px line blur, random axis",
            _image_op(_motion_blur),
        ),
        Perturbation(
            "dropped", f"{DROP_FRAME_RATE:.0%} of camera frames dropped at random", _drop_frames
        ),
    )
}


def rng_for(seed: int, name: str, stamp_ns: int) -> np.random.Generator:
    """Generator seeded by (seed, perturbation, stamp) only; crc32 rather than hash(), which Python
    randomises per process."""
    return np.random.default_rng([seed & 0xFFFFFFFF, zlib.crc32(name.encode()), stamp_ns & 0xFFFFFFFFFFFF])


def ablation_condition(condition: str, mask: str) -> str:
    """Composite condition name of ``condition`` with the modalities of ``mask`` removed."""
    parts = [] if condition == "clean" else [condition]
    parts += list(ABLATION_MASKS[mask])
    return COMPOSITE_SEP.join(parts) if parts else "clean"


def describe(name: str) -> str:
    return "; ".join(PERTURBATIONS[p].description for p in name.split(COMPOSITE_SEP) if p != "clean")


def perturb(obs: Observation, name: str, seed: int) -> Observation | None:
    """``obs`` under perturbation ``name`` ("clean" returns it unchanged; "a+b" applies a then b, each
    with its own draws); None if it is dropped."""
    if name == "clean":
        return obs
    out: Observation | None = obs
    for part in name.split(COMPOSITE_SEP):
        if out is None:
            return None
        p = PERTURBATIONS[part]
        stamp = obs.stamp_ns if p.hold_s is None else obs.stamp_ns // round(p.hold_s * 1e9)
        out = p.apply(out, rng_for(seed, part, stamp))
    return out


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
