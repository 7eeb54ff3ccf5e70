"""Training-time input corruption that teaches the model to use every sensor.

Two levers, both applied to a batch of encoder inputs on the training device, targets untouched (the
model must still predict the *real* future, as ``eval --robustness`` scores it):

- modality dropout: each modality (the camera included) is missing with its own probability; a sample
  never loses every modality. Missing = zero input and 0 in ``mask``, exactly the runtime's missing path.
- camera degradations that happen on robots: an occluder over part of the view, dark or over-exposed
  frames with sensor noise, motion blur, and a dropped previous frame (``prev_image`` = the frame itself,
  what the runtime feeds after a gap).

Without them the camera always sees everything in training, and the shipped model learned to ignore
audio and touch (contact AUROC 0.928 with them, 0.930 without).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from embodied_wm.observation import MODALITIES

#: Degradations drawn per sample (one at most); names match ``eval.robustness`` conditions.
DEGRADATIONS: tuple[str, ...] = ("occluded", "dark", "overexposed", "motion_blur", "dropped")


@dataclass(frozen=True)
class AugmentConfig:
    #: Probability that each modality is missing, in MODALITIES order (image, audio, tactile, proprio,
    #: action). The camera drops least often: frames are the main target.
    drop: tuple[float, ...] = (0.1, 0.2, 0.2, 0.1, 0.05)
    #: Probability that a sample's camera is degraded (one of DEGRADATIONS, uniformly).
    degrade: float = 0.35
    #: Occluder side as a fraction of the image side (uniform in this range).
    occluder: tuple[float, float] = (0.3, 0.55)

    @property
    def enabled(self) -> bool:
        return self.degrade > 0 or any(p > 0 for p in self.drop)


def modality_dropout(mask: Tensor, probs: tuple[float, ...], gen: torch.Generator) -> Tensor:
    """New mask [B,M]: each present modality dropped with its probability; a sample that would lose all
    of its present modalities keeps the one with the highest random draw."""
    b, m = mask.shape
    if len(probs) != m:
        raise ValueError(f"dropout needs {m} probabilities (one per modality {MODALITIES}), got {len(probs)}")
    u = torch.rand(b, m, generator=gen).to(mask.device)
    keep = (u >= torch.tensor(probs, device=mask.device)[None]).float() * mask
    dead = (keep.sum(1) == 0) & (mask.sum(1) > 0)
    if bool(dead.any()):
        best = torch.argmax(u * mask + (mask - 1.0), 1)  # only present modalities can win
        rescue = F.one_hot(best, m).float()
        keep = torch.where(dead[:, None], rescue * mask, keep)
    return keep


def _occlude(img: Tensor, side: float, gen: torch.Generator) -> Tensor:
    _, h, w = img.shape
    sh, sw = max(1, round(side * h)), max(1, round(side * w))
    y = int(torch.randint(0, h - sh + 1, (1,), generator=gen))
    x = int(torch.randint(0, w - sw + 1, (1,), generator=gen))
    grey = float(torch.rand(1, generator=gen)) * 0.6 + 0.2
    out = img.clone()
    out[:, y : y + sh, x : x + sw] = grey
    return out


def _exposure(img: Tensor, dark: bool, gen: torch.Generator) -> Tensor:
    r = float(torch.rand(1, generator=gen))
    if dark:
        x = img * (0.15 + 0.3 * r)
        sigma = 0.03 + 0.04 * r  # dark frames are noisy: gain amplifies sensor noise
    else:
        x = img * 1.3 + 0.25 + 0.2 * r
        sigma = 0.02
    noise = torch.randn(img.shape, generator=gen).to(img.device) * sigma
    return (x + noise).clamp(0.0, 1.0)


def _motion_blur(img: Tensor, gen: torch.Generator) -> Tensor:
    length = int(torch.randint(3, 8, (1,), generator=gen))
    horizontal = bool(torch.rand(1, generator=gen) < 0.5)
    kh, kw = (1, length) if horizontal else (length, 1)
    kernel = torch.full((3, 1, kh, kw), 1.0 / length, device=img.device, dtype=img.dtype)
    x = F.pad(img[None], (kw // 2, (kw - 1) // 2, kh // 2, (kh - 1) // 2), mode="replicate")
    return F.conv2d(x, kernel, groups=3)[0]


def degrade_camera(
    image: Tensor, prev: Tensor, cfg: AugmentConfig, gen: torch.Generator
) -> tuple[Tensor, Tensor, list[str]]:
    """Degrade some samples of [B,3,H,W] image/prev (the same corruption on both frames, as a real
    occluder or exposure would persist); returns the new tensors and each sample's degradation name
    ('' = clean)."""
    image, prev = image.clone(), prev.clone()
    names: list[str] = []
    for i in range(image.shape[0]):
        if float(torch.rand(1, generator=gen)) >= cfg.degrade:
            names.append("")
            continue
        name = DEGRADATIONS[int(torch.randint(0, len(DEGRADATIONS), (1,), generator=gen))]
        names.append(name)
        if name == "occluded":
            lo, hi = cfg.occluder
            side = lo + (hi - lo) * float(torch.rand(1, generator=gen))
            state = gen.get_state()  # same occluder place on both frames
            image[i] = _occlude(image[i], side, gen)
            gen.set_state(state)
            prev[i] = _occlude(prev[i], side, gen)
        elif name in ("dark", "overexposed"):
            state = gen.get_state()
            image[i] = _exposure(image[i], name == "dark", gen)
            gen.set_state(state)
            prev[i] = _exposure(prev[i], name == "dark", gen)
        elif name == "motion_blur":
            state = gen.get_state()
            image[i] = _motion_blur(image[i], gen)
            gen.set_state(state)
            prev[i] = _motion_blur(prev[i], gen)
        else:  # dropped: the previous frame never arrived, the runtime repeats the current one
            prev[i] = image[i]
    return image, prev, names


def augment_batch(batch: dict[str, Tensor], cfg: AugmentConfig, gen: torch.Generator) -> dict[str, Tensor]:
    """Encoder inputs of ``batch`` corrupted in place of the originals (a new dict; targets shared).
    ``camera_kept`` [B] says which samples still have a camera (frame losses only make sense there)."""
    out = dict(batch)
    img, prev, _ = degrade_camera(batch["image"], batch["prev_image"], cfg, gen)
    mask = modality_dropout(batch["mask"], cfg.drop, gen)
    m_img = mask[:, 0:1, None, None]
    out["image"], out["prev_image"] = img * m_img, prev * m_img
    out["mask"] = mask
    for j, name in enumerate(("audio_mel", "tactile", "proprio", "action"), start=1):
        shape = (-1,) + (1,) * (batch[name].dim() - 1)
        out[name] = batch[name] * mask[:, j].reshape(shape)
    out["camera_kept"] = mask[:, 0]
    return out
