"""Faithfulness of a heatmap: deletion and insertion curves (Petsiuk et al. 2018).

Deletion replaces the most highlighted pixels of the classifier's input first, a share at a time, and follows the
finding's probability down: a faithful map makes it fall fast (low area under the curve). Insertion starts from
the input with everything removed and restores the most highlighted pixels first: a faithful map makes the
probability rise fast (high area). "Removed" pixels take the value of a strongly blurred copy of the input, which
stays a plausible radiograph where a constant would not. A random pixel order is the baseline both are read
against."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import ndimage

STEPS = 16  # curve points after the first: 1/16 of the pixels a step
BLUR = 1 / 8  # Gaussian sigma of the "removed" image, as a share of the input's side


def removed(x: np.ndarray, blur: float = BLUR) -> np.ndarray:
    """The input (C, S, S) with its detail removed: each channel blurred with sigma ``blur`` x S."""
    return np.stack([ndimage.gaussian_filter(c, blur * c.shape[-1], mode="nearest") for c in x]).astype(np.float32)


def curves(score: Callable[[np.ndarray], np.ndarray], x: np.ndarray, saliency: np.ndarray,
           steps: int = STEPS) -> tuple[np.ndarray, np.ndarray]:
    """Deletion and insertion curves (steps + 1 probabilities each) of input ``x`` (C, S, S) in the order of
    ``saliency`` (S, S), most salient first; ``score`` maps a batch (B, C, S, S) to the target's probability (B,)."""
    probabilities = np.asarray(score(curve_inputs(x, removed(x), saliency, steps)), np.float64)
    return probabilities[:steps + 1], probabilities[steps + 1:]


def curve_inputs(x: np.ndarray, base: np.ndarray, saliency: np.ndarray, steps: int = STEPS) -> np.ndarray:
    """The 2 (steps + 1) inputs of the two curves: ``x`` losing its most salient pixels to ``base`` (deletion),
    then ``base`` gaining them from ``x`` (insertion)."""
    order = np.argsort(-saliency.ravel(), kind="stable")
    batch = np.empty((2 * (steps + 1), *x.shape), np.float32)
    for k in range(steps + 1):
        chosen = np.zeros(saliency.size, bool)
        chosen[order[:round(k / steps * saliency.size)]] = True
        chosen = chosen.reshape(saliency.shape)[None]
        batch[k] = np.where(chosen, base, x)
        batch[steps + 1 + k] = np.where(chosen, x, base)
    return batch


def area(curve: np.ndarray) -> float:
    """Area under a curve sampled at equal steps over [0, 1] (trapezoids)."""
    return float((curve[:-1] + curve[1:]).sum() / (2 * (len(curve) - 1)))
