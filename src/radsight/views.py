"""Which view a radiograph is: frontal (PA/AP) or lateral, from its DICOM header, or from the learned view
classifier (``radsight.view_model``) where there is no header; and whether the two agree."""
from __future__ import annotations

from dataclasses import dataclass

from radsight.core import ImageMeta, ViewCall

FRONTAL, LATERAL = "frontal", "lateral"
LATERAL_NAMES = {"l", "ll", "rl", "lat", "lateral"}  # a manifest's ``view`` column; anything else is frontal
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
