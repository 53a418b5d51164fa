"""Localization against radiologists' boxes, as in Wang et al. 2017 (ChestX-ray8).

A ground-truth box counts as found at T(IoU) = t when a predicted box of the same finding overlaps it
with IoU > t, and at T(IoBB) = t when intersection / predicted-box area > t. The pointing game asks
whether the heatmap's maximum lies inside the box.
"""
from __future__ import annotations

import numpy as np

IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)

XYWH = tuple[float, float, float, float]


def _intersection(a: XYWH, b: XYWH) -> float:
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    return max(0.0, w) * max(0.0, h)


def iou(a: XYWH, b: XYWH) -> float:
    inter = _intersection(a, b)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def iobb(truth: XYWH, predicted: XYWH) -> float:
    """Intersection over the predicted ("detected") box's area."""
    area = predicted[2] * predicted[3]
    return _intersection(truth, predicted) / area if area > 0 else 0.0


def pointing_hit(heat: np.ndarray, truth: XYWH, image_height: int, image_width: int) -> bool:
    """Whether the heatmap's maximum (heat on any grid with the image's aspect) falls inside the box."""
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    y = (row + 0.5) * image_height / heat.shape[0]
    x = (col + 0.5) * image_width / heat.shape[1]
    return truth[0] <= x <= truth[0] + truth[2] and truth[1] <= y <= truth[1] + truth[3]


def localization_summary(cases: list[dict]) -> dict:
    """``cases``: one a ground-truth box: {finding, truth, predicted: [XYWH], pointing: bool}.

    Returns per finding and overall: box count, T(IoU) and T(IoBB) accuracy at each threshold, pointing game.
    """
    def summarise(group: list[dict]) -> dict:
        best_iou = [max((iou(c["truth"], p) for p in c["predicted"]), default=0.0) for c in group]
        best_iobb = [max((iobb(c["truth"], p) for p in c["predicted"]), default=0.0) for c in group]
        return {"boxes": len(group),
                "iou": {f"{t:.1f}": float(np.mean([v > t for v in best_iou])) for t in IOU_THRESHOLDS},
                "iobb": {f"{t:.1f}": float(np.mean([v > t for v in best_iobb])) for t in IOU_THRESHOLDS},
                "pointing_game": float(np.mean([c["pointing"] for c in group]))}

    findings = sorted({c["finding"] for c in cases})
    out = {f: summarise([c for c in cases if c["finding"] == f]) for f in findings}
    if cases:
        out["overall"] = summarise(cases)
    return out


def box_cases(prediction, truth: dict[str, list], image_height: int, image_width: int) -> list[dict]:
    """The cases of :func:`localization_summary` for one image: each radiologist's box of ``truth`` (finding ->
    boxes) with the predicted boxes of that finding and whether its heatmap's maximum points inside; findings
    the prediction has no heatmap for are left out."""
    out = []
    for finding, boxes in truth.items():
        if finding in prediction.heatmaps:
            predicted = [(b.x, b.y, b.width, b.height) for b in prediction.finding(finding).boxes]
            out += [{"finding": finding, "truth": box, "predicted": predicted,
                     "pointing": pointing_hit(prediction.heatmaps[finding], box, image_height, image_width)}
                    for box in boxes]
    return out
