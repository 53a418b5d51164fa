"""Guided backpropagation (Springenberg et al. 2015) and guided Grad-CAM (Selvaraju et al. 2017): pixel-level
detail, through the graph run by torch (``radsight[train]``).

Guided backpropagation is the input gradient with every ReLU passing back only positive gradients at positive
inputs; guided Grad-CAM multiplies it by the Grad-CAM map brought up to the input's size, keeping the detail
inside the regions Grad-CAM finds. Maps are the gradient's magnitude summed over the input's channels; boxes
are drawn from a smoothed copy (the detail itself is speckle at the scale of a box)."""
from __future__ import annotations

import numpy as np

from radsight.explain.base import Evidence, Explainer, Target
from radsight.explain.gradcam import GradCAM
from radsight.explain.gradients import in_passes
from radsight.inputs.preprocess import resize


def guided_gradients(evidence: Evidence, targets: list[Target]) -> np.ndarray:
    """(T, C, S, S): the guided input gradient of each target (one copy of the input per target in a pass)."""
    import torch

    from radsight.explain.torch_graph import as_tensor
    grads = []
    for group in in_passes(targets):
        with torch.enable_grad():
            x = as_tensor(np.repeat(evidence.x[None], len(group), axis=0)).requires_grad_(True)
            logits = evidence.graph(x, guided=True, outputs=["logits"])["logits"]
            score = sum(t(logits[i:i + 1]).sum() for i, t in enumerate(group))
            grads.append(torch.autograd.grad(score, x)[0].numpy())
    return np.concatenate(grads)


class GuidedBackprop(Explainer):
    name = "guided-backprop"
    title = "guided backpropagation"
    box_smoothing = 0.03

    @property
    def needs_torch(self) -> bool:
        return True

    def maps(self, evidence: Evidence, targets: list[Target]) -> np.ndarray:
        return np.abs(guided_gradients(evidence, targets)).sum(axis=1)


class GuidedGradCAM(GuidedBackprop):
    name = "guided-gradcam"
    title = "guided Grad-CAM"

    def maps(self, evidence: Evidence, targets: list[Target]) -> np.ndarray:
        detail = super().maps(evidence, targets)
        coarse = GradCAM(self.layer).maps(evidence, targets)
        size = detail.shape[1:]
        return np.stack([d * resize(c.astype(np.float32), *size) for d, c in zip(detail, coarse)])
