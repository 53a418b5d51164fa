"""The one pixel contract shared by training and inference.

A :class:`~radsight.core.Radiograph`'s pixels (float32 in [0, 1], MONOCHROME2) are resized to the
model's square input (squashed, as NIH resized its films to 1024x1024), then normalised with the
model's mean and std and repeated to its number of channels. Preprocessing never happens in a
model's ``forward``.

Imported models keep their publisher's contract, which an :class:`InputSpec` records: which pixels
(``display``: windowed; ``stored``: DICOM stored values over their bit depth, as torchxrayvision reads
them), a centre crop to a square, and the publisher's resampling (``skimage``: Gaussian anti-aliasing
then linear zoom, as ``skimage.transform.resize``; ``pillow-8bit``: Pillow bilinear on 8-bit pixels, as
torchvision's ``Resize`` on a PNG).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import sparse

PIXELS = ("display", "stored")
CROPS = ("none", "center")
RESAMPLERS = ("pillow", "pillow-8bit", "skimage")


@dataclass(frozen=True)
class InputSpec:
    size: int  # square side in pixels
    mean: float | Sequence[float] = 0.5  # one value, or one per channel
    std: float | Sequence[float] = 0.25
    channels: int = 1
    region: str = "image"  # or "thorax": the lungs' bounding box (found by the lung model) before resizing
    pixels: str = "display"  # or "stored"
    crop: str = "none"  # or "center": the largest centred square
    resample: str = "pillow"  # or "pillow-8bit", "skimage"

    def __post_init__(self) -> None:
        for value, allowed in ((self.pixels, PIXELS), (self.crop, CROPS), (self.resample, RESAMPLERS)):
            if value not in allowed:
                raise ValueError(f"input spec: {value!r} is not one of {', '.join(allowed)}")
        for attr in ("mean", "std"):  # JSON lists back to tuples, so specs stay hashable and comparable
            if isinstance(getattr(self, attr), list):
                object.__setattr__(self, attr, tuple(getattr(self, attr)))


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of a float image (Pillow mode F)."""
    if pixels.shape == (height, width):
        return pixels.astype(np.float32, copy=False)
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def resize_8bit(pixels: np.ndarray, size: int) -> np.ndarray:
    """Pillow bilinear on 8-bit pixels, back to [0, 1]: what torchvision's ``Resize`` does to a PNG."""
    image = Image.fromarray(np.rint(np.clip(pixels, 0, 1) * 255).astype(np.uint8), mode="L")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0


def resize_skimage(x: np.ndarray, size: int, pad: float = 0.0) -> np.ndarray:
    """``skimage.transform.resize(x, (size, size), mode="constant", cval=pad, preserve_range=True)``:
    Gaussian anti-aliasing (sigma ``(factor - 1) / 2``), then linear zoom on the pixel grid, ``pad`` outside.

    Both steps are linear and separable, so they are one sparse ``(size, n)`` matrix per axis (a few taps a
    row), applied as two sparse products: the same numbers as SciPy's filter-then-zoom, several times faster.
    The padding adds ``pad`` times the weight each output pixel puts outside the image.
    """
    rows, cols = _resize_matrix(x.shape[0], size), _resize_matrix(x.shape[1], size)
    out = np.asarray((cols @ (rows @ x.astype(np.float32, copy=False)).T).T)
    if pad:
        out += np.float32(pad) * (1.0 - np.outer(rows.sum(axis=1), cols.sum(axis=1))).astype(np.float32)
    return out


@lru_cache(maxsize=16)
def _resize_matrix(n: int, size: int) -> sparse.csr_matrix:
    factor = n / size
    sigma = max(0.0, (factor - 1) / 2)
    radius = int(4.0 * sigma + 0.5)  # scipy.ndimage.gaussian_filter's default truncate=4
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2) if sigma > 0 else np.ones(1)
    kernel /= kernel.sum()
    out = np.zeros((size, n), np.float64)
    for o in range(size):
        pos = (o + 0.5) * factor - 0.5  # grid mode: pixel centres map to pixel centres
        left = int(np.floor(pos))
        for tap, weight in ((left, 1.0 - (pos - left)), (left + 1, pos - left)):
            if 0 <= tap < n and weight > 0:  # outside the image the value is 0
                lo, hi = max(0, tap - radius), min(n, tap + radius + 1)
                out[o, lo:hi] += weight * kernel[lo - tap + radius:hi - tap + radius]
    return sparse.csr_matrix(out.astype(np.float32))


def center_square(height: int, width: int) -> tuple[int, int, int, int]:
    """x, y, width, height of the largest centred square (torchxrayvision's ``XRayCenterCrop``)."""
    side = min(height, width)
    return width // 2 - side // 2, height // 2 - side // 2, side, side


def _per_channel(value: float | Sequence[float], channels: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(value, np.float32), (channels,))


def normalise(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(H, W) in [0, 1] -> (channels, H, W) standardised, per channel where mean/std are per channel."""
    mean = _per_channel(spec.mean, spec.channels)[:, None, None]
    std = _per_channel(spec.std, spec.channels)[:, None, None]
    return (pixels.astype(np.float32)[None] - mean) / std


def to_model_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(H, W) in [0, 1], already cropped -> the model's (channels, S, S) input."""
    if spec.resample == "skimage":  # skimage pads with 0 in the publisher's normalised units: the mean in ours
        means, stds = _per_channel(spec.mean, spec.channels), _per_channel(spec.std, spec.channels)
        return np.stack([(resize_skimage(pixels, spec.size, pad=m) - m) / s for m, s in zip(means, stds)])
    small = resize_8bit(pixels, spec.size) if spec.resample == "pillow-8bit" else resize(pixels, spec.size, spec.size)
    return normalise(small, spec)
