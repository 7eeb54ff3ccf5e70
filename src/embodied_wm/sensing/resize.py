"""Resizing for display and goal images: nearest-neighbour (previews) and box-filter averaging (goals)."""

from __future__ import annotations

import numpy as np


def resize_nearest(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of H x W (x C); exact and dependency-free, enough for goal images and
    previews (the model has its own resampling)."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    rows = np.minimum((np.arange(height) + 0.5) * h / height, h - 1).astype(np.intp)
    cols = np.minimum((np.arange(width) + 0.5) * w / width, w - 1).astype(np.intp)
    return img[rows][:, cols]


def resize_area(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """Box-filter resize (averaging) for downscaling goal images to the model resolution."""
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    if h % height == 0 and w % width == 0:
        fy, fx = h // height, w // width
        x = img.astype(np.float32).reshape(height, fy, width, fx, *img.shape[2:])
        return np.asarray(x.mean(axis=(1, 3)))
    return resize_nearest(img, height, width).astype(np.float32)
