"""Grad-CAM (Selvaraju et al. 2017): channels weighted by their mean gradient.

At the last feature map of a global-average-pooling + linear head the weights are W[c] / (h w), so Grad-CAM
is ReLU(CAM) / (h w): read from the ``cams`` output, with no gradients and no torch."""
from __future__ import annotations

import numpy as np

from radsight.explain.base import Evidence, Target, rows
from radsight.explain.gradients import LayerMethod


class GradCAM(LayerMethod):
    name = "gradcam"
    title = "Grad-CAM"

    def channel_weights(self, a: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g.mean(axis=(2, 3))

    def maps(self, evidence: Evidence, targets: list[Target]) -> np.ndarray:
        if self.layer is not None:
            return super().maps(evidence, targets)
        cams = evidence.outputs["cams"][rows(targets)]
        return np.maximum(cams, 0) / (cams.shape[1] * cams.shape[2])
