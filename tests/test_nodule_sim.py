"""Simulated nodules land where lung lies, with the contrast they were given; the search region covers the lung
behind the heart and below the dome."""
from __future__ import annotations

import numpy as np
import pytest

from radsight.heads.lung_geometry import nodule_region
from radsight.train.nodule_sim import measured_contrast, simulate

from conftest import chest_phantom


def _lungs(size: int = 128) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size
    labels = np.zeros((size, size), np.uint8)
    labels[((xx - 0.3) / 0.15) ** 2 + ((yy - 0.45) / 0.3) ** 2 < 1] = 1
    labels[((xx - 0.7) / 0.15) ** 2 + ((yy - 0.45) / 0.3) ** 2 < 1] = 2
    return labels


def test_the_search_region_holds_the_lungs_the_space_between_them_and_a_band_below():
    labels = _lungs()
    region = nodule_region(labels)
    assert region[labels > 0].all()
    assert region[int(0.45 * 128), 64]  # between the lungs: behind the heart
    assert region[int(0.78 * 128), int(0.3 * 128)]  # just below a lung's lowest row (0.75)
    assert not region[int(0.95 * 128), int(0.3 * 128)] and not region[5, 5]
    assert not nodule_region(np.zeros_like(labels)).any()


def test_a_simulated_nodule_is_placed_in_the_region_with_its_contrast():
    film = chest_phantom(128, 128)
    region = nodule_region(_lungs())
    rng = np.random.default_rng(0)
    out, nodules = simulate(film, region, np.array([0.08, -0.02]), 0.7, rng, count=3, sizes_mm=(10, 14))
    assert len(nodules) == 3
    for n in nodules:
        assert region[int(n.y), int(n.x)] and 10 <= n.diameter_mm <= 14 and 0.064 <= n.contrast <= 0.096
        radius = n.diameter_mm / 2 / 0.7
        added = measured_contrast(out, n.x, n.y, radius) - measured_contrast(film, n.x, n.y, radius)
        assert added == pytest.approx(n.contrast, rel=0.35)
    assert out.min() >= 0 and out.max() <= 1
    same, none = simulate(film, np.zeros_like(region), np.array([0.05]), 0.7, rng)
    assert none == [] and np.array_equal(same, film)
