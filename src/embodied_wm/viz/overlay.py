"""Colour maps, probability overlays, ground-truth contours, error maps and colour bars.

One renderer for every place a person looks at the model's output: make demo's report, the eval report,
the eval MCAP and perception_node's ``~/preview/affordance``. It depends on numpy, OpenCV and
sensing.resize only, so every layer above sensing can use it.

Readability rules (why the code is as it is):
- perceptually ordered colour maps (turbo for probabilities, inferno for errors: different on purpose),
  so equal steps in value look like equal steps in colour;
- over a camera frame the blend weight is proportional to the probability: p = 0 leaves the frame as it
  is, p = 1 paints the map's top colour at ``max_alpha``;
- small maps are upscaled by an integer factor with nearest neighbour, so each model pixel stays a crisp
  square instead of a blur;
- ground truth is drawn as contours on top of the prediction (a dark line under a light one, visible on
  any background), not as a second faint image.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import cv2
import numpy as np

from embodied_wm.errors import ConfigError, InvalidDataError
from embodied_wm.sensing.resize import resize_nearest

#: Colour map of probabilities (affordances). Turbo rather than viridis: viridis ends in yellow, which
#: vanishes on light (e.g. wooden or beige) tables; turbo's top is a saturated red.
PROBABILITY_CMAP = "turbo"
#: Colour map of absolute frame errors (distinct from the probability map on purpose).
ERROR_CMAP = "inferno"
#: Blend weight at probability 1 over a camera frame.
MAX_ALPHA = 0.85
#: Ground-truth contour: white line over a black outline (neither is a colour of either map).
CONTOUR_COLOUR = (255, 255, 255)
CONTOUR_OUTLINE = (0, 0, 0)
#: Absolute error (mean over RGB, 0..255) shown at the top of the error colour map; larger is clipped.
ERROR_VMAX = 96.0

_CV_MAPS = {
    "viridis": cv2.COLORMAP_VIRIDIS,
    "inferno": cv2.COLORMAP_INFERNO,
    "magma": cv2.COLORMAP_MAGMA,
    "plasma": cv2.COLORMAP_PLASMA,
    "cividis": cv2.COLORMAP_CIVIDIS,
    "turbo": cv2.COLORMAP_TURBO,
}
COLORMAPS: tuple[str, ...] = tuple(_CV_MAPS)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@functools.cache
def lut(name: str = PROBABILITY_CMAP) -> np.ndarray:
    """The 256 x 3 uint8 RGB table of colour map ``name`` (OpenCV's tables of the matplotlib maps)."""
    if name not in _CV_MAPS:
        raise ConfigError(f"unknown colour map {name!r}; choose from {', '.join(COLORMAPS)}")
    ramp = np.arange(256, dtype=np.uint8).reshape(256, 1)
    bgr = cv2.applyColorMap(ramp, _CV_MAPS[name]).reshape(256, 3)
    table = np.ascontiguousarray(bgr[:, ::-1])
    table.flags.writeable = False
    return table


def _index(values: np.ndarray) -> np.ndarray:
    v = np.clip(np.nan_to_num(np.asarray(values, np.float32), nan=0.0), 0.0, 1.0)
    return np.asarray(np.rint(v * 255.0), dtype=np.intp)


def colorize(values: np.ndarray, cmap: str = PROBABILITY_CMAP) -> np.ndarray:
    """[0, 1] values (NaN as 0, clipped) -> RGB uint8 through colour map ``cmap``."""
    return np.asarray(lut(cmap)[_index(values)])


def upscale(img: np.ndarray, factor: int) -> np.ndarray:
    """Integer nearest-neighbour upscaling: each pixel becomes a ``factor`` x ``factor`` block."""
    if factor < 1:
        raise InvalidDataError(f"upscale factor must be >= 1, got {factor}")
    if factor == 1:
        return np.ascontiguousarray(img)
    return np.ascontiguousarray(np.repeat(np.repeat(img, factor, axis=0), factor, axis=1))


def display_scale(height: int, target: int = 128) -> int:
    """The integer factor that brings a ``height`` px frame to at least ``target`` px (1 if it already is)."""
    return max(1, -(-int(target) // max(1, int(height))))


def draw_contours(img: np.ndarray, mask: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Outline the regions of boolean ``mask`` (any resolution; nearest-resized to ``img``) on a copy of
    ``img``: a light line over a dark outline so it reads on bright and dark pixels."""
    h, w = img.shape[:2]
    m = resize_nearest(np.asarray(mask, bool).astype(np.uint8), h, w)
    out = np.ascontiguousarray(img.copy())
    if not m.any():
        return out
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, CONTOUR_OUTLINE, thickness + 2, cv2.LINE_8)
    cv2.drawContours(out, contours, -1, CONTOUR_COLOUR, thickness, cv2.LINE_8)
    return out


def _contour_thickness(scale: int) -> int:
    return 1 if scale < 3 else 2


def probability_overlay(
    base: np.ndarray,
    prob: np.ndarray,
    scale: int = 1,
    truth: np.ndarray | None = None,
    cmap: str = PROBABILITY_CMAP,
    max_alpha: float = MAX_ALPHA,
) -> np.ndarray:
    """``prob`` (H' x W' in [0, 1]) over RGB ``base`` (H x W x 3), both upscaled ``scale`` times with
    nearest neighbour; blend weight ``max_alpha * p``. ``truth`` (boolean or [0, 1] map, > 0.5 is the
    region) is outlined on top. Returns (H·scale) x (W·scale) x 3 uint8."""
    frame = np.asarray(base, np.uint8)
    p = np.clip(np.nan_to_num(np.asarray(prob, np.float32)), 0.0, 1.0)
    # Blending per pixel commutes with nearest-neighbour upscaling, so blend at the frame's resolution
    # and upscale after (1/scale^2 of the work), unless the map is finer than the frame.
    finer = p.shape[0] > frame.shape[0] or p.shape[1] > frame.shape[1]
    if finer:
        frame = upscale(frame, scale)
    h, w = frame.shape[:2]
    p = resize_nearest(p, h, w)
    colours = lut(cmap)[_index(p)].astype(np.float32)
    a = (float(max_alpha) * p)[..., None]
    blend = np.clip(frame.astype(np.float32) * (1.0 - a) + colours * a + 0.5, 0, 255).astype(np.uint8)
    out = blend if finer else upscale(blend, scale)
    if truth is not None:
        out = draw_contours(out, np.asarray(truth, np.float32) > 0.5, _contour_thickness(scale))
    return out


def probability_map(
    prob: np.ndarray,
    scale: int = 1,
    truth: np.ndarray | None = None,
    cmap: str = PROBABILITY_CMAP,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """The map alone, opaque (low probabilities stay visible), optionally at ``size`` (H, W) before
    upscaling; ``truth`` outlined on top."""
    p = np.asarray(prob, np.float32)
    if size is not None:
        p = resize_nearest(p, size[0], size[1])
    out = upscale(colorize(p, cmap), scale)
    if truth is not None:
        out = draw_contours(out, np.asarray(truth, np.float32) > 0.5, _contour_thickness(scale))
    return out


def abs_error(predicted: np.ndarray, actual: np.ndarray) -> np.ndarray:
    """Per-pixel mean absolute difference over RGB, 0..255 float32 (``actual`` resized to ``predicted``)."""
    pred = np.asarray(predicted, np.float32)
    act = resize_nearest(np.asarray(actual), pred.shape[0], pred.shape[1]).astype(np.float32)
    return np.asarray(np.abs(pred - act).mean(axis=-1), np.float32)


def error_map(
    predicted: np.ndarray, actual: np.ndarray, scale: int = 1, vmax: float = ERROR_VMAX
) -> np.ndarray:
    """|predicted - actual| (mean over RGB) through the error colour map, 0 .. ``vmax`` (clipped)."""
    return upscale(colorize(abs_error(predicted, actual) / float(vmax), ERROR_CMAP), scale)


def text_size(text: str, font_scale: float = 0.45, thickness: int = 1) -> tuple[int, int]:
    (w, h), base = cv2.getTextSize(text, FONT, font_scale, thickness)
    return int(w), int(h + base)


def put_text(
    img: np.ndarray,
    text: str,
    org: tuple[int, int],
    font_scale: float = 0.45,
    colour: tuple[int, int, int] = (0, 0, 0),
    thickness: int = 1,
) -> None:
    """Anti-aliased text with its baseline at ``org`` (in place)."""
    cv2.putText(img, text, org, FONT, font_scale, colour, thickness, cv2.LINE_AA)


@functools.lru_cache(maxsize=64)
def _colour_bar(
    height: int, cmap: str, ticks: tuple[tuple[float, str], ...], title: str, bar_width: int
) -> np.ndarray:
    out = _draw_colour_bar(height, cmap, ticks, title, bar_width)
    out.flags.writeable = False
    return out


def colour_bar(
    height: int,
    cmap: str = PROBABILITY_CMAP,
    ticks: Sequence[tuple[float, str]] = ((0.0, "0"), (0.5, "0.5"), (1.0, "1")),
    title: str = "",
    bar_width: int = 14,
) -> np.ndarray:
    """A vertical colour bar (top = 1) with tick labels, on white, exactly ``height`` px tall; ``ticks``
    are (position in [0, 1], label). ``title`` is written above the bar. Cached (read-only array): the
    same bar is drawn for every frame of a run."""
    return _colour_bar(int(height), cmap, tuple((float(p), str(t)) for p, t in ticks), title, int(bar_width))


def _draw_colour_bar(
    height: int,
    cmap: str = PROBABILITY_CMAP,
    ticks: Sequence[tuple[float, str]] = ((0.0, "0"), (0.5, "0.5"), (1.0, "1")),
    title: str = "",
    bar_width: int = 14,
) -> np.ndarray:
    font = 0.4
    title_h = text_size(title, font)[1] + 4 if title else 0
    label_w = max([text_size(t, font)[0] for _, t in ticks] + [0])
    width = max(6 + bar_width + 4 + label_w + 4, text_size(title, font)[0] + 6 if title else 0)
    out = np.full((max(height, title_h + 24), width, 3), 255, np.uint8)
    top, bottom = title_h + 6, out.shape[0] - 7
    span = max(1, bottom - top)
    ramp = np.linspace(1.0, 0.0, span + 1, dtype=np.float32)
    out[top : bottom + 1, 6 : 6 + bar_width] = colorize(ramp, cmap)[:, None, :]
    cv2.rectangle(out, (5, top - 1), (6 + bar_width, bottom + 1), (0, 0, 0), 1)
    if title:
        put_text(out, title, (3, title_h), font)
    for pos, label in ticks:
        y = round(bottom - float(np.clip(pos, 0.0, 1.0)) * span)
        cv2.line(out, (6 + bar_width, y), (6 + bar_width + 3, y), (0, 0, 0), 1)
        put_text(out, label, (6 + bar_width + 5, min(out.shape[0] - 2, max(title_h + 10, y + 4))), font)
    if out.shape[0] != height:  # too short for its labels: drawn at the smallest legible size, squeezed
        out = resize_nearest(out, height, out.shape[1])
    return out


def probability_bar(height: int, title: str = "p") -> np.ndarray:
    return colour_bar(height, PROBABILITY_CMAP, title=title)


def error_bar(height: int, vmax: float = ERROR_VMAX) -> np.ndarray:
    """The error colour bar, labelled in 8-bit intensity levels (of 255)."""
    ticks = ((0.0, "0"), (0.5, f"{vmax / 2:g}"), (1.0, f"{vmax:g}+"))
    return colour_bar(height, ERROR_CMAP, ticks=ticks, title="|err|")


__all__ = [
    "COLORMAPS",
    "ERROR_CMAP",
    "ERROR_VMAX",
    "MAX_ALPHA",
    "PROBABILITY_CMAP",
    "abs_error",
    "colorize",
    "colour_bar",
    "display_scale",
    "draw_contours",
    "error_bar",
    "error_map",
    "lut",
    "probability_bar",
    "probability_map",
    "probability_overlay",
    "put_text",
    "text_size",
    "upscale",
]
