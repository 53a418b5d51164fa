"""The anatomy head: the lung model at inference (ONNX Runtime), the lung fields and the CTR for the reader, drawn
on the overlay and given to the DICOM Segmentation; the thorax crop for models that read only the thorax, and the
lung-masked view for models that read it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsight.core import Anatomy, ModelRef, Prediction, Radiograph
from radsight.heads.base import Head, Segment
from radsight.heads.lung_geometry import cardiothoracic_ratio, label_lungs, lung_fields, thorax_box
from radsight.inputs.preprocess import Crop, prepare, resize, working_size
from radsight.models.config import SEGMENTATION, ModelConfig
from radsight.models.store import DEFAULT_LUNG_MODEL, get_model
from radsight.runtime.onnx import Segmenter

ANATOMY_GRID = 512  # lung outlines are measured on a grid this long: finer than heatmaps need


@dataclass
class LungResult:
    anatomy: Anatomy
    labels: np.ndarray  # the anatomy grid: 0 none, 1 right lung, 2 left lung
    probability: np.ndarray  # the model's lung probability on its own (S, S) input grid


class LungModel:
    def __init__(self, lung_model: str | ModelConfig = DEFAULT_LUNG_MODEL, threads: int = 0, device: str = "auto"):
        self.cfg = lung_model if isinstance(lung_model, ModelConfig) else get_model(lung_model)
        self.segmenter = Segmenter(self.cfg, threads, device)

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


LUNG_COLOUR, THORAX_COLOUR, HEART_COLOUR = (0, 220, 255), (255, 255, 255), (255, 140, 0)
# The lung fields: segment label and SNOMED CT code, in the lung mask's label order (1 right, 2 left).
LUNG_SEGMENTS = (("right lung", ("3341006", "SCT", "Right lung")), ("left lung", ("44029006", "SCT", "Left lung")))


def draw_anatomy(draw, prediction: Prediction, scale: float, w: int, h: int) -> None:
    """The lung outlines and, when measured, the CTR's thoracic and cardiac lines."""
    anatomy = prediction.anatomy
    if anatomy is None:
        return
    width = max(2, w // 400)
    for lung in anatomy.lungs:
        points = [(x * scale, y * scale) for x, y in lung.polygon]
        if len(points) > 2:
            draw.line(points + points[:1], fill=LUNG_COLOUR, width=width)
    if anatomy.ctr is not None and anatomy.ctr.value is not None:
        for line, colour in ((anatomy.ctr.thoracic_line, THORAX_COLOUR), (anatomy.ctr.cardiac_line, HEART_COLOUR)):
            (x0, y0), (x1, y1) = line
            draw.line([(x0 * scale, y0 * scale), (x1 * scale, y1 * scale)], fill=colour, width=width)
            for x, y in ((x0, y0), (x1, y1)):
                draw.line([(x * scale, y * scale - 6), (x * scale, y * scale + 6)], fill=colour, width=width)


def lung_segments(p: Prediction) -> list[Segment]:
    """The right and left lung fields on the image's pixel grid; none when they are not plausible."""
    if p.anatomy is None or not p.anatomy.plausible or p.lung_mask is None:
        return []
    from PIL import Image
    mask = np.asarray(Image.fromarray(p.lung_mask).resize((p.width, p.height), Image.Resampling.NEAREST))
    return [Segment(label, code, mask == i + 1, p.anatomy.model) for i, (label, code) in enumerate(LUNG_SEGMENTS)]


HEAD = Head(task="anatomy", summary="the lung fields and the cardiothoracic ratio", model_tasks=(SEGMENTATION,),
            default_model=DEFAULT_LUNG_MODEL, read=LungModel.segment, section="anatomy", draw=draw_anatomy,
            segments=lung_segments, train="radsight.train.anatomy:from_request",
            evaluate="radsight.evaluate.lungs:from_request")
