"""The anatomy head: the anatomy model at inference (ONNX Runtime): the lung fields, and with a multi-structure
model the heart and clavicles; the CTR (from the heart where it is outlined, else from the lungs' inner borders) for
the reader, drawn on the overlay and given to the DICOM Segmentation; the thorax crop for models that read only the
thorax, and the lung-masked view for models that read it."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsight.core import Anatomy, CardiothoracicRatio, ModelRef, Prediction, Radiograph
from radsight.heads.base import Head, Segment
from radsight.heads.heart_geometry import clavicle_doubt, heart_doubt, heart_ratio, largest_region, structure
from radsight.heads.landmarks import Placement, read_positions
from radsight.heads.lung_geometry import (
    LEFT,
    RIGHT,
    cardiothoracic_ratio,
    grade,
    label_lungs,
    lung_fields,
    opacity_doubt,
    thorax_box,
)
from radsight.inputs.preprocess import Crop, prepare, resize, working_size
from radsight.models.config import SEGMENTATION, ModelConfig
from radsight.models.store import DEFAULT_LUNG_MODEL, get_model
from radsight.runtime.onnx import Segmenter

ANATOMY_GRID = 512  # outlines are measured on a grid this long: finer than heatmaps need
# A multi-structure model's output channels, in order (a lung model's one channel is "lung")
STRUCTURES = ("right_lung", "left_lung", "heart", "right_clavicle", "left_clavicle")


@dataclass
class LungResult:
    anatomy: Anatomy
    labels: np.ndarray  # the anatomy grid: 0 none, 1 right lung, 2 left lung
    probability: np.ndarray  # the model's lung probability on its own (S, S) input grid
    masks: dict[str, np.ndarray] | None = None  # heart and clavicles on the anatomy grid (a multi-structure model)


class LungModel:
    def __init__(self, lung_model: str | ModelConfig = DEFAULT_LUNG_MODEL, threads: int = 0, device: str = "auto"):
        self.cfg = lung_model if isinstance(lung_model, ModelConfig) else get_model(lung_model)
        self.segmenter = Segmenter(self.cfg, threads, device)
        self.landmarks = read_positions(self.cfg.directory)  # fitted shares and shape models; none: equal arcs

    def segment(self, image: Radiograph) -> LungResult:
        """Lung fields (and heart and clavicles) and CTR, the lung labels on the anatomy grid, and the raw lung
        probability map."""
        maps = self.segmenter(prepare(image, self.cfg.input)[0][None])[0].astype(np.float32)
        multi = tuple(self.cfg.labels) == STRUCTURES
        prob = np.maximum(maps[0], maps[1]) if multi else maps[0]
        grid = working_size(image.height, image.width, ANATOMY_GRID)
        labels, reason = label_lungs(resize(prob, *grid))
        anatomy = Anatomy(model=ModelRef(self.cfg.name, self.cfg.version), plausible=reason is None, reason=reason)
        masks = {name: largest_region(resize(maps[STRUCTURES.index(name)], *grid))
                 for name in STRUCTURES[2:]} if multi else None
        if reason is None:
            spacing, view = image.meta.pixel_spacing_mm, image.meta.view_position
            anatomy.lungs = lung_fields(labels, image.height, image.width, spacing)
            if masks is not None:
                self._structures(anatomy, masks, labels, image)
            anatomy.landmarks = outline_landmarks(anatomy, self.landmarks)
            heart_ok = anatomy.heart is not None and anatomy.heart.plausible
            anatomy.ctr = heart_ratio(masks["heart"], labels, image.height, image.width, view) if heart_ok \
                else cardiothoracic_ratio(labels, image.height, image.width, view)
            if anatomy.ctr is not None and anatomy.ctr.value is not None:  # the film is read only for a value
                opaque = opacity_doubt(resize(image.pixels, *grid), labels)
                if opaque is not None:
                    anatomy.ctr = CardiothoracicRatio(None, None, None, None, None, None, reason=opaque,
                                                      method=anatomy.ctr.method)
            if anatomy.ctr is not None:
                grade(with_mm(anatomy.ctr, spacing), view, image.meta.stated_age_years)
        return LungResult(anatomy, labels, prob, masks)

    @staticmethod
    def _structures(anatomy: Anatomy, masks: dict[str, np.ndarray], labels: np.ndarray, image: Radiograph) -> None:
        lungs, size, spacing = labels > 0, (image.height, image.width), image.meta.pixel_spacing_mm
        anatomy.heart = structure("heart", masks["heart"], *size, spacing, heart_doubt(masks["heart"], lungs))
        anatomy.clavicles = [
            structure(f"{side} clavicle", masks[f"{side}_clavicle"], *size, spacing,
                      clavicle_doubt(masks[f"{side}_clavicle"], labels == value, side))
            for side, value in (("right", RIGHT), ("left", LEFT))]

    def box(self, image: Radiograph, found: LungResult | None = None) -> Crop | None:
        """Where the thorax lies; None (the whole image) when the lungs are not plausible."""
        found = found or self.segment(image)
        return thorax_box(found.labels, image.height, image.width) if found.anatomy.plausible else None


def structure_outlines(anatomy: Anatomy) -> dict[str, list[tuple[float, float]]]:
    """Each plausible structure's outline, by its landmark set's name (``right_lung``, ``heart``...)."""
    outlines = {f"{lung.side}_lung": lung.polygon for lung in anatomy.lungs}
    outlines.update((s.name.replace(" ", "_"), s.polygon)
                    for s in ([anatomy.heart] if anatomy.heart else []) + anatomy.clavicles if s.plausible)
    return {name: polygon for name, polygon in outlines.items() if len(polygon) > 2}


def outline_landmarks(anatomy: Anatomy, placement: Placement = Placement()) -> dict[str, list[tuple[float, float]]]:
    """Each plausible structure's landmarks placed on its outline (``heads.landmarks``), named with spaces."""
    return {name.replace("_", " "): placement.place(polygon, name)
            for name, polygon in structure_outlines(anatomy).items()}


def with_mm(ctr, spacing_mm: tuple[float, float] | None):
    """The CTR's diameters in mm too, where the pixel spacing is known (columns: horizontal distances)."""
    if ctr is not None and ctr.value is not None and spacing_mm:
        ctr.cardiac_mm, ctr.thoracic_mm = ctr.cardiac_px * spacing_mm[1], ctr.thoracic_px * spacing_mm[1]
    return ctr


# Lung fields (and heart) cover at least 6.8% of every frontal film measured (train64, lung-masks-public and RSNA val,
# JSRT) and a film with one hemithorax whited out about half as much; drawings, CT, ultrasound and photographs mostly
# none (radsight-nih64-demo's model card).
MIN_THORAX_SHARE = 0.02
NO_THORAX = "no thoracic anatomy found (no lung field, no heart): not a chest radiograph"


def thoracic_anatomy_absent(found: LungResult) -> str | None:
    """Why ``found`` shows no thorax at all, or None: the lung model's fields (and the heart, with a model that
    outlines it) over less than :data:`MIN_THORAX_SHARE` of the image. One lung field alone is a thorax."""
    share = float((found.probability >= 0.5).mean())
    if found.masks is not None:
        share += float(found.masks["heart"].mean())
    return NO_THORAX if share < MIN_THORAX_SHARE else None


def lung_masked(pixels: np.ndarray, probability: np.ndarray) -> np.ndarray:
    """The radiograph with everything outside the lung model's fields (probability >= 0.5) set to black."""
    inside = resize(probability, *pixels.shape) >= 0.5
    return np.where(inside, pixels, np.float32(0)).astype(np.float32)


LUNG_COLOUR, THORAX_COLOUR, HEART_COLOUR, CLAVICLE_COLOUR = (0, 220, 255), (255, 255, 255), (255, 140, 0), (255, 0, 255)
# The lung fields: segment label and SNOMED CT code, in the lung mask's label order (1 right, 2 left).
LUNG_SEGMENTS = (("right lung", ("3341006", "SCT", "Right lung")), ("left lung", ("44029006", "SCT", "Left lung")))
HEART_CODE, CLAVICLE_CODE = ("80891009", "SCT", "Heart"), ("51299004", "SCT", "Clavicle")
SIDES = {"right": ("24028007", "SCT", "Right"), "left": ("7771000", "SCT", "Left")}


def draw_anatomy(draw, prediction: Prediction, scale: float, w: int, h: int) -> None:
    """The lung, heart and clavicle outlines and, when measured, the CTR's thoracic and cardiac lines."""
    anatomy = prediction.anatomy
    if anatomy is None:
        return
    width = max(2, w // 400)
    outlined = [(lung.polygon, LUNG_COLOUR) for lung in anatomy.lungs]
    outlined += [(s.polygon, HEART_COLOUR if s.name == "heart" else CLAVICLE_COLOUR)
                 for s in ([anatomy.heart] if anatomy.heart else []) + anatomy.clavicles if s.plausible]
    for polygon, colour in outlined:
        points = [(x * scale, y * scale) for x, y in polygon]
        if len(points) > 2:
            draw.line(points + points[:1], fill=colour, width=width)
    for name, points in anatomy.landmarks.items():
        colour = LUNG_COLOUR if "lung" in name else HEART_COLOUR if name == "heart" else CLAVICLE_COLOUR
        for x, y in points:
            r = width + 1
            draw.ellipse([x * scale - r, y * scale - r, x * scale + r, y * scale + r], outline=colour, width=1)
    if anatomy.ctr is not None and anatomy.ctr.value is not None:
        for line, colour in ((anatomy.ctr.thoracic_line, THORAX_COLOUR), (anatomy.ctr.cardiac_line, HEART_COLOUR)):
            (x0, y0), (x1, y1) = line
            draw.line([(x0 * scale, y0 * scale), (x1 * scale, y1 * scale)], fill=colour, width=width)
            for x, y in ((x0, y0), (x1, y1)):
                draw.line([(x * scale, y * scale - 6), (x * scale, y * scale + 6)], fill=colour, width=width)


def lung_segments(p: Prediction) -> list[Segment]:
    """The right and left lung fields on the image's pixel grid, and the heart and clavicles whose outlines are
    plausible; none when the lungs are not plausible."""
    if p.anatomy is None or not p.anatomy.plausible or p.lung_mask is None:
        return []
    from PIL import Image

    def full(mask: np.ndarray) -> np.ndarray:
        return np.asarray(Image.fromarray(mask).resize((p.width, p.height), Image.Resampling.NEAREST))
    labels, model = full(p.lung_mask), p.anatomy.model
    found = [Segment(label, code, labels == i + 1, model) for i, (label, code) in enumerate(LUNG_SEGMENTS)]
    masks = p.structure_masks or {}
    if p.anatomy.heart is not None and p.anatomy.heart.plausible and "heart" in masks:
        found.append(Segment("heart", HEART_CODE, full(masks["heart"]), model))
    for clavicle in p.anatomy.clavicles:
        side = clavicle.name.split()[0]
        if clavicle.plausible and f"{side}_clavicle" in masks:
            found.append(Segment(clavicle.name, CLAVICLE_CODE, full(masks[f"{side}_clavicle"]), model,
                                 laterality=SIDES[side], organ=False))
    return found


HEAD = Head(task="anatomy", summary="the lung fields, heart and clavicles, and the cardiothoracic ratio", model_tasks=(SEGMENTATION,),
            default_model=DEFAULT_LUNG_MODEL, read=LungModel.segment, section="anatomy", draw=draw_anatomy,
            segments=lung_segments, train="radsight.train.anatomy:from_request",
            evaluate="radsight.evaluate.anatomy:from_request")
