"""The findings head: the 14 ChestX-ray14 findings from a classifier's probabilities, each against its calibrated
operating threshold, the normal/abnormal triage, and the findings' boxes on the overlay. Two-view models are
findings models that read a lateral beside the frontal. The ``abnormal`` head is its binary pretraining task."""
from __future__ import annotations

from radsight.core import FINDINGS, Finding, Prediction, Triage
from radsight.heads.base import Head
from radsight.heads.triage import UrgentPolicy, priority, threshold_scaled, urgent_checks
from radsight.models.config import TRIAGE_LABEL, ModelConfig
from radsight.models.store import DEFAULT_MODEL, DEFAULT_TRIAGE_MODEL

MAX_MAPS = 3  # more tints and boxes than this hide the film: the rest are listed in the legend only
# One colour a finding (colour-blind-aware where possible), the same in every overlay.
PALETTE = {
    name: colour for name, colour in zip(FINDINGS, [
        (230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178), (213, 94, 0),
        (204, 121, 167), (255, 60, 60), (170, 255, 120), (120, 200, 255), (255, 170, 200), (200, 170, 255),
        (255, 210, 140), (160, 160, 160)])
}
OTHER_COLOUR = (255, 255, 255)


def read_findings(cfg: ModelConfig, probabilities, lateral: bool = False) -> list[Finding]:
    """Each finding of ``cfg`` from one image's probabilities (the model's label order), against its threshold
    (``lateral``: a two-view model's, for a study read with its lateral); one the config's finding policy withholds
    (validated on too few positives or below its AUROC bar) is shown with the reason and never called positive."""
    out = []
    for name in cfg.findings:
        p, threshold, withheld = float(probabilities[cfg.labels.index(name)]), cfg.threshold(name, lateral), \
            cfg.withheld(name)
        out.append(Finding(name=name, probability=p, threshold=threshold, positive=p >= threshold and not withheld,
                           withheld=withheld))
    return out


def read_triage(cfg: ModelConfig, probabilities, findings: list[Finding], lateral: bool = False) -> Triage:
    """The triage score (the model's Abnormal output, else the finding furthest past its own threshold, on a scale
    where each threshold is 0.5), the urgent findings' own checks and the worklist priority."""
    if TRIAGE_LABEL in cfg.labels:
        abnormal = float(probabilities[cfg.labels.index(TRIAGE_LABEL)])
        threshold = cfg.threshold(TRIAGE_LABEL, lateral)
    else:
        abnormal, threshold = max(threshold_scaled(f.probability, f.threshold) for f in findings), 0.5
    urgent = urgent_checks(findings, cfg.urgent, UrgentPolicy.from_dict(cfg.urgent_policy))
    return Triage(abnormal_probability=abnormal, threshold=threshold, priority=priority(abnormal, threshold, urgent),
                  urgent=urgent)


def by_strength(findings: list[Finding]) -> list[Finding]:
    """Furthest past its own operating threshold first."""
    return sorted(findings, key=lambda f: -threshold_scaled(f.probability, f.threshold))


def shown_maps(prediction: Prediction) -> list[Finding]:
    """The findings whose heatmaps and boxes are drawn: the MAX_MAPS strongest positive ones, then, where there is
    room, those explained on request (below their thresholds)."""
    asked = [f for f in prediction.findings if not f.positive and f.name in prediction.heatmaps]
    return (by_strength(prediction.positives) + by_strength(asked))[:MAX_MAPS]


def draw_boxes(draw, prediction: Prediction, scale: float, w: int, h: int) -> None:
    """The shown findings' boxes, each labelled with its name and probability in its colour."""
    from PIL import ImageFont
    font = ImageFont.load_default(size=max(12, w // 60))
    placed: list[tuple[float, float, float, float]] = []
    for finding in shown_maps(prediction):
        colour = PALETTE.get(finding.name, OTHER_COLOUR)
        for box in finding.boxes:
            x0, y0 = box.x * scale, box.y * scale
            x1, y1 = (box.x + box.width) * scale, (box.y + box.height) * scale
            draw.rectangle([x0, y0, x1, y1], outline=colour, width=max(2, w // 400))
            text = f"{finding.name.replace('_', ' ')} {finding.probability:.2f}"
            at = _label_place(draw, text, font, x0, y0, w, h, placed)
            draw.text(at, text, fill=colour, font=font, stroke_width=2, stroke_fill=(0, 0, 0))


def _label_place(draw, text: str, font, x0: float, y0: float, w: int, h: int,
                 placed: list[tuple[float, float, float, float]]) -> tuple[float, float]:
    """Where a box's label goes: above its top-left corner, inside the picture, moved down past labels
    already placed; its rectangle is added to ``placed``."""
    tw, th = draw.textlength(text, font=font), font.size + 4
    x, y = min(x0 + 3, max(0.0, w - tw - 3)), max(0.0, y0 - th)
    while any(x < r[2] and r[0] < x + tw and y < r[3] and r[1] < y + th for r in placed) and y + 2 * th < h:
        y += th
    placed.append((x, y, x + tw, y + th))
    return x, y


HEAD = Head(task="findings", summary="the 14 ChestX-ray14 findings and the triage, with heatmaps and boxes",
            model_tasks=("classification",), default_model=DEFAULT_MODEL, read=read_findings, section="findings",
            draw=draw_boxes, train="radsight.train.loop:from_request",
            evaluate="radsight.evaluate.findings:from_request")
ABNORMAL = Head(task="abnormal", summary="normal/abnormal: the triage model, and the binary pretraining of the "
                "findings classifier", model_tasks=("classification",), default_model=DEFAULT_TRIAGE_MODEL,
                read=read_triage, section="triage", train="radsight.train.loop:from_request",
                evaluate="radsight.evaluate.triage:from_request")
