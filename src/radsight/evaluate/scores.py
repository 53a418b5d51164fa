"""Evidence for a model on a labelled set: AUROC with patient-bootstrap CIs, operating points, triage,
and paired comparison with a reference. Pure NumPy/scikit-learn on label and score arrays."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from radsight.evaluate.metrics import auroc, weighted_auroc
from radsight.heads.triage import URGENT_FINDINGS, UrgentPolicy, withheld_reason


@dataclass
class Bootstrap:
    """Resamples patients (not images) with replacement: images of one patient are not independent."""

    patient_ids: list[str]
    n: int = 1000
    seed: int = 0

    def weights(self) -> np.ndarray:
        """(n, images): how often each image's patient was drawn in each resample."""
        patients, inverse = np.unique(np.asarray(self.patient_ids), return_inverse=True)
        rng = np.random.default_rng(self.seed)
        draws = rng.integers(0, len(patients), (self.n, len(patients)))
        counts = np.stack([np.bincount(row, minlength=len(patients)) for row in draws])
        return counts[:, inverse]


def _ci(values: list[float]) -> list[float] | None:
    v = np.asarray([x for x in values if np.isfinite(x)])
    return [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] if len(v) else None


def _rates(tp, fp, fn, tn) -> dict:
    """Sensitivity, specificity, PPV, NPV, F1 from counts (scalars or arrays); NaN where undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        sens, spec = tp / (tp + fn), tn / (tn + fp)
        ppv, npv = tp / (tp + fp), tn / (tn + fn)
        f1 = 2 * tp / (2 * tp + fp + fn)
    return {"sensitivity": sens, "specificity": spec, "ppv": ppv, "npv": npv, "f1": f1}


def operating_point(y: np.ndarray, s: np.ndarray, threshold: float, weights: np.ndarray | None = None) -> dict:
    """Confusion counts and rates at ``threshold``; with bootstrap ``weights`` (B, N), 95% CIs of the rates."""
    keep = ~np.isnan(y) & ~np.isnan(s)
    y, pred = y[keep].astype(bool), s[keep] >= threshold
    cells = {"tp": pred & y, "fp": pred & ~y, "fn": ~pred & y, "tn": ~pred & ~y}
    counts = {k: int(v.sum()) for k, v in cells.items()}
    out = {"threshold": threshold, **counts}
    for name, value in _rates(*(np.float64(counts[k]) for k in ("tp", "fp", "fn", "tn"))).items():
        out[name] = None if np.isnan(value) else float(value)
    if weights is not None:
        w = weights[:, keep].astype(np.float64)
        boot = _rates(*(w @ cells[k] for k in ("tp", "fp", "fn", "tn")))
        for name, values in boot.items():
            out[f"{name}_ci"] = _ci(list(values))
    return out


def evaluate_scores(labels: list[str], y: np.ndarray, s: np.ndarray, thresholds: dict[str, float],
                    boot: Bootstrap, reference: np.ndarray | None = None) -> dict:
    """Per-label and mean AUROC with 95% CIs; operating points; paired differences against ``reference``."""
    weights = boot.weights()
    per_label, point_means = {}, []
    boot_aucs = np.full((len(weights), len(labels)), np.nan)
    boot_ref = np.full_like(boot_aucs, np.nan)
    for j, label in enumerate(labels):
        known = y[~np.isnan(y[:, j]), j]
        entry = {"n": int(len(known)), "positives": int(known.sum()), "auroc": auroc(y[:, j], s[:, j])}
        if np.isnan(entry["auroc"]):
            entry.update(auroc=None, auroc_ci=None, note="no positives" if known.sum() == 0 else "no negatives")
        else:
            boot_aucs[:, j] = weighted_auroc(y[:, j], s[:, j], weights)
            entry["auroc_ci"] = _ci(list(boot_aucs[:, j]))
            point_means.append(entry["auroc"])
        if label in thresholds:
            entry["operating_point"] = operating_point(y[:, j], s[:, j], thresholds[label], weights)
        if reference is not None and entry["auroc"] is not None and not np.isnan(reference[:, j]).all():
            ref_auc = auroc(y[:, j], reference[:, j])
            boot_ref[:, j] = weighted_auroc(y[:, j], reference[:, j], weights)
            diffs = boot_aucs[:, j] - boot_ref[:, j]
            entry["reference"] = {"auroc": ref_auc, "auroc_ci": _ci(list(boot_ref[:, j])),
                                  "difference": entry["auroc"] - ref_auc, "difference_ci": _ci(list(diffs))}
        per_label[label] = entry
    defined = [j for j, label in enumerate(labels) if per_label[label]["auroc"] is not None]
    out = {"per_label": per_label, "mean_auroc": float(np.mean(point_means)) if point_means else None,
           "mean_auroc_ci": _ci(list(np.nanmean(boot_aucs[:, defined], axis=1))) if defined else None,
           "mean_over": [labels[j] for j in defined], "bootstrap": {"resamples": boot.n, "unit": "patient"}}
    if reference is not None and defined:
        ref_mean = float(np.mean([per_label[labels[j]]["reference"]["auroc"] for j in defined
                                  if "reference" in per_label[labels[j]]]))
        boot_means = np.nanmean(boot_ref[:, defined], axis=1)
        diff_means = np.nanmean(boot_aucs[:, defined], axis=1) - boot_means
        out["reference_mean_auroc"] = ref_mean
        out["reference_mean_auroc_ci"] = _ci(list(boot_means))
        out["mean_difference"] = out["mean_auroc"] - ref_mean
        out["mean_difference_ci"] = _ci(list(diff_means))
    return out


def urgent_summary(labels: list[str], y: np.ndarray, s: np.ndarray, thresholds: dict[str, float],
                   points: dict[str, dict], policy: UrgentPolicy, boot: Bootstrap) -> dict:
    """How often studies are flagged urgent, and each urgent finding's sensitivity and specificity at its urgent
    operating point on this set (measured even where the flag is withheld, to show why it is)."""
    scored = ~np.isnan(s).any(axis=1)
    urgent = np.zeros(len(s), bool)
    findings = {}
    for label in (f for f in URGENT_FINDINGS if f in labels):
        j, point = labels.index(label), points.get(label)
        reason = withheld_reason(point, policy)
        entry: dict = {"withheld": reason, "validation": point}
        if label in thresholds:
            entry["flags_per_100_at_ordinary_threshold"] = 100.0 * float(np.mean(s[scored, j] >= thresholds[label]))
        if point and point.get("threshold") is not None:
            flagged = s[:, j] >= point["threshold"]
            entry["operating_point"] = operating_point(y[:, j], s[:, j], point["threshold"], boot.weights())
            entry["flags_per_100_if_in_force"] = 100.0 * float(np.mean(flagged[scored]))
            if reason is None:
                urgent |= flagged
        findings[label] = entry
    return {"policy": policy.to_dict(), "studies": int(scored.sum()),
            "urgent_per_100_studies": 100.0 * float(np.mean(urgent[scored])) if scored.any() else None,
            "findings": findings}
