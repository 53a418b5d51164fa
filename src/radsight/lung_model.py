"""The lung model at inference: lung fields and CTR for the reader, the thorax crop for models that read only
the thorax, and the lung-masked view for models that read it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsight.anatomy import cardiothoracic_ratio, label_lungs, lung_fields, thorax_box
from radsight.core import Anatomy, ModelRef, Radiograph
from radsight.explain.cam import working_size
from radsight.models.config import ModelConfig
from radsight.models.store import DEFAULT_LUNG_MODEL, get_model
from radsight.preprocess import Crop, prepare, resize
from radsight.runtime import Segmenter

ANATOMY_GRID = 512  # lung outlines are measured on a grid this long: finer than heatmaps need


@dataclass
class LungResult:
    anatomy: Anatomy
    labels: np.ndarray  # the anatomy grid: 0 none, 1 right lung, 2 left lung
    probability: np.ndarray  # the model's lung probability on its own (S, S) input grid


class LungModel:
    def __init__(self, lung_model: str | ModelConfig = DEFAULT_LUNG_MODEL, threads: int = 0):
        self.cfg = lung_model if isinstance(lung_model, ModelConfig) else get_model(lung_model)
        self.segmenter = Segmenter(self.cfg, threads=threads)

    def segment(self, image: Radiograph) -> LungResult:
        """Lung fields and CTR, the lung labels on the anatomy grid, and the raw probability map."""
        prob = self.segmenter(prepare(image, self.cfg.input)[0][None])[0, 0].astype(np.float32)
        labels, reason = label_lungs(resize(prob, *working_size(image.height, image.width, ANATOMY_GRID)))
        anatomy = Anatomy(model=ModelRef(self.cfg.name, self.cfg.version), plausible=reason is None, reason=reason)
        if reason is None:
            anatomy.lungs = lung_fields(labels, image.height, image.width, image.meta.pixel_spacing_mm)
            anatomy.ctr = cardiothoracic_ratio(labels, image.height, image.width, image.meta.view_position)
        return LungResult(anatomy, labels, prob)

    def box(self, image: Radiograph, found: LungResult | None = None) -> Crop | None:
        """Where the thorax lies; None (the whole image) when the lungs are not plausible."""
        found = found or self.segment(image)
        return thorax_box(found.labels, image.height, image.width) if found.anatomy.plausible else None


def lung_masked(pixels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The radiograph with everything outside the lung model's fields (probability >= 0.5) set to black."""
    inside = resize(probability, *pixels.shape) >= 0.5
    return np.where(inside, pixels, np.float32(0)).astype(np.float32)
