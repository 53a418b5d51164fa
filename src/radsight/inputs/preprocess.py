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

A model may read several **sources**, one a channel: ``original`` (the radiograph), ``lung_masked`` (the
radiograph with everything outside the lung fields set to black) and ``bone_suppressed`` (soft tissue).
:func:`prepare` is the one entry point: the pipeline, the lung and bone models and training all call it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image
from scipy import sparse

from radsight.core import Radiograph

Crop = tuple[int, int, int, int]  # x, y, width, height in original pixels
SOURCES = ("original", "lung_masked", "bone_suppressed")
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
    sources: tuple[str, ...] = ("original",)  # one a channel; a single source is repeated to every channel

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        unknown = [s for s in self.sources if s not in SOURCES]
        if unknown or not self.sources:
            raise ValueError(f"input spec: sources must be some of {', '.join(SOURCES)}; got {list(self.sources)}")
        if len(self.sources) not in (1, self.channels):
            raise ValueError(f"input spec: {len(self.sources)} sources for {self.channels} channels")
        for value, allowed in ((self.pixels, PIXELS), (self.crop, CROPS), (self.resample, RESAMPLERS)):
            if value not in allowed:
                raise ValueError(f"input spec: {value!r} is not one of {', '.join(allowed)}")
        for attr in ("mean", "std"):  # JSON lists back to tuples, so specs stay hashable and comparable
            if isinstance(getattr(self, attr), list):
                object.__setattr__(self, attr, tuple(getattr(self, attr)))


# Heatmaps and boxes live on a grid this long. A CAM is 7x7 or so: 128 cells place a box edge to under 1% of
# the image (8 px of a 1024-px film, about the spread of radiologists' own boxes) at a quarter of 256's cost.
HEATMAP_GRID = 128


def working_size(height: int, width: int, longest: int = HEATMAP_GRID) -> tuple[int, int]:
    """Heatmaps are computed on a grid no longer than ``longest`` px, with the image's aspect."""
    scale = min(1.0, longest / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))


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


def normalise(planes: np.ndarray, spec: InputSpec) -> np.ndarray:
    """(sources, H, W) in [0, 1] -> (channels, H, W) standardised, per channel where mean/std are per channel;
    a single source is repeated to every channel."""
    means, stds = channel_stats(spec)
    return (planes.astype(np.float32) - means[:, None, None]) / stds[:, None, None]


def channel_stats(spec: InputSpec) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std per channel (channels,)."""
    return _per_channel(spec.mean, spec.channels), _per_channel(spec.std, spec.channels)


def to_model_input(planes: Sequence[np.ndarray], spec: InputSpec, normalised: bool = True) -> np.ndarray:
    """Cropped (H, W) planes in [0, 1], one a source -> the model's (channels, S, S) input, or with
    ``normalised=False`` the resized planes in [0, 1] (sources, S, S), for training to augment first."""
    if spec.resample == "skimage":  # skimage pads with 0 in the publisher's normalised units: the mean in ours
        if not normalised:
            raise ValueError("skimage-resampled inputs are only prepared normalised")
        means, stds = channel_stats(spec)
        return np.stack([(resize_skimage(planes[c % len(planes)], spec.size, pad=m) - m) / s
                         for c, (m, s) in enumerate(zip(means, stds))])
    resizer = (lambda p: resize_8bit(p, spec.size)) if spec.resample == "pillow-8bit" else \
        (lambda p: resize(p, spec.size, spec.size))
    small = np.stack([resizer(p) for p in planes])
    return normalise(small, spec) if normalised else small


def region(image: Radiograph, spec: InputSpec, box: Crop | None = None) -> Crop | None:
    """The crop a model reads: ``box`` (the thorax, from the lung model) for thorax models, the centred square
    for centre-cropping ones, else None (the whole image)."""
    if spec.region == "thorax":
        return box
    if spec.crop == "center":
        return center_square(image.height, image.width)
    return None


def cut(pixels: np.ndarray, crop: Crop | None) -> np.ndarray:
    """The pixels inside ``crop`` (all of them when it is None)."""
    if crop is None:
        return pixels
    x, y, w, h = crop
    return pixels[y:y + h, x:x + w]


def prepare(image: Radiograph, spec: InputSpec, box: Crop | None = None,
            views: Mapping[str, np.ndarray] | None = None, normalised: bool = True) -> tuple[np.ndarray, Crop | None]:
    """The model input for ``image`` under ``spec``'s pixel contract, and the crop it was read from.

    ``box``: the thorax for models whose region is "thorax" (None: the lungs were not found, whole image).
    ``views``: derived views at the image's size, by source name, for models that read them.
    """
    crop = region(image, spec, box)
    planes = []
    for source in spec.sources:
        if source == "original":
            pixels = image.model_pixels(spec.pixels)
        elif views is not None and source in views:
            pixels = views[source]
        else:
            raise ValueError(f"the model reads the {source} view, which was not built for {image.source}")
        planes.append(cut(pixels, crop))
    return to_model_input(planes, spec, normalised), crop
