"""Contact sheets: predicted frames beside the actual frames, per-frame error maps, affordance overlays.

The same sheet is written by make demo's report and by the eval report (RGB uint8 arrays; the callers
write PNGs). Layout, top to bottom:

    title                                  t = 2.30 s (from the bag start)
    column titles     now    +0.1 s  +0.2 s ...
    actual            obs    frame   frame  ...      (the frames that came)
    <method> 24.1 dB  .      pred    pred   ...      (one row per method)
    error <method>    .      |err|   |err|  ...  [error colour bar]
    ...
    <channel>         over the frame + truth | map alone + truth  [probability colour bar]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from embodied_wm.errors import InvalidDataError
from embodied_wm.sensing.resize import resize_nearest
from embodied_wm.viz.overlay import (
    display_scale,
    error_bar,
    error_map,
    probability_bar,
    probability_map,
    probability_overlay,
    put_text,
    text_size,
    upscale,
)

GAP = 4
LABEL_W = 118
WHITE = 255


@dataclass
class Row:
    label: str
    cells: list[np.ndarray | None]
    #: Drawn right of the last cell (a colour bar).
    extra: np.ndarray | None = None


@dataclass
class Block:
    column_titles: list[str]
    rows: list[Row] = field(default_factory=list)
    #: (h, w) of this block's cells; None: the sheet's.
    cell: tuple[int, int] | None = None


def _empty(h: int, w: int) -> np.ndarray:
    return np.full((h, w, 3), WHITE, np.uint8)


def _missing(h: int, w: int) -> np.ndarray:
    """A frame that did not exist (no camera frame at that time): grey with a cross."""
    out = np.full((h, w, 3), 200, np.uint8)
    cv2.line(out, (0, 0), (w - 1, h - 1), (150, 150, 150), 1)
    cv2.line(out, (w - 1, 0), (0, h - 1), (150, 150, 150), 1)
    return out


def _label(text: str, h: int) -> np.ndarray:
    out = _empty(h, LABEL_W)
    y = 16
    for line in text.split("\n"):
        put_text(out, line, (4, y), 0.45)
        y += 17
    return out


def _pad_to(img: np.ndarray, h: int, w: int) -> np.ndarray:
    return np.pad(img, ((0, h - img.shape[0]), (0, w - img.shape[1]), (0, 0)), constant_values=WHITE)


def compose(blocks: Sequence[Block], cell: tuple[int, int], title: str = "") -> np.ndarray:
    """Blocks of labelled rows of equally sized cells (``cell`` = (h, w) after upscaling) into one image;
    None cells are left white."""
    lines: list[np.ndarray] = []
    if title:
        t = _empty(22, LABEL_W + text_size(title, 0.5)[0] + 8)
        put_text(t, title, (4, 16), 0.5)
        lines.append(t)
    for block in blocks:
        h, w = block.cell or cell
        head = _empty(18, LABEL_W + len(block.column_titles) * (w + GAP))
        for i, ct in enumerate(block.column_titles):
            tw = text_size(ct, 0.42)[0]
            x = LABEL_W + i * (w + GAP) + GAP + max(0, (w - tw) // 2)
            put_text(head, ct, (x, 13), 0.42)
        lines.append(head)
        for row in block.rows:
            parts = [_label(row.label, h)]
            for c in row.cells:
                parts.append(_empty(h, GAP))
                parts.append(_empty(h, w) if c is None else _pad_to(c[:h, :w], h, w))
            if row.extra is not None:
                parts.append(_empty(h, GAP))
                parts.append(_pad_to(row.extra[:h], h, row.extra.shape[1]))
            lines.append(np.concatenate(parts, axis=1))
            lines.append(_empty(GAP, lines[-1].shape[1]))
        lines.append(_empty(2 * GAP, 1))
    width = max(x.shape[1] for x in lines)
    return np.ascontiguousarray(np.concatenate([_pad_to(x, x.shape[0], width) for x in lines], axis=0))


def _at(img: np.ndarray, h: int, w: int) -> np.ndarray:
    return resize_nearest(np.asarray(img, np.uint8), h, w)


def comparison_sheet(
    observation: np.ndarray | None,
    targets: Sequence[np.ndarray | None],
    predictions: Mapping[str, np.ndarray],
    horizon_s: Sequence[float],
    method_notes: Mapping[str, str] | None = None,
    affordance: tuple[Sequence[str], np.ndarray] | None = None,
    truth: tuple[Sequence[str], np.ndarray] | None = None,
    title: str = "",
    scale: int | None = None,
) -> np.ndarray:
    """The contact sheet of one prediction time.

    ``observation``: the frame predicted from; ``targets``: the frames that actually came at each horizon
    step (None where there was none); ``predictions``: method -> K x H x W x 3 frames; ``method_notes``:
    text under a method's name (e.g. its mean PSNR); ``affordance``: (channels, C x H' x W' predicted
    maps); ``truth``: (channels, C x H'' x W'' ground truth), drawn as contours over the matching channel.
    Frames are shown at the prediction resolution, upscaled ``scale`` times (default: to >= 128 px).
    """
    if not predictions:
        raise InvalidDataError("comparison_sheet needs at least one method's predictions")
    first = next(iter(predictions.values()))
    k, h, w = int(first.shape[0]), int(first.shape[1]), int(first.shape[2])
    s = scale or display_scale(h)
    ch, cw = h * s, w * s
    notes = dict(method_notes or {})
    cols = ["now", *[f"+{t:.2g} s" for t in horizon_s[:k]]]
    frames = Block(cols)
    tg = list(targets)[:k] + [None] * max(0, k - len(targets))
    frames.rows.append(
        Row(
            "actual",
            [
                None if observation is None else upscale(_at(observation, h, w), s),
                *[_missing(ch, cw) if t is None else upscale(_at(t, h, w), s) for t in tg],
            ],
        )
    )
    ebar = error_bar(ch)
    for method, pred in predictions.items():
        label = method + (f"\n{notes[method]}" if notes.get(method) else "")
        frames.rows.append(Row(label, [None, *[upscale(np.asarray(p, np.uint8), s) for p in pred[:k]]]))
        errs: list[np.ndarray | None] = [None]
        for i in range(min(k, len(pred))):
            t = tg[i]
            errs.append(_missing(ch, cw) if t is None else error_map(pred[i], _at(t, h, w), s))
        frames.rows.append(Row(f"error\n{method}", errs, ebar))
    blocks = [frames]
    if affordance is not None and len(affordance[0]) and observation is not None:
        channels, maps = list(affordance[0]), np.asarray(affordance[1], np.float32)
        tch = list(truth[0]) if truth is not None else []
        has_truth = any(c in tch for c in channels)
        # Affordance panels are few: twice the frame size, so a few-pixel contact region is visible.
        sa = 2 * s
        aff = Block(
            ["over the frame", "map alone"] if not has_truth else ["over the frame + truth", "map + truth"],
            cell=(h * sa, w * sa),
        )
        base = _at(observation, h, w)
        for ci, name in enumerate(channels):
            gt = None
            if truth is not None and name in tch:
                gt = np.asarray(truth[1][tch.index(name)], np.float32)
            aff.rows.append(
                Row(
                    f"{name}\np max {float(np.nanmax(maps[ci])):.2f}",
                    [
                        probability_overlay(base, maps[ci], sa, truth=gt),
                        probability_map(maps[ci], sa, truth=gt, size=(h, w)),
                    ],
                    probability_bar(h * sa, f"p({name})"),
                )
            )
        blocks.append(aff)
    return compose(blocks, (ch, cw), title)


__all__ = ["Block", "Row", "comparison_sheet", "compose"]
