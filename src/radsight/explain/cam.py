"""Class activation maps (Zhou et al. 2016) from the exported model's CAM output, no gradients."""
from __future__ import annotations

import numpy as np

from radsight.preprocess import resize


def cam_heatmap(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """A low-resolution CAM (h, w) -> heatmap (height, width) scaled to [0, 1] by its own range."""
    cam = cam.astype(np.float32)
    span = float(cam.max() - cam.min())
    scaled = (cam - cam.min()) / span if span > 0 else np.zeros_like(cam)
    return np.clip(resize(scaled, height, width), 0.0, 1.0)


def working_size(height: int, width: int, longest: int = 256) -> tuple[int, int]:
    """Heatmaps are computed on a grid no longer than ``longest`` px, with the image's aspect."""
    scale = min(1.0, longest / max(height, width))
    return max(1, round(height * scale)), max(1, round(width * scale))
