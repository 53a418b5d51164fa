"""The shared base of the explanation methods: what is explained (targets), what a method reads, how its raw
map becomes a [0, 1] heatmap. One small file per method subclasses :class:`Explainer`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from radsight.inputs.preprocess import resize


class MissingExtra(ValueError):
    """A method needs an optional part of radsight that is not installed; the message says which."""


@dataclass(frozen=True)
class Target:
    """What is explained: one row of the classifier's head (a finding, or the triage output). Called on logits
    (N, L) it gives the score (N,) whose gradients the gradient methods follow."""

    label: str
    row: int

    def __call__(self, logits: Any) -> Any:
        return logits[:, self.row]


@dataclass
class Evidence:
    """What a method reads for one image: the classifier's input (C, S, S), its ONNX outputs for that image
    (no batch axis; ``head_weight`` as it is), and, for methods that need gradients, the graph run by torch."""

    x: np.ndarray
    outputs: dict[str, np.ndarray]
    graph: Any = field(default=None, repr=False)  # radsight.explain.torch_graph.TorchGraph


class Explainer:
    """A method: :meth:`maps` gives each target's raw map (T, h, w) on the method's own grid (the feature map's
    for CAM-like methods, the classifier input's for guided ones); :meth:`heat` scales one to [0, 1]."""

    name: ClassVar[str]
    title: ClassVar[str]
    reads: ClassVar[tuple[str, ...]] = ()  # ONNX outputs read beyond logits and cams (closed forms)
    scaling: ClassVar[str] = "peak"  # "peak": map / its maximum (maps >= 0); "range": (map - min) / (max - min)
    box_smoothing: ClassVar[float] = 0.0  # Gaussian sigma, as a share of the heat grid's side, before boxes

    def __init__(self, layer: str | None = None):
        """``layer``: the graph tensor to explain (layer-wise methods); None: the last feature map."""
        self.layer = layer

    @property
    def needs_torch(self) -> bool:
        return self.layer is not None

    def maps(self, evidence: Evidence, targets: list[Target]) -> np.ndarray:
        raise NotImplementedError

    def heat(self, raw: np.ndarray, height: int, width: int, scale: np.ndarray | None = None) -> np.ndarray:
        return scaled_heatmap(raw, height, width, self.scaling, scale)


def scaled_heatmap(raw: np.ndarray, height: int, width: int, scaling: str = "range",
                   scale: np.ndarray | None = None) -> np.ndarray:
    """A raw map (h, w) -> heatmap (height, width) in [0, 1]: by its range, or by its peak (all zero when the
    map has no positive value); those of ``scale`` when given (a larger map ``raw`` is part of: the views of a
    study are scaled together)."""
    raw = raw.astype(np.float32)
    ref = raw if scale is None else scale.astype(np.float32)
    if scaling == "range":
        low, span = float(ref.min()), float(ref.max() - ref.min())
    else:
        low, span = 0.0, float(ref.max())
    scaled = (raw - low) / span if span > 0 else np.zeros_like(raw)
    return np.clip(resize(np.maximum(scaled, 0), height, width), 0.0, 1.0)


def rows(targets: list[Target]) -> list[int]:
    return [t.row for t in targets]
