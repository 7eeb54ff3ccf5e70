"""Declared size of a compressed image, read from its header before anything is decoded.

A few hundred bytes of JPEG or PNG can declare 32760 x 32760 pixels (a decompression bomb: OpenCV would
allocate gigabytes for it), so the decoder asks this module first and refuses anything over its pixel
limit. Only formats whose header states the size are accepted: JPEG (first SOFn segment), PNG (IHDR),
BMP (BITMAPINFOHEADER and later) and WebP (VP8, VP8L, VP8X). Everything else that OpenCV could also decode
(TIFF, PNM, EXR, JPEG 2000, ...) is rejected: its size cannot be checked cheaply. The scan is O(header)
and never reads past the buffer.
"""

from __future__ import annotations

from dataclasses import dataclass

from embodied_wm.sensing.errors import CompressedImageError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# SOFn markers carry the frame size; C4 (DHT), C8 (JPG extension) and CC (DAC) share the range but do not.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM, RST0-7, SOI.
_JPEG_STANDALONE = frozenset([0x01, *range(0xD0, 0xD8), 0xD8])


@dataclass(frozen=True)
class DeclaredSize:
    format: str
    width: int
    height: int

    @property
    def pixels(self) -> int:
        return self.width * self.height


def _u16be(buf: bytes, pos: int) -> int:
    return (buf[pos] << 8) | buf[pos + 1]


def _jpeg_size(buf: bytes) -> DeclaredSize:
    pos, n = 2, len(buf)
    while pos < n:
        if buf[pos] != 0xFF:
            raise CompressedImageError(f"JPEG: expected a marker at byte {pos}, got 0x{buf[pos]:02x}")
        while pos < n and buf[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            break
        marker = buf[pos]
        pos += 1
        if marker in _JPEG_STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # EOI or start of scan before any frame header
            break
        if pos + 2 > n:
            break
        length = _u16be(buf, pos)
        if length < 2:
            raise CompressedImageError(f"JPEG: segment 0x{marker:02x} has length {length}")
        if marker in _JPEG_SOF:
            if length < 8 or pos + 7 > n:
                break
            height, width = _u16be(buf, pos + 3), _u16be(buf, pos + 5)
            if height == 0 or width == 0:
                # Height 0 defers the size to a DNL marker after the first scan: not checkable up front.
                raise CompressedImageError(f"JPEG: frame header declares {width}x{height}")
            return DeclaredSize("jpeg", width, height)
        pos += length
    raise CompressedImageError("JPEG: no frame header (SOFn) before the image data")


def _png_size(buf: bytes) -> DeclaredSize:
    if len(buf) < 24 or buf[12:16] != b"IHDR":
        raise CompressedImageError("PNG: missing IHDR chunk")
    width = int.from_bytes(buf[16:20], "big")
    height = int.from_bytes(buf[20:24], "big")
    return DeclaredSize("png", width, height)


def _bmp_size(buf: bytes) -> DeclaredSize:
    if len(buf) < 26:
        raise CompressedImageError("BMP: truncated header")
    header_size = int.from_bytes(buf[14:18], "little")
    if header_size < 40:  # the old 12-byte OS/2 header is not worth a second parser
        raise CompressedImageError(f"BMP: unsupported info header of {header_size} bytes")
    width = int.from_bytes(buf[18:22], "little", signed=True)
    height = int.from_bytes(buf[22:26], "little", signed=True)  # negative: rows stored top-down
    return DeclaredSize("bmp", abs(width), abs(height))


def _webp_size(buf: bytes) -> DeclaredSize:
    if len(buf) < 30:
        raise CompressedImageError("WebP: truncated header")
    chunk = buf[12:16]
    if chunk == b"VP8X":
        width = 1 + int.from_bytes(buf[24:27], "little")
        height = 1 + int.from_bytes(buf[27:30], "little")
    elif chunk == b"VP8 ":
        if buf[23:26] != b"\x9d\x01\x2a":
            raise CompressedImageError("WebP: bad VP8 start code")
        width = int.from_bytes(buf[26:28], "little") & 0x3FFF
        height = int.from_bytes(buf[28:30], "little") & 0x3FFF
    elif chunk == b"VP8L":
        if buf[20] != 0x2F:
            raise CompressedImageError("WebP: bad VP8L signature")
        bits = int.from_bytes(buf[21:25], "little")
        width, height = 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    else:
        raise CompressedImageError(f"WebP: unknown chunk {chunk!r}")
    return DeclaredSize("webp", width, height)


def declared_size(data: bytes | bytearray | memoryview) -> DeclaredSize:
    """The format and pixel size a compressed image declares; CompressedImageError if it is not a
    JPEG, PNG, BMP or WebP whose header states its size."""
    buf = bytes(data[:64]) if len(data) > 64 else bytes(data)
    if buf[:2] == b"\xff\xd8":
        # JPEG segments before SOF (EXIF, ICC profiles) can be long: scan the whole buffer, O(n).
        return _jpeg_size(bytes(data))
    if buf[:8] == _PNG_SIGNATURE:
        return _png_size(buf)
    if buf[:2] == b"BM":
        return _bmp_size(buf)
    if buf[:4] == b"RIFF" and buf[8:12] == b"WEBP":
        return _webp_size(buf)
    raise CompressedImageError(
        "compressed image is not JPEG, PNG, BMP or WebP (other formats are refused: their declared "
        "size cannot be checked before decoding)"
    )
