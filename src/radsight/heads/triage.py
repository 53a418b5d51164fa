"""Worklist priority from the triage score and the urgent findings' own operating points.

A finding that can need action within hours (pneumothorax) makes a study urgent only at an operating point of
its own, chosen on a validation split for a target specificity (``radsight calibrate``) and stored in the
model config beside the ordinary threshold. The flag is withheld, with the reason in the JSON, when the
model has no such point or when its validated AUROC, specificity or number of positives falls below the
bars of the config's ``urgent_policy``: an urgent flag must mean something.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from radsight.core import Finding, ModelRef, Triage, UrgentCheck
from radsight.models.config import TRIAGE_LABEL, ModelConfig

URGENT_FINDINGS = ("Pneumothorax",)
PRIORITY_ORDER = ("urgent", "high", "routine")


@dataclass(frozen=True)
class UrgentPolicy:
    target_specificity: float = 0.95  # the urgent operating point's specificity on the validation split
    min_auroc: float = 0.80  # validated AUROC below this: the flag is withheld
    min_specificity: float = 0.90  # validated specificity below this (too few negatives to reach the target)
    min_positives: int = 5  # fewer validation positives: no operating point can be trusted

    @classmethod
    def from_dict(cls, data: dict | None) -> UrgentPolicy:
        return cls(**(data or {}))

    def to_dict(self) -> dict:
        return asdict(self)



def withheld_reason(point: dict | None, policy: UrgentPolicy) -> str | None:
    """Why a finding cannot make a study urgent with this model; None when its urgent flag is in force."""
    if not point or point.get("threshold") is None:
        return "the model has no urgent operating point validated for it"
    if point["n_pos"] < policy.min_positives:
        return f"validated on {point['n_pos']} positives (fewer than {policy.min_positives})"
    if point["auroc"] < policy.min_auroc:
        return f"validated AUROC {point['auroc']:.2f} is below {policy.min_auroc:.2f}"
    if point["specificity"] < policy.min_specificity:
        return f"validated specificity {point['specificity']:.2f} is below {policy.min_specificity:.2f}"
    return None


def describe_point(label: str, point: dict | None, policy: UrgentPolicy) -> str:
    """One line for a reader of ``calibrate`` or a model card."""
    reason = withheld_reason(point, policy)
    if not point or point.get("threshold") is None:
        return f"{label}: {reason}"
    return (f"{label}: urgent at p >= {point['threshold']:.3f} (validated on {point['n_pos']} positives, "
            f"{point['n_neg']} negatives: AUROC {point['auroc']:.3f}, sensitivity {point['sensitivity']:.2f}, "
            f"specificity {point['specificity']:.2f}); " + (f"withheld: {reason}" if reason else "in force"))


def urgent_checks(findings: list[Finding], points: dict[str, dict], policy: UrgentPolicy) -> list[UrgentCheck]:
    checks = []
    for f in findings:
        if f.name not in URGENT_FINDINGS:
            continue
        point, reason = points.get(f.name), withheld_reason(points.get(f.name), policy)
        threshold = point.get("threshold") if point else None
        checks.append(UrgentCheck(finding=f.name, threshold=threshold, withheld=reason,
                                  flagged=reason is None and f.probability >= threshold))
    return checks


def priority(abnormal_probability: float, threshold: float, urgent: list[UrgentCheck]) -> str:
    if any(check.flagged for check in urgent):
        return "urgent"
    return "high" if abnormal_probability >= threshold else "routine"


def threshold_scaled(probability: float, threshold: float) -> float:
    """Piecewise-linear map of [0, t] to [0, 0.5] and [t, 1] to [0.5, 1] (torchxrayvision's ``op_norm``)."""
    if not 0.0 < threshold < 1.0:
        return probability
    if probability < threshold:
        return probability / (2 * threshold)
    return 1.0 - (1.0 - probability) / (2 * (1.0 - threshold))


class TriageModel:
    """A normal/abnormal model (its one output ``Abnormal``) whose score, at its own threshold, gives the worklist
    priority in place of the findings model's triage output; the urgent findings' checks stay the findings
    model's. It reads the thorax the lung model found when its input says so."""

    def __init__(self, model: str | ModelConfig, threads: int = 0, device: str = "auto"):
        from radsight.models.store import get_model
        from radsight.runtime.onnx import Classifier
        self.cfg = model if isinstance(model, ModelConfig) else get_model(model)
        if TRIAGE_LABEL not in self.cfg.labels:
            raise ValueError(f"model {self.cfg.name} has no {TRIAGE_LABEL} output: it cannot triage")
        self.classifier = Classifier(self.cfg, threads, device, spin=False)  # run beside the findings' classifier

    @property
    def reads_thorax(self) -> bool:
        return self.cfg.input.region == "thorax"

    def score(self, image, box) -> tuple[float, np.ndarray, object]:
        """The Abnormal probability of ``image`` (``box``: the thorax to crop to, or None), its CAM on the model's
        grid and the crop read."""
        from radsight.inputs.preprocess import prepare
        x, crop = prepare(image, self.cfg.input, box if self.reads_thorax else None)
        out = self.classifier(x[None])
        j = self.cfg.labels.index(TRIAGE_LABEL)
        return float(out["probabilities"][0, j]), out["cams"][0, j], crop

    def triage(self, probability: float, urgent: list[UrgentCheck]) -> Triage:
        threshold = self.cfg.threshold(TRIAGE_LABEL)
        return Triage(abnormal_probability=probability, threshold=threshold,
                      priority=priority(probability, threshold, urgent), urgent=urgent,
                      model=ModelRef(self.cfg.name, self.cfg.version))
