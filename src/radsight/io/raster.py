"""PNG and JPEG radiographs, 8- or 16-bit grayscale (or gray stored as RGB)."""
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
        # 16-bit containers usually hold 10-14-bit data: window to the values present.
        return normalise_range(values, float(values.min()), float(values.max())), 16, "min-max"
    if im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        return normalise_range(values, float(values.min()), float(values.max())), 32, "min-max"
    if im.mode in ("L", "LA", "1"):
        return np.asarray(im.convert("L"), dtype=np.float32) / 255.0, 8, "8-bit"
    rgb = np.asarray(im.convert("RGB"), dtype=np.float32)
    chroma = float(np.abs(rgb - rgb.mean(axis=2, keepdims=True)).mean(axis=(0, 1)).max())
    if chroma > MAX_CHROMA:
        raise InputError(source, f"colour image (mean channel difference {chroma:.0f}/255), not a radiograph")
    return rgb.mean(axis=2) / 255.0, 8, "8-bit (gray from RGB)"
