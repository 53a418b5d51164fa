"""Free-response ROC for lesion detection (nodules): each detection is a point with a score; it hits a lesion when
its centre lies within max(diameter / 2, 10 mm) of the lesion's centre. A lesion counts once, found by its
best-scoring hit; further hits on it are ignored, not false positives; a detection hitting no lesion is a false
positive. Sensitivity at 1/8 ... 8 false positives per image, their mean (the competition performance metric,
CPM), and the image-level AUROC of each image's best score. No torch."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from radsight.evaluate.metrics import auroc

RATES = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)
MIN_RADIUS_MM = 10.0


@dataclass
class Case:
    """One image: its lesions (x, y, diameter in mm) and the detector's points (x, y, score), in pixels at
    ``spacing_mm`` a pixel."""

    lesions: list[tuple[float, float, float]]
    detections: list[tuple[float, float, float]]
    spacing_mm: float
    tags: list[dict] = field(default_factory=list)  # per lesion: subtlety, size group... for sensitivity by group


def reaches(x: float, y: float, lesion: tuple[float, float, float], spacing_mm: float) -> bool:
    """Whether a detection at (x, y) hits ``lesion`` (x, y, diameter mm): within max(diameter / 2, 10 mm)."""
    lx, ly, diameter = lesion
    return (x - lx) ** 2 + (y - ly) ** 2 <= (max(diameter / 2, MIN_RADIUS_MM) / spacing_mm) ** 2


@dataclass
class Marks:
    """Every detection of a case list, flattened: its score, its image, and the lesion it finds (a global lesion
    index, -1 for a false positive, -2 for a repeated hit that is ignored)."""

    scores: np.ndarray
    image: np.ndarray
    lesion: np.ndarray
    lesions: int
    images: int


def mark(cases: list[Case]) -> Marks:
    scores, image, lesion, first = [], [], [], 0
    for i, case in enumerate(cases):
        found: set[int] = set()
        for x, y, score in sorted(case.detections, key=lambda d: -d[2]):
            hit = -1
            for j, target in enumerate(case.lesions):
                if reaches(x, y, target, case.spacing_mm):
                    hit = -2 if j in found else first + j
                    if j not in found:
                        found.add(j)
                        break
            scores.append(score)
            image.append(i)
            lesion.append(hit)
        first += len(case.lesions)
    return Marks(np.asarray(scores, float), np.asarray(image, int), np.asarray(lesion, int), first, len(cases))


def froc_curve(marks: Marks, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positives per image, sensitivity, threshold) at each distinct score, descending; ``weights`` (one a
    image) weigh the images of a bootstrap resample."""
    w = np.ones(marks.images) if weights is None else np.asarray(weights, float)
    order = np.argsort(-marks.scores, kind="stable")
    s, img, les = marks.scores[order], marks.image[order], marks.lesion[order]
    fp = np.cumsum(np.where(les == -1, w[img], 0.0))
    tp = np.cumsum(np.where(les >= 0, w[img], 0.0))
    last = np.r_[s[1:] != s[:-1], True] if len(s) else np.zeros(0, bool)  # one point a distinct score
    return fp[last] / w.sum(), tp[last], s[last]


def sensitivities(cases: list[Case], weights: np.ndarray | None = None) -> dict[str, float]:
    """Sensitivity at each of :data:`RATES` false positives per image: the most lesions found at any threshold
    whose false positives per image do not exceed the rate."""
    marks = mark(cases)
    w = np.ones(len(cases)) if weights is None else np.asarray(weights, float)
    total = sum(w[i] * len(c.lesions) for i, c in enumerate(cases))
    fppi, found, _ = froc_curve(marks, w)
    out = {}
    for rate in RATES:
        within = found[fppi <= rate]
        out[f"{rate:g}"] = float(within.max() / total) if len(within) and total > 0 else 0.0
    return out


def image_scores(cases: list[Case]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's best detection score (0 without any) and whether it holds a lesion."""
    return (np.asarray([max((d[2] for d in c.detections), default=0.0) for c in cases]),
            np.asarray([float(bool(c.lesions)) for c in cases]))


def threshold_at(cases: list[Case], rate: float) -> float:
    """The lowest score threshold at which the detections' false positives per image stay within ``rate``."""
    fppi, _, thresholds = froc_curve(mark(cases))
    within = thresholds[fppi <= rate]
    return float(within.min()) if len(within) else float("inf")


def froc(cases: list[Case], bootstrap: int = 1000, seed: int = 0) -> dict:
    """``sensitivity`` by rate, ``cpm``, ``image_auroc``, with 95% CIs (``..._ci``) from a bootstrap over cases."""
    sens = sensitivities(cases)
    scores, truth = image_scores(cases)
    out = {"cases": len(cases), "lesions": sum(len(c.lesions) for c in cases), "sensitivity": sens,
           "cpm": float(np.mean(list(sens.values()))), "image_auroc": auroc(truth, scores)}
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        counts = np.bincount(rng.integers(0, len(cases), len(cases)), minlength=len(cases)).astype(float)
        if not any(counts[i] and c.lesions for i, c in enumerate(cases)):
            continue
        s = sensitivities(cases, counts)
        idx = np.repeat(np.arange(len(cases)), counts.astype(int))
        draws.append((s, float(np.mean(list(s.values()))), auroc(truth[idx], scores[idx])))
    if draws:
        ci = lambda v: [float(np.nanpercentile(v, 2.5)), float(np.nanpercentile(v, 97.5))]  # noqa: E731
        out["sensitivity_ci"] = {k: ci([d[0][k] for d in draws]) for k in sens}
        out["cpm_ci"] = ci([d[1] for d in draws])
        out["image_auroc_ci"] = ci([d[2] for d in draws])
    return out
