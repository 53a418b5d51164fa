"""The one pixel contract shared by training and inference.

A :class:`~radsight.core.Radiograph`'s pixels (float32 in [0, 1], MONOCHROME2) are resized to the
model's square input (squashed, as NIH resized its films to 1024x1024), then normalised with the
model's mean and std and repeated to its number of channels. Preprocessing never happens in a
model's ``forward``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class InputSpec:
    size: int  # square side in pixels
    mean: float = 0.5
    std: float = 0.25
    channels: int = 1
    region: str = "image"  # or "thorax": the lungs' bounding box (found by the lung model) before resizing


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased bilinear resize of a float image (Pillow mode F)."""
    if pixels.shape == (height, width):
        return pixels.astype(np.float32, copy=False)
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32), mode="F")
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def normalise(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(H, W) in [0, 1] -> (channels, H, W) standardised."""
    x = (pixels.astype(np.float32) - spec.mean) / spec.std
    return np.repeat(x[None], spec.channels, axis=0)


def to_model_input(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    return normalise(resize(pixels, spec.size, spec.size), spec)
