"""Sanity limits applied to every input before and after decoding."""
from __future__ import annotations

import numpy as np

from radsight.core import InputError, affine_float32

MAX_FILE_BYTES = 1 << 30  # 1 GiB
MAX_PIXELS = 50_000_000  # larger than any chest detector (43 cm at 0.1 mm is ~18.5 MP)
MIN_SIDE = 64
MAX_ASPECT = 2.5


def check_geometry(source: str, rows: int, cols: int) -> None:
    """Refuse sizes no chest radiograph has, before any pixel is decoded."""
    if rows < MIN_SIDE or cols < MIN_SIDE:
        raise InputError(source, f"image too small ({cols}x{rows}); a radiograph needs at least {MIN_SIDE} px a side")
    if rows * cols > MAX_PIXELS:
        raise InputError(source, f"image too large ({cols}x{rows} = {rows * cols:,} pixels; limit {MAX_PIXELS:,})")
    if max(rows, cols) / min(rows, cols) > MAX_ASPECT:
        raise InputError(source, f"aspect ratio {cols}x{rows} is not that of a chest radiograph")


def check_contrast(source: str, pixels: np.ndarray) -> None:
    """A constant image carries nothing to read."""
    if not np.isfinite(pixels).all():
        raise InputError(source, "pixel values are not finite")
    if float(pixels.max() - pixels.min()) < 1e-3:
        raise InputError(source, "image has no contrast (all pixels about the same value)")


def normalise_range(values: np.ndarray, low: float, high: float) -> np.ndarray:
    """Linearly map [low, high] to [0, 1] as float32, clipping outside."""
    if high <= low:
        return np.zeros(values.shape, np.float32)
    return affine_clip(values, 1.0 / (high - low), -low / (high - low))


def affine_clip(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """``clip(values * scale + offset, 0, 1)`` as float32."""
    out = affine_float32(values, scale, offset)
    return np.clip(out, 0.0, 1.0, out=out)
