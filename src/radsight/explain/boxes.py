"""Heatmap -> bounding boxes: threshold, connected components, one box each."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radsight.core import Box

FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)  # ndimage.label's default, made once


@dataclass(frozen=True)
class BoxConfig:
    threshold: float = 0.5  # share of the heatmap's maximum a pixel must reach
    step: float = 0.1  # a region whose box is too wide is re-thresholded this much higher
    min_area: float = 0.005  # smallest region kept, as a share of the image
    min_side: float = 0.03  # a box thinner than this share of the image's height or width is a sliver along an edge
    max_area: float = 0.6  # a box covering more than this share of the image says nothing about where
    max_boxes: int = 3


MIN_BOX_CELLS = 16  # a map coarser than this over the thorax cannot localize: a 64-px model's 8x8 spans a lobe a cell


def coarse_map(cells: tuple[int, int], thorax_share: tuple[float, float] = (1.0, 1.0)) -> str | None:
    """Why a map of ``cells`` (rows, columns) is too coarse to draw boxes from, or None: fewer than
    :data:`MIN_BOX_CELLS` a side over the thorax (``thorax_share``: the share of the map's height and width the
    thorax spans)."""
    over = (cells[0] * thorax_share[0], cells[1] * thorax_share[1])
    if min(over) >= MIN_BOX_CELLS:
        return None
    return (f"the model's map has {cells[0]}x{cells[1]} cells ({over[0]:.0f}x{over[1]:.0f} over the thorax); boxes "
            f"need at least {MIN_BOX_CELLS}x{MIN_BOX_CELLS} to localize, so the heatmap is shown without them")


def heatmap_boxes(heat: np.ndarray, image_height: int, image_width: int, probability: float,
                  cfg: BoxConfig = BoxConfig(), region: np.ndarray | None = None) -> list[Box]:
    """Boxes in the original image's pixel coordinates, best first.

    ``heat`` is a [0, 1] heatmap on any grid with the image's aspect. A region whose box would cover more
    than ``max_area`` of the image is split by thresholding it higher. A box's score is the finding's
    probability times the region's peak heat. ``region`` (a mask on the heat grid): where the finding's
    evidence can lie, e.g. the thorax; heat outside it makes no box and no box reaches outside it.
    """
    if region is not None:
        heat = np.where(region, heat, np.float32(0))
    sy, sx = image_height / heat.shape[0], image_width / heat.shape[1]
    boxes = [Box(x=x0 * sx, y=y0 * sy, width=(x1 - x0) * sx, height=(y1 - y0) * sy, score=float(probability * peak))
             for (y0, x0, y1, x1), peak in _regions(heat, heat >= cfg.threshold, cfg.threshold, cfg, heat.shape)]
    boxes.sort(key=lambda b: b.score, reverse=True)
    return boxes[:cfg.max_boxes]


def _regions(heat: np.ndarray, mask: np.ndarray, level: float, cfg: BoxConfig, grid: tuple[int, int],
             top: int = 0, left: int = 0) -> list[tuple[tuple[int, int, int, int], float]]:
    """(y0, x0, y1, x1) on the grid and peak heat of each region of ``mask``; ``heat`` and ``mask`` may be a
    window of the grid whose corner is (``top``, ``left``): only the window around the mask is labelled."""
    window = _bounds(mask)
    if window is None:
        return []
    heat, mask = heat[window], mask[window]
    top, left = top + window[0].start, left + window[1].start
    grid_area = grid[0] * grid[1]
    labels, count = ndimage.label(mask, FOUR_CONNECTED)
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    windows = ndimage.find_objects(labels)
    found = []
    for index in np.flatnonzero(sizes[1:] >= cfg.min_area * grid_area) + 1:  # label order, as before
        r, c = windows[index - 1]
        region, inner, y0, x0 = labels[r, c] == index, heat[r, c], top + r.start, left + c.start
        if r.stop - r.start < cfg.min_side * grid[0] or c.stop - c.start < cfg.min_side * grid[1]:
            continue
        if (r.stop - r.start) * (c.stop - c.start) <= cfg.max_area * grid_area:
            found.append(((y0, x0, top + r.stop, left + c.stop), float(inner[region].max())))
        elif level + cfg.step < 1.0:
            higher = level + cfg.step
            found.extend(_regions(inner, region & (inner >= higher), higher, cfg, grid, y0, x0))
    return found


def _bounds(mask: np.ndarray) -> tuple[slice, slice] | None:
    """The smallest window holding every True of ``mask``; None when there is none."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)
