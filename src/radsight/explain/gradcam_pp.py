"""Grad-CAM++ (Chattopadhyay et al. 2018): per-position weights that let several separate regions of one
finding (multiple nodules) each count, rather than the largest one alone.

alpha_kij = g^2 / (2 g^2 + sum_ab A_kab g^3) with g = dy/dA_kij, channel weight sum_ij alpha_kij ReLU(g).
With the constant gradient of a global-average-pooling + linear head (g = W[c, k] / (h w)) this is
ReLU(W[c, k]) / (2 + W[c, k] mean(A_k)): computed from the ``feature_map`` and ``head_weight`` outputs."""
from __future__ import annotations

import numpy as np

from radsight.explain.gradients import LayerMethod


class GradCAMPlusPlus(LayerMethod):
    name = "gradcam++"
    title = "Grad-CAM++"
    reads = ("feature_map", "head_weight")

    def channel_weights(self, a: np.ndarray, g: np.ndarray) -> np.ndarray:
        g = g.astype(np.float64)
        g2, g3 = g * g, g * g * g
        denominator = 2 * g2 + a.sum(axis=(1, 2))[None, :, None, None] * g3
        alpha = np.divide(g2, denominator, out=np.zeros_like(g2), where=(g != 0) & (denominator != 0))
        return (alpha * np.maximum(g, 0)).sum(axis=(2, 3))
