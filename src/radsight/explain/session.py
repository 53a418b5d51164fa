"""The explanation methods one classifier is explained with: what they read, the graph run by torch that the
gradient methods need (loaded once), raw maps by label."""
from __future__ import annotations

from collections.abc import Collection

import numpy as np

from radsight.explain import METHODS, Evidence, Explainer, MissingExtra, Target, get_method
from radsight.models.config import ModelConfig
from radsight.models.store import verify


class Explanations:
    """``method`` makes a prediction's heatmaps and boxes, at the graph tensor ``layer`` (None: the last feature
    map); ``alternates``: methods whose heatmaps are added. Raises :class:`MissingExtra` when a method needs an
    output the graph lacks or torch that is not installed, and ValueError for an unknown method or layer."""

    def __init__(self, cfg: ModelConfig, method: str, layer: str | None = None, alternates: Collection[str] = ()):
        self.cfg = cfg
        self.method = get_method(method, layer)
        self.alternates = [get_method(name) for name in alternates if name != method]
        unread = [name for m in self.all for name in m.reads if m.layer is None and name not in cfg.outputs]
        if unread:
            raise MissingExtra(f"model {cfg.name}: its graph has no {', '.join(dict.fromkeys(unread))} output, "
                               f"which {self.method.title} reads: re-export or re-import it with this radsight")
        self.graph = None
        if any(m.needs_torch for m in self.all):
            self.torch_graph()
            if layer is not None and layer not in self.graph.layers():
                raise ValueError(f"model {cfg.name} has no layer {layer!r}; its layers: "
                                 f"{', '.join(self.graph.layers())}")

    @property
    def all(self) -> list[Explainer]:
        return [self.method, *self.alternates]

    def torch_graph(self):
        """The classifier's graph run by torch, for gradients (loaded once); :class:`MissingExtra` without
        ``radsight[train]``."""
        if self.graph is None:
            from radsight.explain.torch_graph import load_graph
            self.graph = load_graph(verify(self.cfg))
        return self.graph

    def outputs(self, *also: Explainer) -> tuple[str, ...]:
        """The classifier outputs to fetch beyond the usual ones, for every method and those in ``also``."""
        return tuple(dict.fromkeys(name for m in (*self.all, *also) for name in m.reads))

    def gradients_unavailable(self) -> str | None:
        """Why gradients cannot be had on this install and model (no torch, or a graph torch cannot run, such as
        an int8 QDQ one); None when they can."""
        try:
            self.torch_graph()
        except ValueError as exc:  # MissingExtra is one
            return str(exc)
        return None

    def usable(self, names: Collection[str]) -> tuple[list[Explainer], dict[str, str]]:
        """The methods ``names`` that can run on this install and model, and why each of the others cannot."""
        methods, unavailable = [], {}
        for name in names:
            method = METHODS[name]()
            missing = [r for r in method.reads if r not in self.cfg.outputs]
            reason = self.gradients_unavailable() if method.needs_torch else None
            if reason:
                unavailable[name] = reason
                continue
            if missing:
                unavailable[name] = f"the model's graph has no {', '.join(missing)} output"
                continue
            methods.append(method)
        return methods, unavailable

    def raw_maps(self, x: np.ndarray, out: dict[str, np.ndarray], labels: Collection[str],
                 method: Explainer | None = None) -> dict[str, np.ndarray]:
        """Raw maps of ``labels`` by ``method`` (default: the chosen one) for one input ``x`` (C, S, S) whose
        classifier outputs (a batch of one, with the method's extra outputs) are ``out``."""
        method = method or self.method
        targets = [Target(label, self.cfg.labels.index(label)) for label in labels]
        if not targets:
            return {}
        outputs = {k: v if k == "head_weight" else v[0] for k, v in out.items() if k != "probabilities"}
        maps = method.maps(Evidence(x, outputs, self.graph), targets)
        return {t.label: m for t, m in zip(targets, maps)}
