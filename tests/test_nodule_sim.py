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


def test_nodule_targets_move_with_their_warped_film():
    torch = pytest.importorskip("torch", reason="needs radsight[train]")
    from radsight.train.data import random_affine, warp
    from radsight.train.nodules import moved, targets
    size = 64
    heat, radius = targets([(20.0, 30.0, 8.4)], size, 0.7)  # radius 6 px
    assert heat[30, 20] == pytest.approx(1.0) and radius[30, 20] == pytest.approx(np.log(6.0))
    assert np.isinf(radius[5, 5])
    theta = random_affine(1, torch.Generator().manual_seed(3))
    film = np.zeros((size, size), np.float32)
    film[28:33, 18:23] = 1.0  # a bright square at (20, 30)
    warped = warp(torch.from_numpy(film)[None, None], theta)[0, 0].numpy()
    (x, y, d), = moved([(20.0, 30.0, 8.4)], theta[0].numpy(), size)
    cy, cx = np.argwhere(warped > 0.5).mean(0)
    assert abs(cx - x) < 1.0 and abs(cy - y) < 1.0 and 0.85 < d / 8.4 < 1.15
