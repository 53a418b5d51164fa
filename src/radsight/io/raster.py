"""PNG and JPEG radiographs, 8- or 16-bit grayscale (or gray stored as RGB).

One grey-level rule for every file, so the same picture gives the same pixels whatever its bit depth: stored
values over their full scale, ``2**bits - 1``. ``bits`` is 8 for 8-bit files; for 16-bit files it is the fewest
of 10, 12, 14 or 16 bits that hold the largest value (16-bit containers often hold 10-14-bit detector data).
An 8-bit film saved at 16 bits (values x 257) reads the same as the 8-bit one. Floating-point images, which
have no full scale, are mapped from their minimum to their maximum.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from radsight.core import ImageMeta, InputError, Radiograph
from radsight.io.limits import check_contrast, check_geometry, normalise_range

# Colour images whose channels differ by more than this (on a 0-255 scale) are not radiographs.
MAX_CHROMA = 12.0


def read_raster(path: Path) -> Radiograph:
    source = str(path)
    try:
        with Image.open(path) as im:
            check_geometry(source, im.height, im.width)
            im.load()
            pixels, bits, windowing = _to_gray(source, im)
    except InputError:
        raise  # already says what is wrong (size, aspect, colour)
    except (UnidentifiedImageError, Image.DecompressionBombError) as exc:
        raise InputError(source, f"image cannot be read ({exc})") from exc
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt stream
        raise InputError(source, f"image data is corrupt or truncated ({exc})") from exc
    check_contrast(source, pixels)
    meta = ImageMeta(bits_stored=bits, photometric="MONOCHROME2", windowing=windowing)
    return Radiograph(pixels=pixels, source=source, meta=meta)


def _to_gray(source: str, im: Image.Image) -> tuple[np.ndarray, int, str]:
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(im, dtype=np.int64)
        bits = significant_bits(int(values.max()))
        return normalise_range(values, 0.0, float(2 ** bits - 1)), bits, f"full scale of {bits} bits"
    if im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        return normalise_range(values, float(values.min()), float(values.max())), 32, "min-max"
    if im.mode in ("L", "LA", "1"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0, 8, "full scale of 8 bits"
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    chroma = float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean(axis=(0, 1)).max())
    if chroma > MAX_CHROMA:
        raise InputError(source, f"colour image (mean channel difference {chroma:.0f}/255), not a radiograph")
    return rgb.mean(axis=2) / 255.0, 8, "full scale of 8 bits (gray from RGB)"


def significant_bits(largest: int) -> int:
    """The fewest of 10, 12, 14 or 16 bits that hold ``largest`` (a 16-bit file's greatest value)."""
    return next(bits for bits in (10, 12, 14, 16) if largest < 2 ** bits or bits == 16)
