"""The bone suppression model at inference (ONNX Runtime, no torch): the bone image and the soft-tissue view.

The model sees the film at its input size; the bone image it returns is scaled up to the film's size and
subtracted from the film itself, so the soft-tissue view keeps the film's own resolution and detail.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsight.core import Radiograph
from radsight.heads.base import Head
from radsight.inputs.preprocess import normalise, prepare, resize
from radsight.models.config import BONE_SUPPRESSION, ModelConfig
from radsight.models.store import DEFAULT_BONE_MODEL, get_model
from radsight.runtime.onnx import BoneSuppressor

COMPUTED_VIEWS = ("soft_tissue", "bone")  # the views a prediction names, in this order


@dataclass
class BoneViews:
    soft_tissue: np.ndarray  # (H, W) in [0, 1]: the film with bone suppressed (as the model's training data did)
    bone: np.ndarray  # (H, W) in [0, 1]: what was removed, stretched for display (0.5 = nothing removed)
    bone_grey: np.ndarray  # (H, W): what was removed, in the film's grey units


class BoneModel:
    def __init__(self, model: str | ModelConfig, threads: int = 0, device: str = "auto"):
        self.cfg = model if isinstance(model, ModelConfig) else get_model(model)
        if self.cfg.task != BONE_SUPPRESSION:
            raise ValueError(f"model {self.cfg.name} is a {self.cfg.task} model, not a bone suppression model")
        self.model = BoneSuppressor(self.cfg, threads, device)

    def views(self, image: Radiograph) -> BoneViews:
        pixels, _ = prepare(image, self.cfg.input, normalised=False)
        bone_small = self.model(normalise(pixels, self.cfg.input)[None], pixels[None])[0, 0].astype(np.float32)
        bone = resize(bone_small, image.height, image.width)
        soft = np.clip(image.pixels - bone, 0.0, 1.0)
        return BoneViews(soft_tissue=soft, bone=bone_display(bone), bone_grey=bone)


def bone_display(bone: np.ndarray, span: float = 0.1) -> np.ndarray:
    """The bone image for a reader: 0.5 where nothing was removed, +-``span`` grey units to white/black."""
    return np.clip(0.5 + bone / (2 * span), 0.0, 1.0).astype(np.float32)


HEAD = Head(task="bone-suppression", summary="the soft-tissue view (ribs suppressed) and the bone image removed",
            model_tasks=(BONE_SUPPRESSION,), default_model=DEFAULT_BONE_MODEL, read=BoneModel.views, section="views",
            train="radsight.train.bone:from_request", evaluate="radsight.evaluate.bone:from_request")
