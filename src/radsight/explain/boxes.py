"""Heatmap -> bounding boxes: threshold, connected components, one box each."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radsight.core import Box


@dataclass(frozen=True)
class BoxConfig:
    threshold: float = 0.5  # share of the heatmap's maximum a pixel must reach
    step: float = 0.1  # a region whose box is too wide is re-thresholded this much higher
    min_area: float = 0.005  # smallest region kept, as a share of the image
    max_area: float = 0.6  # a box covering more than this share of the image says nothing about where
    max_boxes: int = 3


def heatmap_boxes(heat: np.ndarray, image_height: int, image_width: int, probability: float,
                  cfg: BoxConfig = BoxConfig()) -> list[Box]:
    """Boxes in the original image's pixel coordinates, best first.

    ``heat`` is a [0, 1] heatmap on any grid with the image's aspect. A region whose box would cover more
    than ``max_area`` of the image is split by thresholding it higher. A box's score is the finding's
    probability times the region's peak heat.
    """
    sy, sx = image_height / heat.shape[0], image_width / heat.shape[1]
    boxes = [Box(x=cols.start * sx, y=rows.start * sy, width=(cols.stop - cols.start) * sx,
                 height=(rows.stop - rows.start) * sy, score=float(probability * peak))
             for (rows, cols), peak in _regions(heat, np.ones(heat.shape, bool), cfg.threshold, cfg)]
    boxes.sort(key=lambda b: b.score, reverse=True)
    return boxes[:cfg.max_boxes]


def _regions(heat: np.ndarray, within: np.ndarray, level: float, cfg: BoxConfig) -> list[tuple[tuple, float]]:
    labels, count = ndimage.label((heat >= level) & within)
    found = []
    for index, (rows, cols) in enumerate(ndimage.find_objects(labels), start=1):
        region = labels == index
        if region.sum() < cfg.min_area * heat.size:
            continue
        if (rows.stop - rows.start) * (cols.stop - cols.start) <= cfg.max_area * heat.size:
            found.append(((rows, cols), float(heat[region].max())))
        elif level + cfg.step < 1.0:
            found.extend(_regions(heat, region, level + cfg.step, cfg))
    return found
