"""``radsight evaluate --shortcuts``: does a normal/abnormal model read the disease, or where the film came from?

Public chest X-ray sets mix hospitals, and their abnormal films often come from other places than their normals; a
model can then score the source (its text markers, borders, processing) instead of the lungs. On a manifest with a
``source`` column (and ``age`` where known) this measures, for the model's triage output:
- ``source_probe_accuracy``: how well a linear probe tells the source from the model's pooled features
  (patient-grouped 5-fold cross-validation), beside the majority class's share and the same probe on the films'
  own pixels (a 16x16 thumbnail, grey-level and gradient histograms): what the model keeps of the source, against
  what the films give away;
- ``cam_energy_in_lungs`` / ``cam_energy_in_thorax``: the share of its Abnormal map inside the lung fields (3%
  margin), and inside the thorax (lungs and mediastinum), found by the lung model;
- ``auroc_by_source``: its AUROC within each source alone (where both classes are present);
- ``age``: how well age alone separates the classes, the model's AUROC among adults only, and the correlation of
  its score with age among normal films.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy import ndimage

from radsight.data.manifest import read_manifest
from radsight.evaluate.metrics import auroc
from radsight.evaluate.progress import readable_images
from radsight.evaluate.request import EvaluateRequest
from radsight.heads.lung_geometry import energy_inside, on_grid, thorax_region
from radsight.models.config import TRIAGE_LABEL

ADULT_YEARS = 18


def read_films(predictor, manifest) -> dict[str, np.ndarray]:
    """Per readable film: its triage score, pooled features and CAM energy shares; ``rows``: manifest rows."""
    from radsight.explain.cam import CAM
    from radsight.heads.ood import describe
    from radsight.inputs.preprocess import working_size
    from radsight.pipeline.predictor import _full_heatmap
    j = predictor.cfg.labels.index(TRIAGE_LABEL)
    found: dict[str, list] = {k: [] for k in ("rows", "score", "features", "pixels", "in_lungs", "in_thorax")}
    for i, image in readable_images(manifest, "auditing"):
        built = predictor.inputs.build(image, anatomy=True)
        out = predictor.model(built.x[None])
        in_lungs = in_thorax = np.nan
        lungs = built.plausible_lungs
        if lungs is not None:
            grid = working_size(image.height, image.width)
            heat = _full_heatmap(out["cams"][0, j], grid, built.crop, image, CAM())
            margin = max(1, round(0.03 * max(grid)))
            in_lungs = energy_inside(heat, ndimage.binary_dilation(on_grid(lungs > 0, grid), iterations=margin))
            in_thorax = energy_inside(heat, on_grid(thorax_region(lungs), grid))
        pixels = np.concatenate(list(describe(image, framed=False).values()))  # all a film gives away
        for key, value in (("rows", i), ("score", out["probabilities"][0, j]), ("features", out["features"][0]),
                           ("pixels", pixels), ("in_lungs", in_lungs), ("in_thorax", in_thorax)):
            found[key].append(value)
    return {k: np.asarray(v) for k, v in found.items()}


def source_probe(features: np.ndarray, sources: np.ndarray, groups: np.ndarray) -> dict:
    """Cross-validated accuracy of a logistic-regression probe from features to source."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    names, counts = np.unique(sources, return_counts=True)
    if len(names) < 2:
        return {"accuracy": None, "majority_share": 1.0, "sources": names.tolist()}
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.1))
    folds = GroupKFold(n_splits=min(5, len(np.unique(groups))))
    predicted = cross_val_predict(probe, features, sources, groups=groups, cv=folds)
    return {"accuracy": float(np.mean(predicted == sources)), "majority_share": float(counts.max() / counts.sum()),
            "sources": {str(n): int(c) for n, c in zip(names, counts)}}


def age_audit(ages: np.ndarray, y: np.ndarray, score: np.ndarray) -> dict | None:
    known = np.isfinite(ages) & np.isfinite(y)
    if known.sum() < 10 or len(np.unique(y[known])) < 2:
        return None
    from scipy.stats import spearmanr
    adult, normal = known & (ages >= ADULT_YEARS), known & (y == 0)
    return {"films_with_age": int(known.sum()),
            "age_alone_auroc": auroc(y[known], ages[known]),
            "auroc_adults_only": auroc(y[adult], score[adult]) if len(np.unique(y[adult])) == 2 else None,
            "children": int((known & (ages < ADULT_YEARS)).sum()),
            "score_age_spearman_in_normals": float(spearmanr(ages[normal], score[normal])[0])
            if normal.sum() > 2 else None}


def run_shortcut_audit(manifest_path: Path, images: Path, out: Path, model: str, split: str | None,
                       lung_model: str) -> dict:
    from radsight.pipeline.predictor import Predictor
    manifest = read_manifest(manifest_path, images)
    if split:
        manifest = manifest.select(split)
    if manifest.sources is None:
        raise ValueError(f"{manifest_path}: the shortcut audit needs a source column")
    predictor = Predictor(model, lung_model=lung_model, triage_model=None)
    if TRIAGE_LABEL not in predictor.cfg.labels:
        raise ValueError(f"model {predictor.cfg.name} has no {TRIAGE_LABEL} output to audit")
    films = read_films(predictor, manifest)
    rows = films["rows"]
    y, sources = manifest.abnormal()[rows], np.asarray(manifest.sources)[rows]
    with open(manifest_path, newline="") as fh:
        ages_by_image = {r["image"]: r.get("age", "") for r in csv.DictReader(fh)}
    ages = np.array([float(ages_by_image.get(manifest.images[i]) or "nan") for i in rows])
    by_source = {}
    for source in sorted(set(sources)):
        mine = sources == source
        classes = np.unique(y[mine][np.isfinite(y[mine])])
        by_source[source] = {"films": int(mine.sum()), "abnormal": int(np.nansum(y[mine])),
                             "auroc": auroc(y[mine], films["score"][mine]) if len(classes) == 2 else None,
                             "cam_energy_in_lungs": float(np.nanmean(films["in_lungs"][mine]))}
    groups = np.asarray(manifest.patient_ids)[rows]
    shortcuts = {"model": predictor.cfg.name, "films": int(len(rows)),
                 "source_probe": source_probe(films["features"], sources, groups),
                 "source_probe_pixels": source_probe(films["pixels"], sources, groups),
                 "cam_energy_in_lungs": float(np.nanmean(films["in_lungs"])),
                 "cam_energy_in_thorax": float(np.nanmean(films["in_thorax"])),
                 "auroc_pooled": auroc(y, films["score"]), "auroc_by_source": by_source,
                 "age": age_audit(ages, y, films["score"])}
    shortcuts["source_probe_accuracy"] = shortcuts["source_probe"]["accuracy"]
    metrics = {"source": {"manifest": str(manifest_path), "split": split}, "shortcuts": shortcuts}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(shortcut_markdown(shortcuts))
    print(shortcut_markdown(shortcuts))
    return metrics


def _f(value, pattern: str = "{:.3f}") -> str:
    return "-" if value is None or (isinstance(value, float) and np.isnan(value)) else pattern.format(value)


def shortcut_markdown(s: dict) -> str:
    probe = s["source_probe"]
    lines = [f"**Shortcut audit** of `{s['model']}` on {s['films']} films: a linear probe tells the source from its "
             f"features with accuracy {_f(probe['accuracy'], '{:.1%}')} (majority class {probe['majority_share']:.1%}; "
             f"from the films' own pixels {_f(s['source_probe_pixels']['accuracy'], '{:.1%}')});"
             f" its Abnormal map puts {_f(s['cam_energy_in_lungs'], '{:.1%}')} of its energy in the lung fields and "
             f"{_f(s['cam_energy_in_thorax'], '{:.1%}')} in the thorax; pooled AUROC {_f(s['auroc_pooled'])}.", "",
             "| source | films | abnormal | AUROC within it | CAM energy in lungs |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {k} | {v['films']} | {v['abnormal']} | {_f(v['auroc'])} | {_f(v['cam_energy_in_lungs'], '{:.1%}')} |"
              for k, v in s["auroc_by_source"].items()]
    if s["age"]:
        a = s["age"]
        lines += ["", f"Age ({a['films_with_age']} films with an age, {a['children']} under {ADULT_YEARS}): age alone "
                      f"separates the classes with AUROC {_f(a['age_alone_auroc'])}; the model among adults only "
                      f"{_f(a['auroc_adults_only'])}; its score's Spearman correlation with age among normal films "
                      f"{_f(a['score_age_spearman_in_normals'])}."]
    return "\n".join(lines) + "\n"


def from_request(r: EvaluateRequest) -> None:
    """``radsight evaluate --shortcuts --model M --manifest M --images I`` (a ``source`` column)."""
    from radsight.models.store import DEFAULT_MODEL
    r.need("manifest", "images")
    run_shortcut_audit(r.manifest, r.images, r.out, r.model or DEFAULT_MODEL, r.split, r.lung_model)
