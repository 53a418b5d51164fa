"""Operating thresholds, chosen on a validation set and stored in the model's config (never in forward)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from radsight.data.manifest import Manifest
from radsight.evaluate.metrics import (
    auroc,
    prevalence_threshold,
    sensitivity_threshold,
    specificity_threshold,
    youden_threshold,
)
from radsight.heads.triage import URGENT_FINDINGS, UrgentPolicy
from radsight.models.config import TRIAGE_LABEL, ModelConfig

MIN_POSITIVES = 3  # fewer known positives (or negatives) than this: Youden's J is noise


def urgent_point(y: np.ndarray, s: np.ndarray, policy: UrgentPolicy) -> dict:
    """The urgent operating point of one finding on a validation split, with what was measured there."""
    known = ~np.isnan(y) & ~np.isnan(s)
    y, s = y[known].astype(bool), s[known]
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    point: dict = {"threshold": None, "auroc": None, "sensitivity": None, "specificity": None,
                   "n_pos": n_pos, "n_neg": n_neg, "method": f"specificity>={policy.target_specificity:g}"}
    if n_pos and n_neg:
        threshold = specificity_threshold(y, s, policy.target_specificity)
        flagged = s >= threshold
        point.update(threshold=threshold, auroc=auroc(y.astype(float), s),
                     sensitivity=float(flagged[y].mean()), specificity=float((~flagged[~y]).mean()))
    return point


class BenchmarkSplitError(ValueError):
    pass


def label_matrix(manifest: Manifest, labels: list[str]) -> np.ndarray:
    """Manifest labels in a model's output order; TRIAGE_LABEL is "any finding"; unknown columns NaN."""
    columns = {name: manifest.labels[:, j] for j, name in enumerate(manifest.findings)}
    columns[TRIAGE_LABEL] = manifest.abnormal()
    nan = np.full(len(manifest), np.nan, np.float32)
    return np.stack([columns.get(label, nan) for label in labels], axis=1)


def choose_thresholds(cfg: ModelConfig, y: np.ndarray, scores: np.ndarray, prior: np.ndarray,
                      target_sensitivity: float | None = None) -> tuple[dict[str, float], dict[str, str]]:
    """Per label: Youden's J (or the sensitivity target) where the set has enough positives and negatives,
    else the threshold that flags the ``prior`` prevalence (from training labels) of this set."""
    thresholds, methods = {}, {}
    for j, label in enumerate(cfg.labels):
        known = y[~np.isnan(y[:, j]), j]
        n_pos, n_neg = int(known.sum()), int(len(known) - known.sum())
        if n_pos >= MIN_POSITIVES and n_neg >= MIN_POSITIVES:
            if target_sensitivity is None:
                thresholds[label], method = youden_threshold(y[:, j], scores[:, j]), "youden"
            else:
                thresholds[label] = sensitivity_threshold(y[:, j], scores[:, j], target_sensitivity)
                method = f"sensitivity>={target_sensitivity:g}"
        elif np.isfinite(prior[j]) and prior[j] > 0:
            thresholds[label], method = prevalence_threshold(scores[:, j], float(prior[j])), "prevalence"
        else:
            thresholds[label], method = 0.5, "default"
        methods[label] = f"{method} (n_pos={n_pos}, n_neg={n_neg})"
    return thresholds, methods


def validation_points(cfg: ModelConfig, y: np.ndarray, scores: np.ndarray) -> dict[str, dict]:
    """Per label on the calibration split: its AUROC (None without positives and negatives) and counts."""
    points = {}
    for j, label in enumerate(cfg.labels):
        known = ~np.isnan(y[:, j]) & ~np.isnan(scores[:, j])
        truth = y[known, j].astype(bool)
        n_pos, n_neg = int(truth.sum()), int((~truth).sum())
        points[label] = {"auroc": auroc(truth.astype(float), scores[known, j]) if n_pos and n_neg else None,
                         "n_pos": n_pos, "n_neg": n_neg}
    return points


def choose_urgent_points(cfg: ModelConfig, y: np.ndarray, scores: np.ndarray,
                         policy: UrgentPolicy) -> dict[str, dict]:
    """Each urgent finding's own operating point, for the policy's target specificity, on the same split."""
    return {label: urgent_point(y[:, j], scores[:, j], policy)
            for j, label in enumerate(cfg.labels) if label in URGENT_FINDINGS}


def check_not_benchmark(manifest: Manifest) -> None:
    if any(s == "benchmark" for s in manifest.splits):
        raise BenchmarkSplitError("refusing to calibrate on images marked as benchmark: they are for measuring only")


def study_pairs(csv_path: Path, images: Path, split: str) -> list[tuple[Path, Path]]:
    """The (frontal, lateral) image paths of each study of ``split`` with both views (a manifest with
    ``study_id`` and ``view`` columns, frontal or lateral), the first of each view."""
    with open(csv_path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if (r.get("split") or "") == split]
    if rows and not {"study_id", "view"} <= rows[0].keys():
        raise ValueError(f"{csv_path}: a two-view manifest needs study_id and view columns")
    studies: dict[str, dict[str, Path]] = {}
    for r in rows:
        studies.setdefault(r["study_id"], {}).setdefault(r["view"].lower(), images / r["image"])
    return [(v["frontal"], v["lateral"]) for v in studies.values() if {"frontal", "lateral"} <= v.keys()]


def lateral_thresholds(cfg: ModelConfig, with_lateral: np.ndarray, alone: np.ndarray) -> tuple[dict, dict]:
    """A two-view model's thresholds for studies read with their lateral: each frontal threshold moved by the mean
    logit shift the lateral gives on the same studies (``with_lateral``, ``alone``: probabilities, studies x
    labels), so that a study with a lateral is called at the operating point validated without one; and how they
    were fitted."""
    def logit(p):
        p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))
    shift = np.mean(logit(with_lateral) - logit(alone), axis=0)
    thresholds = {label: float(1 / (1 + np.exp(-(logit(cfg.threshold(label)) + shift[j]))))
                  for j, label in enumerate(cfg.labels)}
    how = {"method": "each frontal threshold moved by the mean logit shift the lateral gives on the same studies",
           "studies": len(alone), "logit_shift": {label: float(shift[j]) for j, label in enumerate(cfg.labels)}}
    return thresholds, how
