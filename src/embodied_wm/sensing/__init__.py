"""embodied_wm.sensing: sensor messages -> validated numpy arrays -> aligned Observations."""

from embodied_wm.sensing.aligner import Aligner, AlignerConfig
from embodied_wm.sensing.audio import AudioChunk, decode_audio, encode_audio_frame_fields
from embodied_wm.sensing.common import stamp_ns
from embodied_wm.sensing.errors import (
    AudioFormatError,
    CompressedImageError,
    DataLengthError,
    EmptyImageError,
    NonFiniteError,
    SensingError,
    ShapeError,
    UnknownEncodingError,
)
from embodied_wm.sensing.image import (
    compressed_to_rgb,
    image_to_array,
    image_to_rgb,
    resize_rgb,
    rgb_to_image_fields,
)
from embodied_wm.sensing.proprio import decode_joint_state, decode_twist
from embodied_wm.sensing.tactile import decode_float32_multiarray, decode_tactile

__all__ = [
    "Aligner",
    "AlignerConfig",
    "AudioChunk",
    "AudioFormatError",
    "CompressedImageError",
    "DataLengthError",
    "EmptyImageError",
    "NonFiniteError",
    "SensingError",
    "ShapeError",
    "UnknownEncodingError",
    "compressed_to_rgb",
    "decode_audio",
    "decode_float32_multiarray",
    "decode_joint_state",
    "decode_tactile",
    "decode_twist",
    "encode_audio_frame_fields",
    "image_to_array",
    "image_to_rgb",
    "resize_rgb",
    "rgb_to_image_fields",
    "stamp_ns",
]
