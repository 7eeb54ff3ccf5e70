"""Why a sensor message was rejected.

Every decoder raises a SensingError subclass with a short machine-readable ``reason`` so the pipeline
can count rejects per kind and reason ("image:data_length") without parsing messages. SensingError is a
ValueError so callers that only know the stdlib still catch it.
"""

from __future__ import annotations

from embodied_wm.errors import EmbodiedWMError


class SensingError(EmbodiedWMError, ValueError):
    """A message could not be decoded or failed validation."""

    #: Default reason for the class; instances may override it.
    default_reason = "invalid"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason: str = reason or self.default_reason


class DataLengthError(SensingError):
    default_reason = "data_length"


class UnknownEncodingError(SensingError):
    default_reason = "unknown_encoding"


class NonFiniteError(SensingError):
    default_reason = "non_finite"


class EmptyImageError(SensingError):
    default_reason = "empty_image"


class AudioFormatError(SensingError):
    default_reason = "bad_audio"


class ShapeError(SensingError):
    default_reason = "bad_shape"


class CompressedImageError(SensingError):
    default_reason = "bad_compressed"


class TooLargeError(SensingError):
    """A message declares more data (pixels, samples) than the configured limit: rejected before any
    allocation of that size, so a decompression bomb costs nothing."""

    default_reason = "too_large"


__all__ = [
    "AudioFormatError",
    "CompressedImageError",
    "DataLengthError",
    "EmptyImageError",
    "NonFiniteError",
    "SensingError",
    "ShapeError",
    "TooLargeError",
    "UnknownEncodingError",
]
