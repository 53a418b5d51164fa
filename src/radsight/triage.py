"""Worklist priority from the triage score and the positive findings."""
from __future__ import annotations

from radsight.core import Finding

# Findings that move a study to the top of the list when positive: they can need action within hours.
URGENT_FINDINGS = frozenset({"Pneumothorax"})
PRIORITY_ORDER = ("urgent", "high", "routine")


def priority(abnormal_probability: float, threshold: float, findings: list[Finding]) -> str:
    if any(f.positive and f.name in URGENT_FINDINGS for f in findings):
        return "urgent"
    return "high" if abnormal_probability >= threshold else "routine"


def threshold_scaled(probability: float, threshold: float) -> float:
    """Piecewise-linear map of [0, t] to [0, 0.5] and [t, 1] to [0.5, 1] (torchxrayvision's ``op_norm``)."""
    if not 0.0 < threshold < 1.0:
        return probability
    if probability < threshold:
        return probability / (2 * threshold)
    return 1.0 - (1.0 - probability) / (2 * (1.0 - threshold))


def reading_order_key(priority_name: str, abnormal_probability: float) -> tuple[int, float]:
    """Sort key: urgent before high before routine, then the more likely abnormal first."""
    return PRIORITY_ORDER.index(priority_name), -abnormal_probability
