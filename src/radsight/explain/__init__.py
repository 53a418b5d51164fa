"""Explanation methods, by name: CAM, Grad-CAM, Grad-CAM++ (closed forms, no torch), guided backpropagation
and guided Grad-CAM (gradients through torch, ``radsight[train]``)."""
from __future__ import annotations

from radsight.explain.base import Evidence, Explainer, MissingExtra, Target
from radsight.explain.cam import CAM
from radsight.explain.gradcam import GradCAM
from radsight.explain.gradcam_pp import GradCAMPlusPlus
from radsight.explain.guided import GuidedBackprop, GuidedGradCAM

METHODS: dict[str, type[Explainer]] = {m.name: m for m in (CAM, GradCAM, GradCAMPlusPlus, GuidedGradCAM,
                                                              GuidedBackprop)}
DEFAULT_METHOD = "cam"  # exact for radsight's heads (the map sums to the logit) and the fastest
TORCH_FREE = tuple(name for name, m in METHODS.items() if not m().needs_torch)


def get_method(name: str, layer: str | None = None) -> Explainer:
    """The method ``name`` (see :data:`METHODS`); ``layer`` explains another graph tensor (needs torch)."""
    if name not in METHODS:
        raise ValueError(f"unknown explanation method {name!r}; choose one of {', '.join(METHODS)}")
    if layer is not None and METHODS[name] is CAM:
        raise ValueError("CAM reads the last feature map only; choose gradcam or gradcam++ for another layer")
    return METHODS[name](layer)


__all__ = ["DEFAULT_METHOD", "METHODS", "TORCH_FREE", "Evidence", "Explainer", "MissingExtra", "Target",
           "get_method"]
