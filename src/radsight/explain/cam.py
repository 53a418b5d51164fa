"""Class activation maps (Zhou et al. 2016) from the exported model's ``cams`` output, no gradients.

For a head of global average pooling and a linear layer, CAM_c = sum_k W[c, k] A_k, and its mean plus the
bias is the logit exactly: the map accounts for the whole score, signed."""
from __future__ import annotations

import numpy as np

from radsight.explain.base import Evidence, Explainer, Target, rows


class CAM(Explainer):
    name = "cam"
    title = "CAM"
    scaling = "range"

    @property
    def needs_torch(self) -> bool:
        return False  # the last feature map only; there is no other layer to choose

    def maps(self, evidence: Evidence, targets: list[Target]) -> np.ndarray:
        return evidence.outputs["cams"][rows(targets)]

