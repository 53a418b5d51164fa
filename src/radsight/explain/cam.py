"""Class activation maps (Zhou et al. 2016) from the exported model's CAM output, no gradients."""
from __future__ import annotations

import numpy as np

from radsight.preprocess import resize

# Heatmaps and boxes live on a grid this long. A CAM is 7x7 or so: 128 cells place a box edge to under 1% of
# the image (8 px of a 1024-px film, about the spread of radiologists' own boxes) at a quarter of 256's cost.
HEATMAP_GRID = 128


def cam_heatmap(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """A low-resolution CAM (h, w) -> heatmap (height, width) scaled to [0, 1] by its own range."""
    cam = cam.astype(np.float32)
    span = float(cam.max() - cam.min())
    scaled = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
    return np.clip(resize(scaled, height, width), 0.0, 1.0)


def working_size(height: int, width: int, longest: int = HEATMAP_GRID) -> tuple[int, int]:
    """Heatmaps are computed on a grid no longer than ``longest`` px, with the image's aspect."""
    scale = min(1.0, longest / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))
