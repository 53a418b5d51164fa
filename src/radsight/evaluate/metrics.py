"""Metrics on label/score arrays (NaN labels are unknown and skipped). No torch."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve


def _known(y: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a known label and a score."""
    keep = ~np.isnan(y) & ~np.isnan(s)
    return y[keep].astype(int), s[keep]


def auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC of one label; NaN when the known labels lack a positive or a negative."""
    y, s = _known(y, s)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


def weighted_auroc(y: np.ndarray, s: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """AUROC under each row of ``weights`` (B, N) at once: the Mann-Whitney statistic with weighted pairs,
    ties counting one half. Integer weights reproduce resampling with replacement, so one call scores
    a whole bootstrap. NaN where a row weighs no positive or no negative."""
    keep = ~np.isnan(y) & ~np.isnan(s)
    y, s, weights = y[keep].astype(bool), s[keep], weights[:, keep].astype(np.float64)
    _, group = np.unique(s, return_inverse=True)  # score ranks, ties share one
    onehot = np.zeros((len(s), group.max() + 1 if len(s) else 0))
    onehot[np.arange(len(s)), group] = 1.0
    pos, neg = (weights * y) @ onehot, (weights * ~y) @ onehot  # (B, unique scores), ascending
    neg_below = np.cumsum(neg, axis=1) - neg
    pairs = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (neg_below + 0.5 * neg)).sum(axis=1) / pairs, np.nan)


def mean_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mean over the columns where AUROC is defined."""
    values = [auroc(labels[:, j], scores[:, j]) for j in range(labels.shape[1])]
    defined = [v for v in values if not np.isnan(v)]
    return float(np.mean(defined)) if defined else float("nan")


def youden_threshold(y: np.ndarray, s: np.ndarray) -> float:
    """The score threshold maximising sensitivity + specificity - 1 (Youden's J)."""
    y, s = _known(y, s)
    fpr, tpr, thresholds = roc_curve(y, s)
    best = int(np.argmax(tpr - fpr))
    return float(min(thresholds[best], 1.0))


def sensitivity_threshold(y: np.ndarray, s: np.ndarray, target: float) -> float:
    """The highest threshold whose sensitivity reaches ``target``."""
    y, s = _known(y, s)
    fpr, tpr, thresholds = roc_curve(y, s)
    return float(min(thresholds[int(np.argmax(tpr >= target))], 1.0))


def specificity_threshold(y: np.ndarray, s: np.ndarray, target: float) -> float:
    """The lowest threshold whose specificity still reaches ``target`` (the most sensitive such point)."""
    y, s = _known(y, s)
    fpr, _, thresholds = roc_curve(y, s, drop_intermediate=False)
    return float(min(thresholds[int(np.flatnonzero(fpr <= 1.0 - target)[-1])], 1.0))


def prevalence_threshold(s: np.ndarray, prevalence: float) -> float:
    """The threshold that flags a ``prevalence`` share of these scores as positive."""
    return float(np.quantile(s, 1.0 - prevalence))


def reliability(y: np.ndarray, s: np.ndarray, bins: int = 10) -> dict:
    """Equal-width bins of predicted probability: mean prediction, observed rate and count per bin, and
    the expected calibration error (count-weighted mean |observed - predicted|)."""
    y, s = _known(y, s)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(s, edges[1:-1]), 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = np.bincount(which, weights=s, minlength=bins) / count
        observed = np.bincount(which, weights=y, minlength=bins) / count
    filled = count > 0
    ece = float(np.sum(count[filled] * np.abs(observed[filled] - predicted[filled])) / max(1, count.sum()))
    return {"ece": ece, "bins": bins, "count": count.tolist(),
            "predicted": [float(v) if c else None for v, c in zip(predicted, count)],
            "observed": [float(v) if c else None for v, c in zip(observed, count)]}
