"""The view head: frontal (PA/AP) or lateral, from the DICOM header or, where the header is silent, from the learned
view classifier (P(lateral), ONNX Runtime), and whether the two agree."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsight.core import FRONTAL, LATERAL, ImageMeta, Radiograph, ViewCall
from radsight.heads.base import Head
from radsight.inputs.preprocess import prepare
from radsight.models.config import VIEW_CLASSIFICATION, ModelConfig
from radsight.models.store import DEFAULT_VIEW_MODEL, get_model
from radsight.runtime.onnx import Helper, sigmoid

NO_VIEW = "the header names no view and no view classifier is installed"

# ViewPosition (0018,5101) defined terms and the spellings met in archives.
FRONTAL_POSITIONS = {"PA", "AP", "AP SUPINE", "PA ERECT", "AP ERECT"}
LATERAL_POSITIONS = {"LL", "RL", "LAT", "LATERAL", "LLAT", "RLAT"}
OTHER_POSITIONS = {"RLD": "right lateral decubitus", "LLD": "left lateral decubitus", "RAO": "oblique",
                   "LAO": "oblique", "RPO": "oblique", "LPO": "oblique", "RLO": "oblique", "LLO": "oblique"}


@dataclass(frozen=True)
class HeaderView:
    """What the header says: ``view`` (frontal, lateral, or None when it names neither) and the element that
    says it (``evidence``), or why the image is neither (``other``: a decubitus or oblique film)."""

    view: str | None
    evidence: str | None = None
    other: str | None = None


def header_view(meta: ImageMeta) -> HeaderView:
    """The view as the DICOM header gives it: ViewPosition, else ViewCodeSequence's meaning, else the row
    direction of PatientOrientation (towards the patient's left or right: frontal; anterior or posterior:
    lateral). ImageLaterality names the side of a paired organ, not the projection, and is not read."""
    position = (meta.view_position or "").upper()
    if position in FRONTAL_POSITIONS:
        return HeaderView(FRONTAL, f"ViewPosition {position}")
    if position in LATERAL_POSITIONS:
        return HeaderView(LATERAL, f"ViewPosition {position}")
    if position in OTHER_POSITIONS:
        return HeaderView(None, f"ViewPosition {position}", OTHER_POSITIONS[position])
    code = (meta.view_code or "").lower()
    if code:
        if "decubitus" in code or "oblique" in code:
            return HeaderView(None, f"ViewCodeSequence {meta.view_code!r}", code)
        if "lateral" in code:
            return HeaderView(LATERAL, f"ViewCodeSequence {meta.view_code!r}")
        if "postero-anterior" in code or "antero-posterior" in code or "frontal" in code:
            return HeaderView(FRONTAL, f"ViewCodeSequence {meta.view_code!r}")
    rows = (meta.patient_orientation or "").split("\\")[0][:1]
    if rows in ("L", "R"):
        return HeaderView(FRONTAL, f"PatientOrientation {meta.patient_orientation}")
    if rows in ("A", "P"):
        return HeaderView(LATERAL, f"PatientOrientation {meta.patient_orientation}")
    return HeaderView(None)


def decide(meta: ImageMeta, lateral_probability: float | None, threshold: float = 0.5) -> ViewCall | str:
    """The view from the header when it gives one, else from the classifier; the header wins a contradiction,
    which is reported. Returns the reason the image has no usable view instead (a decubitus or oblique film,
    or no header view and no classifier)."""
    said = header_view(meta)
    if said.other:
        return f"{said.other} film ({said.evidence}); radsight reads frontal and lateral views"
    by_classifier = None if lateral_probability is None else (LATERAL if lateral_probability >= threshold
                                                               else FRONTAL)
    if said.view is not None:
        call = ViewCall(said.view, "header", said.evidence, lateral_probability)
        if by_classifier is not None and by_classifier != said.view:
            call.disagreement = (f"the header says {said.view} ({said.evidence}); the view classifier says "
                                 f"{by_classifier} (P(lateral) {lateral_probability:.2f})")
        return call
    if by_classifier is None:
        return NO_VIEW
    return ViewCall(by_classifier, "classifier", None, lateral_probability)


class ViewModel:
    """P(lateral) by a view-classification model; ``threshold``: the operating point its config stores."""

    def __init__(self, model: str | ModelConfig, threads: int = 0, device: str = "auto"):
        self.cfg = model if isinstance(model, ModelConfig) else get_model(model)
        if self.cfg.task != VIEW_CLASSIFICATION:
            raise ValueError(f"model {self.cfg.name} is a {self.cfg.task} model, not a view classifier")
        self.session = Helper(self.cfg, threads, device)
        self.threshold = self.cfg.threshold("lateral")

    def lateral_probability(self, image: Radiograph) -> float:
        x, _ = prepare(image, self.cfg.input)
        return float(sigmoid(self.session.run(x[None])["lateral_logit"].astype(np.float64))[0, 0])


HEAD = Head(task="view", summary="frontal or lateral, from the header or the view classifier",
            model_tasks=(VIEW_CLASSIFICATION,), default_model=DEFAULT_VIEW_MODEL, read=decide, section="view",
            train="radsight.train.view:from_request", evaluate="radsight.evaluate.view:from_request")
