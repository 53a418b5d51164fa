"""Simulated nodules for training a detector where real ones are few: a sphere's (or an ellipsoid's) attenuation
profile, blurred as the film's own unsharpness blurs, added to a film without a nodule at a place where lung lies
(``heads.lung_geometry.nodule_region``: behind the heart and below the dome too), with a contrast drawn from what
the real nodules of the training films measure. No torch: films are float arrays in [0, 1], MONOCHROME2."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

SIZES_MM = (5.0, 40.0)


def measured_contrast(pixels: np.ndarray, x: float, y: float, radius_px: float) -> float:
    """A nodule's contrast on its film: the mean grey inside half its radius minus the mean of the ring between
    1.5 and 2.5 radii around it."""
    yy, xx = np.mgrid[:pixels.shape[0], :pixels.shape[1]]
    d = np.hypot(xx - x, yy - y)
    core, ring = d <= max(1.0, radius_px / 2), (d >= 1.5 * radius_px) & (d <= 2.5 * radius_px)
    return float(pixels[core].mean() - pixels[ring].mean()) if ring.any() else 0.0


@dataclass(frozen=True)
class Nodule:
    x: float
    y: float
    diameter_mm: float
    contrast: float


def nodule_profile(shape: tuple[int, int], n: Nodule, spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
    """The added grey of one nodule: an ellipsoid's thickness (axes 0.8-1.2 of the radius, turned at random),
    normalised to 1 at its centre, times its contrast, blurred by a tenth of its radius (at least 0.5 px)."""
    radius = n.diameter_mm / 2 / spacing_mm
    a, b = radius * rng.uniform(0.8, 1.2, 2)
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    dx, dy = xx - n.x, yy - n.y
    u, v = dx * np.cos(angle) + dy * np.sin(angle), -dx * np.sin(angle) + dy * np.cos(angle)
    thickness = np.sqrt(np.clip(1 - (u / a) ** 2 - (v / b) ** 2, 0, None))
    return ndimage.gaussian_filter(n.contrast * thickness, max(0.5, radius / 10)).astype(np.float32)


def simulate(pixels: np.ndarray, region: np.ndarray, contrasts: np.ndarray, spacing_mm: float,
             rng: np.random.Generator, count: int = 1, sizes_mm: tuple[float, float] = SIZES_MM
             ) -> tuple[np.ndarray, list[Nodule]]:
    """``pixels`` with ``count`` nodules added: each centred at a random pixel of ``region`` (far enough inside
    that most of it lies there), its diameter log-uniform in ``sizes_mm``, its contrast one of ``contrasts``
    (measured on real nodules; those that measure no brighter than their ring are left out) scaled by 0.8-1.2.
    Returns the film and the nodules (its labels)."""
    out, placed = pixels.astype(np.float32).copy(), []
    where, contrasts = np.argwhere(region), np.asarray(contrasts)[np.asarray(contrasts) > 0]
    if not len(where) or not len(contrasts):
        return out, placed
    for _ in range(count):
        diameter = float(np.exp(rng.uniform(*np.log(sizes_mm))))
        y, x = where[rng.integers(len(where))]
        n = Nodule(float(x), float(y), diameter, float(rng.choice(contrasts) * rng.uniform(0.8, 1.2)))
        out += nodule_profile(out.shape, n, spacing_mm, rng)
        placed.append(n)
    return np.clip(out, 0, 1), placed
