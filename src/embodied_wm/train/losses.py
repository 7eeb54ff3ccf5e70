"""Training losses. All take torch tensors in the model's layout ([B,K,3,H,W] frames in [0,1])."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

#: Same threshold as eval.metrics.MOVING_THRESHOLD (10 grey levels), on the [0, 1] scale.
MOVING_THRESHOLD = 10.0 / 255.0


@dataclass(frozen=True)
class LossWeights:
    frame: float = 1.0
    #: Mix of the per-pixel frame terms: PSNR is an MSE measure, and under uncertainty (where exactly will
    #: the finger be in 0.8 s?) the MSE-optimal prediction is the conditional mean, while L1 pulls to the
    #: median, which for a thin moving part is "not there". L1 keeps gradients alive for small errors.
    l1: float = 0.25
    l2: float = 2.0
    #: Extra weight of moving pixels (|frame_t+k - frame_t| > threshold, dilated by one pixel):
    #: they are a few percent of the image but all of what copy-last-frame gets wrong.
    moving: float = 20.0
    gradient: float = 0.1
    affordance: float = 0.5
    latent: float = 0.1
    #: Further weight of moving pixels on an object (segmentation ground truth, where the bags have it):
    #: the finger is most of what moves, the objects are what a planner cares about.
    object_moving: float = 0.0
    #: Teacher-flow supervision of the warp (L1 in pixels, moving-weighted like the frame loss).
    flow: float = 0.0
    #: Upper bound of the per-channel positive weight of the affordance BCE.
    max_pos_weight: float = 50.0


def moving_weights(
    target: Tensor,
    last: Tensor,
    extra: float,
    obj: Tensor | None = None,
    obj_extra: float = 0.0,
    sample: Tensor | None = None,
) -> Tensor:
    """[B,K,1,H,W] per-pixel weights 1 + extra * moving (+ obj_extra * moving * obj, with ``obj``
    [B,K,1,H,W] the object mask), times the per-sample weight ``sample`` [B] if given (0 = skip the
    sample: e.g. its camera was dropped, so there is no frame to warp)."""
    b, k, _, h, w = target.shape
    moving = ((target - last[:, None]).abs().amax(2, keepdim=True) > MOVING_THRESHOLD).float()
    # Dilate so both the leading and trailing edge of a moving object count, even when they fall short
    # of the threshold because of anti-aliasing.
    moving = F.max_pool2d(moving.reshape(b * k, 1, h, w), 3, 1, 1).reshape(b, k, 1, h, w)
    wt = 1.0 + extra * moving
    if obj is not None and obj_extra > 0:
        wt = wt + obj_extra * moving * obj
    if sample is not None:
        wt = wt * sample.reshape(b, 1, 1, 1, 1)
    return wt


def frame_loss(
    pred: Tensor,
    target: Tensor,
    last: Tensor,
    w: LossWeights,
    obj: Tensor | None = None,
    sample: Tensor | None = None,
) -> Tensor:
    """Moving-weighted L1 + squared error on pixels plus L1 on image gradients (edge sharpness)."""
    wt = moving_weights(target, last, w.moving, obj, w.object_moving, sample)
    norm = wt.mean().clamp_min(1e-6) * 3.0
    err = pred - target
    l1 = (wt * (w.l1 * err.abs() + w.l2 * err.square())).mean() * 3.0 / norm

    def grads(x: Tensor) -> tuple[Tensor, Tensor]:
        return x[..., :, 1:] - x[..., :, :-1], x[..., 1:, :] - x[..., :-1, :]

    (px, py), (tx, ty) = grads(pred), grads(target)
    g = (wt[..., :, 1:] * (px - tx).abs()).mean() + (wt[..., 1:, :] * (py - ty).abs()).mean()
    return l1 + w.gradient * g * 3.0 / norm


def affordance_loss(logits: Tensor, target: Tensor, valid: Tensor, w: LossWeights) -> Tensor:
    """BCE with a per-channel positive weight (neg/pos ratio of the batch, bounded): contact pixels are
    rare and an unweighted BCE would learn "never"."""
    v = valid.reshape(-1, 1, 1, 1)
    if float(v.sum()) == 0.0:
        return logits.sum() * 0.0
    pos = (target * v).sum((0, 2, 3))
    tot = v.sum() * target.shape[2] * target.shape[3]
    pw = ((tot - pos) / pos.clamp_min(1.0)).clamp(1.0, w.max_pos_weight)
    bce = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=pw[None, :, None, None], reduction="none"
    )
    return (bce * v).sum() / (v.sum() * bce[0].numel())


def latent_loss(rolled: Tensor, target: Tensor) -> Tensor:
    """Rolled latent at step k vs the encoder's latent of frame t+k (stop-gradient target)."""
    return F.mse_loss(rolled, target.detach())


def flow_loss(
    pred: Tensor,
    teacher: Tensor,
    target: Tensor,
    last: Tensor,
    w: LossWeights,
    obj: Tensor | None = None,
    sample: Tensor | None = None,
) -> Tensor:
    """Moving-weighted L1 between predicted and teacher backward flow, in pixels. The teacher (dense
    optical flow between frame t and t+k) is smooth and imperfect at occlusions, so it is a guide for
    where things move; the photometric frame loss has the last word on the pixels."""
    wt = moving_weights(target, last, w.moving, obj, w.object_moving, sample)
    px = (pred - teacher).abs() * (target.shape[-1] / 2.0)
    return (wt * px).mean() / wt.mean().clamp_min(1e-6)
