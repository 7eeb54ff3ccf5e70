"""sensor_msgs/Image and CompressedImage to numpy, with validation before any allocation.

``image_to_array`` keeps the native dtype and channels (depth, raw YUV); ``image_to_rgb`` gives the
H x W x 3 uint8 RGB every model and baseline consumes. Colour conversions use OpenCV; unpacking,
row padding, byte order and all validation are done here because rosbags-image ignores ``step``
padding and trusts the header.
"""

from __future__ import annotations

import re
from typing import Any

import cv2
import numpy as np

from embodied_wm.sensing.common import as_uint8
from embodied_wm.sensing.errors import (
    CompressedImageError,
    DataLengthError,
    EmptyImageError,
    ShapeError,
    TooLargeError,
    UnknownEncodingError,
)
from embodied_wm.sensing.image_header import declared_size

#: Largest image (width * height) decoded by default: 4x the largest camera robots ship (4096 x 4096).
#: Raw images above it are refused after the header check, compressed ones before decoding.
DEFAULT_MAX_PIXELS = 4096 * 4096

# encoding -> (dtype, channels, layout). layout says how to get RGB out of it.
_ENCODINGS: dict[str, tuple[str, int, str]] = {
    "rgb8": ("u1", 3, "rgb"),
    "bgr8": ("u1", 3, "bgr"),
    "rgba8": ("u1", 4, "rgba"),
    "bgra8": ("u1", 4, "bgra"),
    "rgb16": ("u2", 3, "rgb"),
    "bgr16": ("u2", 3, "bgr"),
    "rgba16": ("u2", 4, "rgba"),
    "bgra16": ("u2", 4, "bgra"),
    "mono8": ("u1", 1, "mono"),
    "mono16": ("u2", 1, "mono"),
    "yuv422": ("u1", 2, "uyvy"),
    "uyvy": ("u1", 2, "uyvy"),
    "yuv422_yuy2": ("u1", 2, "yuyv"),
    "yuyv": ("u1", 2, "yuyv"),
    "bayer_rggb8": ("u1", 1, "bayer_rggb"),
    "bayer_bggr8": ("u1", 1, "bayer_bggr"),
    "bayer_gbrg8": ("u1", 1, "bayer_gbrg"),
    "bayer_grbg8": ("u1", 1, "bayer_grbg"),
    "bayer_rggb16": ("u2", 1, "bayer_rggb"),
    "bayer_bggr16": ("u2", 1, "bayer_bggr"),
    "bayer_gbrg16": ("u2", 1, "bayer_gbrg"),
    "bayer_grbg16": ("u2", 1, "bayer_grbg"),
}

# OpenCV names Bayer patterns after the second row, hence the apparent swap (same as cv_bridge).
_BAYER_CODES = {
    "bayer_rggb": cv2.COLOR_BayerBG2RGB,
    "bayer_bggr": cv2.COLOR_BayerRG2RGB,
    "bayer_gbrg": cv2.COLOR_BayerGR2RGB,
    "bayer_grbg": cv2.COLOR_BayerGB2RGB,
}

_GENERIC_RE = re.compile(r"(8U|8S|16U|16S|32S|32F|64F)(?:C([1-9][0-9]*))?")
_GENERIC_DTYPES = {"8U": "u1", "8S": "i1", "16U": "u2", "16S": "i2", "32S": "i4", "32F": "f4", "64F": "f8"}


def encoding_info(encoding: str) -> tuple[np.dtype, int, str]:
    """(little-endian dtype, channels, layout) for a sensor_msgs/Image encoding string."""
    known = _ENCODINGS.get(encoding)
    if known is None:
        match = _GENERIC_RE.fullmatch(encoding)
        if match is None:
            raise UnknownEncodingError(
                f"Image encoding {encoding!r} is not supported (expected one of "
                f"{', '.join(sorted(_ENCODINGS))} or an OpenCV type like 32FC1)"
            )
        depth, chans = match.groups()
        nchan = int(chans or 1)
        # Generic multi-channel 8/16-bit types follow OpenCV's BGR(A) convention, as cv_bridge does.
        layout = {1: "mono", 3: "bgr", 4: "bgra"}.get(nchan, "generic")
        known = (_GENERIC_DTYPES[depth], nchan, layout)
    dtype, nchan, layout = known
    return np.dtype("<" + dtype), nchan, layout


def _check_pixels(what: str, width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise TooLargeError(
            f"{what} {width}x{height} has {width * height} pixels, more than the limit of {max_pixels}"
        )


def _validated_layout(msg: Any, max_pixels: int) -> tuple[int, int, int, np.dtype, int, str]:
    encoding = str(msg.encoding)
    dtype, nchan, layout = encoding_info(encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise EmptyImageError(f"Image {width}x{height} {encoding}: expected a non-empty image")
    row_bytes = width * nchan * dtype.itemsize
    if step < row_bytes:
        raise DataLengthError(
            f"Image {width}x{height} {encoding} needs step >= {row_bytes} bytes, got step {step}",
            "bad_step",
        )
    # Compare lengths before touching the data: an absurd header with tiny data must not allocate.
    need = step * height
    got = len(msg.data)
    if got != need:
        raise DataLengthError(f"Image {width}x{height} {encoding} step {step} needs {need} bytes, got {got}")
    # After the length check (a consistent header with too little data is the more specific error).
    _check_pixels(f"Image {encoding}", width, height, max_pixels)
    if layout in ("uyvy", "yuyv") and width % 2:
        raise ShapeError(f"Image {width}x{height} {encoding}: YUV 4:2:2 needs an even width, got {width}")
    return height, width, step, dtype, nchan, layout


def image_to_array(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The image in its native dtype: H x W for one channel, else H x W x C (raw YUV 4:2:2 is H x W x 2).

    Handles row padding (step > width * bytes per pixel) and ``is_bigendian``. The result is a native
    byte-order copy that does not alias the message buffer.
    """
    height, width, step, dtype, nchan, _ = _validated_layout(msg, max_pixels)
    row_bytes = width * nchan * dtype.itemsize
    rows = as_uint8(msg.data).reshape(height, step)[:, :row_bytes]
    raw = rows.copy()  # always copy: the message buffer may be reused by the middleware
    if dtype.itemsize > 1 and bool(msg.is_bigendian):
        dtype = dtype.newbyteorder(">")
    arr = raw.view(dtype)
    if not dtype.isnative:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr.reshape((height, width) if nchan == 1 else (height, width, nchan))


def _to_u8(arr: np.ndarray) -> np.ndarray:
    """Colour data to 8 bit: 16-bit keeps the high byte, floats are taken as [0, 1]."""
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return (arr >> 8).astype(np.uint8)
    if arr.dtype.kind == "f":
        scaled = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        return np.clip(scaled * 255.0 + 0.5, 0, 255).astype(np.uint8)
    info = np.iinfo(arr.dtype)
    return ((arr.astype(np.float64) - info.min) * (255.0 / (info.max - info.min)) + 0.5).astype(np.uint8)


def grey_to_rgb(arr: np.ndarray) -> np.ndarray:
    """One-channel data (mono, depth) to grey RGB. 8-bit is used as is; anything wider is stretched
    min..max over its finite values to 0..255, so depth in mm or m and 12-bit mono are all visible.
    NaN/inf (depth no-return) become black."""
    if arr.dtype == np.uint8:
        grey = arr
    else:
        values = arr.astype(np.float64)
        finite = np.isfinite(values)
        grey = np.zeros(arr.shape, np.uint8)
        if finite.any():
            lo = float(values[finite].min())
            hi = float(values[finite].max())
            if hi > lo:
                scaled = (np.where(finite, values, lo) - lo) * (255.0 / (hi - lo))
                grey = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
                grey[~finite] = 0
    return np.repeat(grey[:, :, None], 3, axis=2)


def _array_to_rgb(arr: np.ndarray, layout: str, encoding: str) -> np.ndarray:
    if layout == "mono":
        return grey_to_rgb(arr)
    if layout == "rgb":
        return np.ascontiguousarray(_to_u8(arr))
    if layout == "bgr":
        return np.ascontiguousarray(_to_u8(arr)[:, :, ::-1])
    if layout == "rgba":
        return np.ascontiguousarray(_to_u8(arr)[:, :, :3])
    if layout == "bgra":
        return np.ascontiguousarray(_to_u8(arr)[:, :, 2::-1])
    if layout == "uyvy":
        return cv2.cvtColor(arr, cv2.COLOR_YUV2RGB_UYVY)
    if layout == "yuyv":
        return cv2.cvtColor(arr, cv2.COLOR_YUV2RGB_YUYV)
    if layout in _BAYER_CODES:
        return _to_u8(cv2.cvtColor(arr, _BAYER_CODES[layout]))
    raise UnknownEncodingError(f"Image encoding {encoding!r} has no RGB interpretation")


def image_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """H x W x 3 uint8 RGB at the image's native resolution, whatever the encoding; images of more than
    ``max_pixels`` pixels are refused (TooLargeError)."""
    encoding = str(msg.encoding)
    _, _, layout = encoding_info(encoding)
    if layout == "generic":
        raise UnknownEncodingError(f"Image encoding {encoding!r} has no RGB interpretation")
    arr = image_to_array(msg, max_pixels)
    try:
        return _array_to_rgb(arr, layout, encoding)
    except cv2.error as exc:  # e.g. a 1-pixel Bayer image OpenCV cannot demosaic
        raise ShapeError(f"Image {arr.shape[1]}x{arr.shape[0]} {encoding}: {exc}") from exc


_COMPRESSED_TOKENS = ("jpeg", "jpg", "png", "bmp", "tiff", "webp")


def compressed_to_rgb(msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg/png, incl. image_transport's "rgb8; jpeg compressed bgr8" and
    compressedDepth) to H x W x 3 uint8 RGB. The size the header declares is checked against
    ``max_pixels`` before decoding (TooLargeError), so a decompression bomb allocates nothing."""
    fmt = str(msg.format).lower()
    if fmt and not any(tok in fmt for tok in _COMPRESSED_TOKENS):
        raise UnknownEncodingError(f"CompressedImage format {msg.format!r}: expected jpeg or png")
    buf = as_uint8(msg.data)
    if "compresseddepth" in fmt:
        # compressed_depth_image_transport prepends a 12-byte config header (format + 2 floats).
        buf = buf[12:]
    if buf.size == 0:
        raise EmptyImageError(f"CompressedImage format {msg.format!r}: no data")
    size = declared_size(np.ascontiguousarray(buf).data)
    if size.pixels == 0:
        raise EmptyImageError(f"CompressedImage {size.format} declares {size.width}x{size.height}")
    _check_pixels(f"CompressedImage {size.format}", size.width, size.height, max_pixels)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise CompressedImageError(f"CompressedImage {msg.format!r} ({buf.size} bytes): {exc}") from exc
    if img is None or img.size == 0:
        raise CompressedImageError(
            f"CompressedImage {msg.format!r} ({buf.size} bytes) could not be decoded as jpeg/png"
        )
    if img.ndim == 2:
        return grey_to_rgb(img)
    if img.shape[2] == 1:
        return grey_to_rgb(img[:, :, 0])
    if img.shape[2] == 3:
        return np.ascontiguousarray(_to_u8(img)[:, :, ::-1])
    if img.shape[2] == 4:
        return np.ascontiguousarray(_to_u8(img)[:, :, 2::-1])
    raise CompressedImageError(f"CompressedImage {msg.format!r}: unexpected {img.shape[2]} channels")


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (height, width) with area interpolation. The one resize every model and baseline
    uses, so their inputs agree pixel for pixel."""
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ShapeError(f"resize target must be positive, got {height}x{width}")
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ShapeError(f"resize_rgb expects a non-empty H x W (x C) image, got shape {image.shape}")
    if image.shape[:2] == (height, width):
        return image
    out = cv2.resize(np.ascontiguousarray(image), (width, height), interpolation=cv2.INTER_AREA)
    if image.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing channel axis of size 1
        out = out[:, :, None]
    return out


def rgb_to_image_fields(rgb: np.ndarray) -> dict[str, Any]:
    """Fields of an rgb8 sensor_msgs/Image for an H x W x 3 uint8 array (for publishers and tests)."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ShapeError(f"expected H x W x 3 uint8 RGB, got shape {rgb.shape} dtype {rgb.dtype}")
    height, width = rgb.shape[:2]
    return {
        "height": int(height),
        "width": int(width),
        "encoding": "rgb8",
        "is_bigendian": 0,
        "step": int(width * 3),
        "data": np.ascontiguousarray(rgb).tobytes(),
    }
