"""The nodule head: a dense detector's centre map and radius map (ONNX Runtime) -> points with a radius and a
score, searched for only where lung lies (``lung_geometry.nodule_region``: the lung fields, the lung behind the
heart and below the dome), duplicates suppressed, kept above the operating point chosen on validation films."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from radsight.core import Detection, Detections, ModelRef, Prediction, Radiograph
from radsight.heads.base import Head
from radsight.heads.lung_geometry import nodule_region
from radsight.inputs.preprocess import resize
from radsight.models.config import NODULE_DETECTION, ModelConfig
from radsight.runtime.onnx import sigmoid

DEFAULT_NODULE_MODEL = "radsight-nodule-det"
NODULE_COLOUR = (255, 220, 0)
CANDIDATES = 20  # at most this many points a film before the operating point
MIN_SCORE = 0.02
NO_LUNGS = "no plausible lung fields (or no lung model ran): nodules are searched for only where lung lies"


def decode(centre_logits: np.ndarray, log_radius: np.ndarray, region: np.ndarray | None = None,
           min_score: float = MIN_SCORE, top: int = CANDIDATES) -> list[tuple[float, float, float, float]]:
    """Points (x, y, radius, score) on the model's grid: the local maxima of the centre map (3x3) inside
    ``region`` (resized to the grid), best first, a point dropped when it lies within a better one's radius (or
    3 pixels)."""
    score = sigmoid(centre_logits.astype(np.float64))
    peaks = (score == ndimage.maximum_filter(score, size=3)) & (score >= min_score)
    if region is not None:
        peaks &= resize(region.astype(np.float32), *score.shape) >= 0.5
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-score[ys, xs], kind="stable")
    kept: list[tuple[float, float, float, float]] = []
    for i in order:
        y, x = int(ys[i]), int(xs[i])
        radius = float(np.exp(log_radius[y, x]))
        if all((x - kx) ** 2 + (y - ky) ** 2 > max(kr, 3.0) ** 2 for kx, ky, kr, _ in kept):
            kept.append((float(x), float(y), radius, float(score[y, x])))
        if len(kept) == top:
            break
    return kept


def location(labels: np.ndarray, x: float, y: float) -> str:
    """Where a point (on the labels' grid) lies: in the right or left lung field, below the fields' bases on its
    side (behind the diaphragm's dome), or between the fields (behind the heart)."""
    label = labels[min(int(y), labels.shape[0] - 1), min(int(x), labels.shape[1] - 1)]
    if label:
        return "right lung" if label == 1 else "left lung"
    rows = np.flatnonzero(labels[:, min(int(x), labels.shape[1] - 1)] > 0)
    return "subdiaphragmatic" if len(rows) and y > rows[-1] else "retrocardiac"


def read_nodules(cfg: ModelConfig, outputs: dict[str, np.ndarray], image: Radiograph,
                 lungs: np.ndarray | None = None) -> Detections:
    """The detections above the model's operating point, in the image's pixels; none, with the reason, where no
    plausible lung fields were found (``lungs``: their labels on the anatomy grid)."""
    ref, threshold = ModelRef(cfg.name, cfg.version), float(cfg.fitted.get("threshold", 0.5))
    if lungs is None or not (lungs > 0).any():
        return Detections(ref, threshold, reason=NO_LUNGS)
    maps = outputs["nodule_maps"][0]
    found = decode(maps[0], maps[1], nodule_region(lungs))
    size = maps.shape[-1]
    sx, sy = image.width / size, image.height / size
    spacing = image.meta.pixel_spacing_mm
    out = []
    for x, y, radius, score in found:
        if score < threshold:
            continue
        radius_px = radius * (sx + sy) / 2
        ly, lx = y * lungs.shape[0] / size, x * lungs.shape[1] / size
        out.append(Detection(x=round(x * sx, 1), y=round(y * sy, 1), radius_px=round(radius_px, 1),
                             diameter_mm=None if spacing is None else round(2 * radius_px * float(np.mean(spacing)), 1),
                             score=round(score, 4), location=location(lungs, lx, ly)))
    return Detections(ref, threshold, out)


def draw_nodules(draw, prediction: Prediction, scale: float, w: int, h: int) -> None:
    found = prediction.sections.get("nodules")
    if found is None:
        return
    width = max(2, w // 400)
    for d in found.detections:
        r = d.radius_px * scale + 3
        x, y = d.x * scale, d.y * scale
        draw.ellipse([x - r, y - r, x + r, y + r], outline=NODULE_COLOUR, width=width)
        draw.text((x + r + 2, y - r), f"nodule {d.score:.2f}", fill=NODULE_COLOUR)


HEAD = Head(task="nodules", summary="nodules found as points with a radius and a score",
            model_tasks=(NODULE_DETECTION,), default_model=DEFAULT_NODULE_MODEL, read=read_nodules,
            section="nodules", draw=draw_nodules, train="radsight.train.nodules:from_request",
            evaluate="radsight.evaluate.nodules:from_request", on_each_image=True, reads_lungs=True)
