"""PNG encoding for radsight's result images: 8-bit greyscale, RGB or RGBA, each row "Up"-filtered (its difference
from the row above, in numpy) and deflated at a fast zlib level.

Pillow tries every PNG filter on every row before choosing one; on an overlay (a noisy radiograph in colour) that
search costs more than the compression itself. One fixed filter, chosen for radiographs' smooth columns, writes
files of the same size about twice as fast (``benchmarks/profile_service.py``). Any PNG reader reads them.
"""
from __future__ import annotations

import struct
import zlib

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOUR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type: greyscale, truecolour, truecolour with alpha
UP = 2  # PNG filter type "Up"
LEVEL = 1  # zlib level: higher levels cost time, not bytes, on noisy radiographs


def encode_png(pixels: np.ndarray, level: int = LEVEL) -> bytes:
    """``pixels``: uint8 (H, W) or (H, W, 1|3|4) -> the bytes of a PNG file."""
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3) or 0 in pixels.shape[:2]:
        raise ValueError(f"a PNG is made of uint8 (H, W) or (H, W, C) pixels, not {pixels.dtype} {pixels.shape}")
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    if channels not in COLOUR_TYPES:
        raise ValueError(f"a PNG has 1, 3 or 4 channels, not {channels}")
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), np.uint8)
    filtered[:, 0] = UP
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as the filter is defined
    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join([SIGNATURE, _chunk(b"IHDR", header), _chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)),
                     _chunk(b"IEND", b"")])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
