"""A model's inputs with the models that make them: the lung model (thorax crop, lung-masked view) and the
bone model (soft-tissue view), each run once per image. Used by the predictor and by training alike."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsight.core import Radiograph
from radsight.heads.anatomy import LungModel, LungResult, lung_masked
from radsight.heads.bone import BoneModel, BoneViews
from radsight.inputs.preprocess import Crop, InputSpec, prepare
from radsight.models.config import ModelConfig
from radsight.models.store import DEFAULT_BONE_MODEL, DEFAULT_LUNG_MODEL, ModelNotFound, get_model, int8_variant


@dataclass
class Inputs:
    x: np.ndarray  # (C, S, S): normalised, or in [0, 1] one a source
    crop: Crop | None
    lungs: LungResult | None = None
    bone: BoneViews | None = None

    @property
    def plausible_lungs(self) -> np.ndarray | None:
        """The lung labels on the anatomy grid when the lung model found plausible lungs, else None."""
        return self.lungs.labels if self.lungs is not None and self.lungs.anatomy.plausible else None


class InputBuilder:
    """``lung_model``/``bone_model``: names, configs or None. A spec that reads a view whose model is missing
    refuses to build with one line that names the model; no channel is ever filled with zeros.

    The bone model: the one ``source_models`` names when the spec reads ``bone_suppressed`` (its input must come
    from the model it was trained with), else ``bone_model``, else with ``bone_views`` the shipped one when it is
    installed (its registered int8 variant with ``int8``), else none."""

    def __init__(self, spec: InputSpec, owner: str, source_models: dict[str, str] | None = None,
                 lung_model: str | ModelConfig | None = DEFAULT_LUNG_MODEL,
                 bone_model: str | ModelConfig | None = None, threads: int = 0, bone_views: bool = False,
                 device: str = "auto", int8: bool = False):
        self.spec, source_models = spec, source_models or {}
        if self.needs_lungs and lung_model is None:
            raise ValueError(f"model {owner} reads the thorax or the lung-masked view and needs a lung model "
                             f"({source_models.get('lung_masked', DEFAULT_LUNG_MODEL)})")
        self.lungs = LungModel(lung_model, threads, device) if lung_model is not None else None
        if "bone_suppressed" in spec.sources:
            required = source_models.get("bone_suppressed")
            if required is None:
                raise ValueError(f"model {owner} reads the bone_suppressed view but names no bone model")
            if isinstance(bone_model, str) and bone_model != required:
                raise ValueError(f"model {owner} reads the bone_suppressed view of {required}, not of {bone_model}")
            if not isinstance(bone_model, ModelConfig):  # a config given by a caller is taken as it is
                bone_model = required
        elif bone_model is None and bone_views:
            bone_model = installed(DEFAULT_BONE_MODEL)
            bone_model = int8_variant(bone_model) if int8 else bone_model
        try:
            self.bone = BoneModel(bone_model, threads, device) if bone_model is not None else None
        except ModelNotFound as exc:
            raise ValueError(f"bone model {bone_model} (for model {owner}) is not installed: {exc}") from exc

    @property
    def needs_bone(self) -> bool:
        return "bone_suppressed" in self.spec.sources

    def add_views(self, image: Radiograph, built: Inputs) -> None:
        """The bone model's views on inputs built without them."""
        if self.bone is not None and built.bone is None:
            built.bone = self.bone.views(image)

    @property
    def needs_lungs(self) -> bool:
        return self.spec.region == "thorax" or "lung_masked" in self.spec.sources

    def build(self, image: Radiograph, anatomy: bool = False, normalised: bool = True, views: bool = True) -> Inputs:
        """The model input for ``image``; ``anatomy`` also runs the lung model when the input does not need it;
        ``views``: also the bone model's views when the input does not need them (:meth:`add_views` later)."""
        found = self.lungs.segment(image) if self.lungs and (anatomy or self.needs_lungs) else None
        bone = self.bone.views(image) if self.bone and (views or self.needs_bone) else None
        views = {}
        if "lung_masked" in self.spec.sources:
            views["lung_masked"] = lung_masked(image.pixels, found.probability)
        if bone is not None:
            views["bone_suppressed"] = bone.soft_tissue
        box = self.lungs.box(image, found) if self.spec.region == "thorax" else None
        x, crop = prepare(image, self.spec, box, views, normalised)
        return Inputs(x, crop, found, bone)


def installed(name: str) -> str | None:
    """``name`` when that model is registered, else None."""
    try:
        return get_model(name).name
    except ModelNotFound:
        return None
