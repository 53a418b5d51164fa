"""Activations and their gradients for the layer-wise methods: in closed form at the last feature map of a
global-average-pooling + linear head, by autograd (through :mod:`radsight.explain.torch_graph`) elsewhere."""
from __future__ import annotations

import numpy as np

from radsight.explain.base import Evidence, Explainer, MissingExtra, Target, rows


def closed_form(evidence: Evidence, targets: list[Target]) -> tuple[np.ndarray, np.ndarray]:
    """A (K, h, w) and dy/dA (T, K, h, w) at the last feature map: y_c = mean_ij(sum_k W[c, k] A_kij) + b_c,
    so dy_c/dA_kij = W[c, k] / (h w), the same at every position."""
    missing = [name for name in ("feature_map", "head_weight") if name not in evidence.outputs]
    if missing:
        raise MissingExtra(f"the model's graph has no {' or '.join(missing)} output: re-export or re-import it with "
                           f"this radsight, or run radsight.train.export.add_feature_outputs on its model.onnx")
    a, w = evidence.outputs["feature_map"], evidence.outputs["head_weight"][rows(targets)]
    g = np.broadcast_to((w / (a.shape[1] * a.shape[2]))[:, :, None, None], (len(targets), *a.shape))
    return a, g


# Targets explained in one pass over copies of the input: fewer passes, memory bounded on large inputs.
TARGETS_A_PASS = 4


def in_passes(targets: list[Target]) -> list[list[Target]]:
    return [targets[i:i + TARGETS_A_PASS] for i in range(0, len(targets), TARGETS_A_PASS)]


def autograd(evidence: Evidence, targets: list[Target], layer: str) -> tuple[np.ndarray, np.ndarray]:
    """A and dy/dA at the graph tensor ``layer``. Each pass runs one copy of the input per target (copy i answers
    for target i: copies share nothing, so each one's gradient is its own target's)."""
    import torch

    from radsight.explain.torch_graph import as_tensor
    activations, grads = None, []
    for group in in_passes(targets):
        with torch.enable_grad():
            x = as_tensor(np.repeat(evidence.x[None], len(group), axis=0))
            out = evidence.graph(x, capture=[layer], outputs=["logits"])
            a = out[layer]
            if a.dim() != 4:
                raise ValueError(f"layer {layer} is not a feature map (shape {tuple(a.shape)})")
            score = sum(t(out["logits"][i:i + 1]).sum() for i, t in enumerate(group))
            grads.append(torch.autograd.grad(score, a)[0].numpy())
        activations = a[0].detach().numpy()
    return activations, np.concatenate(grads)


class LayerMethod(Explainer):
    """A map sum_k alpha_k A_k, ReLU'd, whose channel weights alpha come from the gradients (Grad-CAM family)."""

    def activations_and_gradients(self, evidence: Evidence, targets: list[Target]) -> tuple[np.ndarray, np.ndarray]:
        if self.layer is None:
            return closed_form(evidence, targets)
        return autograd(evidence, targets, self.layer)

    def channel_weights(self, a: np.ndarray, g: np.ndarray) -> np.ndarray:
        """(T, K) from A (K, h, w) and dy/dA (T, K, h, w)."""
        raise NotImplementedError

    def maps(self, evidence: Evidence, targets: list[Target]) -> np.ndarray:
        a, g = self.activations_and_gradients(evidence, targets)
        return np.maximum(np.einsum("tk,khw->thw", self.channel_weights(a, g), a), 0)
