"""The typed core every layer shares: images, boxes, findings, predictions, errors."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

# ChestX-ray14 findings, NIH spellings, in NIH's label order.
FINDINGS: tuple[str, ...] = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)

# The views radsight reads: a frontal (PA or AP) film, and a lateral one beside it.
FRONTAL, LATERAL = "frontal", "lateral"
LATERAL_NAMES = {"l", "ll", "rl", "lat", "lateral"}  # a manifest's ``view`` column; anything else is frontal

# Other spellings met in NIH files (BBox_List_2017 says "Infiltrate").
FINDING_ALIASES: dict[str, str] = {"Infiltrate": "Infiltration", "Pleural Thickening": "Pleural_Thickening"}


class InputError(ValueError):
    """An input that cannot be analyzed; the message names the file and the reason."""

    def __init__(self, source: str, reason: str):
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self):  # pickled whole: errors come back from the processes of a run
        return type(self), (self.source, self.reason)


@dataclass
class ImageMeta:
    """What is known about how the image was acquired; never patient identifiers."""

    modality: str | None = None
    photometric: str | None = None  # as stored, before radsight's MONOCHROME2 normalisation
    bits_stored: int | None = None
    view_position: str | None = None  # PA, AP, LL, ...
    view_code: str | None = None  # ViewCodeSequence's code meaning ("postero-anterior", "left lateral", ...)
    patient_orientation: str | None = None  # PatientOrientation, e.g. "L\\F" (PA) or "A\\F" (lateral)
    body_part: str | None = None
    pixel_spacing_mm: tuple[float, float] | None = None  # (row, column); None when unknown
    transfer_syntax: str | None = None
    windowing: str | None = None  # how pixel values were mapped to [0, 1]
    # PatientAge in years, to grade what depends on age (a child's CTR); never written to results
    stated_age_years: float | None = field(default=None, repr=False)
    stated_sex: str | None = field(default=None, repr=False)  # PatientSex F or M, to check the film's apparent sex

    # what results never copy from the header (patient data radsight reads only to compare with)
    STATED = ("stated_age_years", "stated_sex")


def affine_float32(values: np.ndarray, scale: float, offset: float) -> np.ndarray:
    """``values * scale + offset`` as one new float32 array (films are large: no float64 temporaries)."""
    out = values.astype(np.float32)  # stored values (< 2**24) are exact in float32
    out *= np.float32(scale)
    out += np.float32(offset)
    return out


@dataclass
class Radiograph:
    """One radiograph under radsight's pixel contract.

    ``pixels`` is float32, shape (rows, cols), values in [0, 1], displayed as MONOCHROME2
    (0 = black = no attenuation, e.g. air in the lungs), after modality and VOI transforms.
    ``stored_values`` (DICOM only) is the pixel data as decoded, before any transform: scaled on demand by
    :meth:`model_pixels` for the models trained on it.
    """

    pixels: np.ndarray
    source: str
    meta: ImageMeta = field(default_factory=ImageMeta)
    stored_values: np.ndarray | None = field(default=None, repr=False)
    study_uid: str | None = field(default=None, repr=False)  # StudyInstanceUID: groups the views of one study
    instance_uid: str | None = field(default=None, repr=False)  # SOPInstanceUID: the same instance sent again
    header: Any = field(default=None, repr=False)  # DICOM: the dataset as read, less its pixel data (for results)

    def model_pixels(self, kind: str) -> np.ndarray:
        """``display`` pixels, or ``stored`` ones: stored values over 2**BitsStored - 1, MONOCHROME2, without
        modality or VOI transforms (torchxrayvision's reader). A PNG's values are both."""
        if kind != "stored" or self.stored_values is None:
            return self.pixels
        top = float(2 ** self.meta.bits_stored - 1)
        if self.meta.photometric == "MONOCHROME1":
            return affine_float32(self.stored_values, -1.0 / top, 1.0)
        return affine_float32(self.stored_values, 1.0 / top, 0.0)

    @property
    def from_dicom(self) -> bool:
        """Read from a DICOM file (its header names a modality): such an image gets DICOM results."""
        return self.meta.modality is not None

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


@dataclass
class ViewCall:
    """The view an image is read as, and how that was decided.

    ``source``: "header" or "classifier"; ``header``: what the header says (the element), when it says anything;
    ``classifier``: the view classifier's probability that the image is a lateral, when it ran; ``disagreement``:
    a sentence when header and classifier contradict each other."""

    view: str
    source: str
    header: str | None = None
    classifier: float | None = None
    disagreement: str | None = None


@dataclass
class Box:
    """An axis-aligned box in the original image's pixel coordinates."""

    x: float
    y: float
    width: float
    height: float
    score: float


@dataclass
class Finding:
    name: str
    probability: float
    threshold: float
    positive: bool
    boxes: list[Box] = field(default_factory=list)
    withheld: str | None = None  # why this finding is never called positive with this model (weak validation)


@dataclass
class UrgentCheck:
    """One finding that can make a study urgent, checked at its own high-specificity operating point."""

    finding: str
    threshold: float | None  # the urgent operating point; None when the model has none
    flagged: bool
    withheld: str | None = None  # why this finding cannot make a study urgent with this model


@dataclass
class OodCheck:
    """How far an image lies from the chest radiographs the model was fitted on (``radsight.heads.ood``); ``reason``:
    why it is refused whatever its score (no thoracic anatomy found in it)."""

    score: float | None  # None: the model has no gate (refused for its ``reason`` alone)
    threshold: float | None
    in_distribution: bool
    reason: str | None = None

    @property
    def why(self) -> str:
        """Why the image is refused, in words."""
        over = self.score is not None and self.threshold is not None and self.score > self.threshold
        return "; ".join(([self.reason] if self.reason else [])
                         + ([f"out-of-distribution score {self.score:.2f} > {self.threshold:.2f}"] if over else []))


@dataclass
class Triage:
    abnormal_probability: float
    threshold: float
    priority: str  # "urgent" | "high" | "routine"
    urgent: list[UrgentCheck] = field(default_factory=list)
    model: ModelRef | None = None  # the normal/abnormal model that scored it; None: the findings model


@dataclass
class ModelRef:
    name: str
    version: str


@dataclass
class LungField:
    side: str  # "right" or "left": the patient's side (image left is the patient's right on a PA film)
    polygon: list[tuple[float, float]]  # outline (x, y) in original image pixels
    area_px: float  # in original image pixels
    area_cm2: float | None = None  # when PixelSpacing is known


@dataclass
class CardiothoracicRatio:
    """The CTR and how it was measured; when the lung fields cannot be trusted to trace the heart borders,
    ``value`` and the measurements are None and ``reason`` says why."""

    value: float | None
    cardiac_px: float | None  # maximal horizontal cardiac diameter
    thoracic_px: float | None  # maximal internal thoracic diameter
    cardiac_line: tuple[tuple[float, float], tuple[float, float]] | None  # endpoints (x, y), original pixels
    thoracic_line: tuple[tuple[float, float], tuple[float, float]] | None
    enlarged: bool | None  # CTR > 0.5 on a PA view; None when the view is not known to be PA, or no value
    reason: str | None = None  # why no value is given
    method: str = "lung_borders"  # "heart": from the heart's outline; "lung_borders": from the lungs' inner borders
    not_graded: str | None = None  # why ``enlarged`` is None although there is a value (the view, a child's film)
    cardiac_mm: float | None = None  # the diameters in mm where the pixel spacing is known
    thoracic_mm: float | None = None


@dataclass
class Structure:
    """One outlined structure besides the lungs (the heart, a clavicle): where it is, how large, and whether its
    outline is one that structure can have (when not, ``reason`` says why and nothing is measured from it)."""

    name: str  # "heart", "right clavicle", "left clavicle" (the patient's side)
    polygon: list[tuple[float, float]]  # outline (x, y) in original image pixels; empty when none was found
    area_px: float
    plausible: bool
    reason: str | None = None
    area_cm2: float | None = None  # when PixelSpacing is known


OLDEST_WRITTEN = 89  # ages above it are written "90+" (no exact age over 89 leaves radsight)


def written_age(years: float) -> float | str:
    """An age as results write it: years to one decimal, or "90+" above :data:`OLDEST_WRITTEN`."""
    return "90+" if years > OLDEST_WRITTEN else round(float(years), 1)


@dataclass
class AgeEstimate:
    """The film's apparent age: ``estimate`` in years (bias-corrected), the 80% interval its validation residuals
    give, and ``gap``, the estimate's excess over the stated age (PatientAge) corrected for the gap's dependence
    on age; None without a stated age."""

    model: ModelRef
    estimate: float
    interval_80: tuple[float, float]
    gap: float | None = None

    def document(self) -> dict[str, Any]:
        return {"model": asdict(self.model), "estimate": written_age(self.estimate),
                "interval_80": [written_age(v) for v in self.interval_80],
                "gap": None if self.gap is None else round(self.gap, 1)}


@dataclass
class SexEstimate:
    """The film's apparent sex: ``probability_female``, and ``mismatch``: True when it confidently disagrees with
    the stated sex (PatientSex), at ``threshold`` (chosen for a 1% false-alarm rate on validation films); None
    without a stated sex. ``reason``: why there is no estimate (a model that gives none)."""

    model: ModelRef
    probability_female: float | None
    mismatch: bool | None = None
    threshold: float | None = None
    reason: str | None = None


@dataclass
class Detection:
    """One lesion a detector found: its centre and radius in the original image's pixels, its diameter in mm
    (None without pixel spacing), its score, and where it lies (right lung, left lung, retrocardiac,
    subdiaphragmatic)."""

    x: float
    y: float
    radius_px: float
    diameter_mm: float | None
    score: float
    location: str


@dataclass
class Detections:
    """A detector's findings above its operating ``threshold`` (chosen on validation films); ``reason`` says why
    nothing was searched (no lung fields found)."""

    model: ModelRef
    threshold: float
    detections: list[Detection] = field(default_factory=list)
    reason: str | None = None


@dataclass
class Anatomy:
    model: ModelRef
    plausible: bool
    reason: str | None = None  # why the segmentation is implausible
    lungs: list[LungField] = field(default_factory=list)
    ctr: CardiothoracicRatio | None = None
    heart: Structure | None = None  # with a model that outlines it
    clavicles: list[Structure] = field(default_factory=list)
    # outline landmarks of each plausible structure ("right lung", "heart"...), a fixed count in a fixed order
    landmarks: dict[str, list[tuple[float, float]]] = field(default_factory=dict)


@dataclass
class Prediction:
    source: str
    width: int
    height: int
    model: ModelRef
    triage: Triage
    findings: list[Finding]
    meta: ImageMeta = field(default_factory=ImageMeta)
    anatomy: Anatomy | None = None
    classifier_crop: list[int] | None = None  # x, y, width, height the classifier read, when not the whole image
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # name -> (h, w) in [0, 1]
    lung_mask: np.ndarray | None = field(default=None, repr=False)  # (h, w) uint8: 0 none, 1 right, 2 left
    structure_masks: dict[str, np.ndarray] | None = field(default=None, repr=False)  # heart, clavicles: bool (h, w)
    views: dict[str, np.ndarray] = field(default_factory=dict, repr=False)  # derived views at the image's size
    views_model: ModelRef | None = None  # the model that made ``views``
    ood: OodCheck | None = None  # None when the model has no out-of-distribution gate
    explanation: str | None = None  # the method that made ``heatmaps`` and the boxes (radsight.explain.METHODS)
    boxes_withheld: str | None = None  # why no finding has boxes (a map too coarse to localize)
    alternates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)  # method -> heatmaps
    view: ViewCall | None = None  # the view the image was read as, and how that was decided
    sections: dict[str, Any] = field(default_factory=dict)  # results of heads run on each image, by their section

    def finding(self, name: str) -> Finding:
        for f in self.findings:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def positives(self) -> list[Finding]:
        return [f for f in self.findings if f.positive]

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON document, less the names of files written beside it (``radsight.results``)."""
        out = asdict(replace(self, heatmaps={}, lung_mask=None, structure_masks=None, views={}, alternates={}))
        del out["heatmaps"], out["lung_mask"], out["structure_masks"], out["views"], out["views_model"]
        del out["alternates"]
        out["image"] = out.pop("meta")
        for name in ImageMeta.STATED:
            out["image"].pop(name, None)
        # each head's section at the top level, as the section's ``document()`` writes it where it has one
        out.update({k: v.document() if hasattr(v, "document") else out["sections"][k]
                    for k, v in self.sections.items()})
        del out["sections"]
        return out


@dataclass
class ViewResult:
    """One image of a study: the view it was read as; ``prediction`` holds the study's probabilities with this
    view's heatmaps, boxes and (frontal) anatomy, on this image's pixels. ``read`` is False, with ``reason``,
    for an image the model did not read (a second frontal, a view it does not take...)."""

    source: str
    view: ViewCall | None
    read: bool
    prediction: Prediction | None = None
    reason: str | None = None


@dataclass
class StudyPrediction:
    """One study's result: one set of findings, probabilities and triage from every view the model read."""

    study: str  # StudyInstanceUID, or the name the study was given
    model: ModelRef
    triage: Triage
    findings: list[Finding]  # boxes are per view (``views[i].prediction``)
    views: list[ViewResult]
    explanation: str | None = None
    ood: OodCheck | None = None  # the out-of-distribution check of the frontal read; None without a gate

    @property
    def positives(self) -> list[Finding]:
        return [f for f in self.findings if f.positive]
