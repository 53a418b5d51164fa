"""Heatmap -> bounding boxes: threshold, connected components, one box each."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radsight.core import Box


@dataclass(frozen=True)
class BoxConfig:
    threshold: float = 0.5  # share of the heatmap's maximum a pixel must reach
    min_area: float = 0.005  # smallest component kept, as a share of the image
    max_area: float = 0.6  # a component covering more than this says nothing about where
    max_boxes: int = 3


def heatmap_boxes(heat: np.ndarray, image_height: int, image_width: int, probability: float,
                  cfg: BoxConfig = BoxConfig()) -> list[Box]:
    """Boxes in the original image's pixel coordinates, best first.

    ``heat`` is a [0, 1] heatmap on any grid with the image's aspect; a box's score is the finding's
    probability times the component's peak heat.
    """
    labels, count = ndimage.label(heat >= cfg.threshold)
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    peaks = ndimage.maximum(heat, labels, index)
    areas = ndimage.sum_labels(np.ones_like(heat), labels, index) / heat.size
    sy, sx = image_height / heat.shape[0], image_width / heat.shape[1]
    boxes = []
    for slices, peak, area in zip(ndimage.find_objects(labels), peaks, areas):
        if not cfg.min_area <= area <= cfg.max_area:
            continue
        rows, cols = slices
        boxes.append(Box(x=cols.start * sx, y=rows.start * sy, width=(cols.stop - cols.start) * sx,
                         height=(rows.stop - rows.start) * sy, score=float(probability * peak)))
    boxes.sort(key=lambda b: b.score, reverse=True)
    return boxes[:cfg.max_boxes]
