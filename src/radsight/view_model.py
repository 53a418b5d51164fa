"""The view classifier at inference (ONNX Runtime, no PyTorch): P(lateral) for a radiograph, and its
measurement on labelled images (``radsight evaluate --model radsight-view-cnn``)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from radsight.core import InputError, Radiograph
from radsight.io import load_image
from radsight.metrics import auroc
from radsight.models.config import VIEW_CLASSIFICATION, ModelConfig
from radsight.models.store import get_model
from radsight.preprocess import prepare
from radsight.runtime import Helper, sigmoid


class ViewModel:
    """P(lateral) by a view-classification model; ``threshold``: the operating point its config stores."""

    def __init__(self, model: str | ModelConfig, threads: int = 0):
        self.cfg = model if isinstance(model, ModelConfig) else get_model(model)
        if self.cfg.task != VIEW_CLASSIFICATION:
            raise ValueError(f"model {self.cfg.name} is a {self.cfg.task} model, not a view classifier")
        self.session = Helper(self.cfg, threads)
        self.threshold = self.cfg.threshold("lateral")

    def lateral_probability(self, image: Radiograph) -> float:
        x, _ = prepare(image, self.cfg.input)
        return float(sigmoid(self.session.run(x[None])["lateral_logit"].astype(np.float64))[0, 0])


def evaluate_views(model: ViewModel, rows: list, out: Path) -> dict:
    """Accuracy, lateral sensitivity, frontal specificity and AUROC on ``rows``
    (``radsight.data.view_manifest.ViewRow``), overall and by manifest; written to ``out/metrics.json`` and ``out/report.md``."""
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
