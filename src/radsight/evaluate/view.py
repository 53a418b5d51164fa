"""The view classifier measured on labelled images (``radsight evaluate --task view``): accuracy, lateral
sensitivity, frontal specificity and AUROC, overall and by source."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from radsight.core import InputError
from radsight.evaluate.metrics import auroc
from radsight.evaluate.request import EvaluateRequest
from radsight.heads.view import ViewModel
from radsight.io import load_image


def evaluate_views(model: ViewModel, rows: list, out: Path) -> dict:
    """Accuracy, lateral sensitivity, frontal specificity and AUROC on ``rows``
    (``radsight.data.view_manifest.ViewRow``), overall and by manifest; written to ``out/metrics.json`` and
    ``out/report.md``."""
    probs, truth, groups, errors = [], [], [], []
    for row in rows:
        try:
            probs.append(model.lateral_probability(load_image(row.path)))
        except InputError as exc:
            errors.append(str(exc))
            continue
        truth.append(row.view == "lateral")
        groups.append(row.source)
    p, t = np.asarray(probs), np.asarray(truth, bool)
    metrics = {"model": model.cfg.name, "threshold": model.threshold, "overall": _figures(p, t, model.threshold),
               "by_source": {g: _figures(p[np.asarray(groups) == g], t[np.asarray(groups) == g], model.threshold)
                             for g in dict.fromkeys(groups)},
               "unreadable": errors}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    lines = ["# View classifier evaluation", "", f"Model {model.cfg.name}; lateral when P(lateral) >= "
             f"{model.threshold:.2f}.", "", "| images | laterals | frontals | accuracy | lateral sensitivity | "
             "frontal specificity | AUROC |", "|---|---|---|---|---|---|---|"]
    for name, f in [("all", metrics["overall"]), *metrics["by_source"].items()]:
        lines.append(f"| {name} | {f['laterals']} | {f['frontals']} | {f['accuracy']:.3f} | "
                     f"{_opt(f['lateral_sensitivity'])} | {_opt(f['frontal_specificity'])} | {_opt(f['auroc'])} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return metrics


def _figures(p: np.ndarray, t: np.ndarray, threshold: float) -> dict:
    said = p >= threshold
    return {"laterals": int(t.sum()), "frontals": int((~t).sum()), "accuracy": float((said == t).mean()),
            "lateral_sensitivity": float(said[t].mean()) if t.any() else None,
            "frontal_specificity": float((~said[~t]).mean()) if (~t).any() else None,
            "auroc": float(auroc(t.astype(float), p)) if t.any() and (~t).any() else None,
            "lateral_probabilities": [round(float(v), 4) for v in p[t]]}


def _opt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def from_request(r: EvaluateRequest) -> str:
    """``radsight evaluate --task view``: the manifest's rows (``--subset``: patient ids; ``--split``: one split)."""
    from radsight.data.view_manifest import view_rows
    r.need("manifest", "images")
    rows = [row for row in view_rows([(str(r.manifest), str(r.images))])
            if (not r.subset or row.patient in r.subset) and (r.split is None or row.split == r.split)]
    if not rows:
        raise ValueError("no rows to evaluate")
    f = evaluate_views(ViewModel(r.model), rows, r.out)["overall"]
    return f"{len(rows)} images ({f['laterals']} laterals): accuracy {f['accuracy']:.3f}; report in {r.out}"
