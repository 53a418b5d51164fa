"""``radsight evaluate --task abnormal``: a normal/abnormal model's triage AUROC on labelled films, paired against
the model whose triage it would replace, and where its map points on films with radiologists' boxes.

The comparison is paired: both models score the same images, and the patient bootstrap resamples their AUROC
difference together; a model is adopted only if that difference's 95% CI lies above 0. With ``--reference`` (a
peer's predictions CSV of the 14 findings), the peer's triage is its highest finding probability.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from radsight.core import FINDINGS, InputError
from radsight.data.manifest import read_manifest
from radsight.data.predictions import read_predictions
from radsight.evaluate.progress import readable_images, stage
from radsight.evaluate.request import EvaluateRequest
from radsight.evaluate.scores import Bootstrap, evaluate_scores
from radsight.models.config import TRIAGE_LABEL
from radsight.models.store import DEFAULT_MODEL


def triage_scores(predictor, manifest, label: str) -> np.ndarray:
    """Each image's triage probability (NaN where it cannot be read)."""
    from radsight.pipeline.predictor import score_manifest
    with stage(label, len(manifest)) as progress:
        scores, _ = score_manifest(predictor, manifest, on_progress=lambda n: progress.advance(n))
    return scores[:, predictor.cfg.labels.index(TRIAGE_LABEL)]


def triage_model_scores(predictor, manifest) -> np.ndarray:
    """Each image's triage as ``predictor`` gives it with its triage model (reading the lung model's thorax); NaN
    where the image cannot be read."""
    out = np.full(len(manifest), np.nan)
    for i, image in readable_images(manifest, f"scoring {predictor.triage_model.cfg.name}"):
        box = predictor.lungs.box(image) if predictor.lungs is not None else None
        out[i] = predictor.triage_model.score(image, box)[0]
    return out


def localization(predictor, manifest) -> dict | None:
    """Pointing game and T(IoU) of the triage map (its Abnormal CAM, boxes drawn from it) against every box of
    each boxed film, whatever its finding; None when the manifest has no boxes."""
    from radsight.evaluate.localization import localization_summary, pointing_hit
    from radsight.explain.boxes import heatmap_boxes
    from radsight.io import load_image
    truths = manifest.boxes or []
    cases = []
    with stage("localizing", sum(1 for t in truths if t)) as progress:
        for i, truth in enumerate(truths):
            if not truth:
                continue
            progress.advance()
            try:
                image = load_image(manifest.path(i))
                p = predictor.predict(image, explain=[TRIAGE_LABEL])
            except InputError:  # unreadable, or a view the model does not read
                continue
            heat = p.heatmaps[TRIAGE_LABEL]
            predicted = [(b.x, b.y, b.width, b.height)
                         for b in heatmap_boxes(heat, image.height, image.width, 1.0, predictor.boxes)]
            cases += [{"finding": "any", "truth": box, "predicted": predicted,
                       "pointing": pointing_hit(heat, box, image.height, image.width)}
                      for boxes in truth.values() for box in boxes]
    return localization_summary(cases).get("overall") if cases else None


def run_triage_evaluation(manifest_path: Path, images: Path, out: Path, model: str, compare: str,
                          reference: Path | None, split: str | None, n_boot: int, lung_model: str) -> dict:
    from radsight.pipeline.predictor import Predictor
    manifest = read_manifest(manifest_path, images)
    if split:
        manifest = manifest.select(split)
    y = manifest.abnormal()[:, None]
    boot = Bootstrap(manifest.patient_ids, n=n_boot)
    new = Predictor(model, lung_model=lung_model)
    scores = triage_scores(new, manifest, f"scoring {new.cfg.name}")[:, None]
    current = Predictor(compare, lung_model=lung_model)
    against = triage_scores(current, manifest, f"scoring {current.cfg.name}")[:, None]
    thresholds = {TRIAGE_LABEL: new.cfg.threshold(TRIAGE_LABEL)}
    triage = evaluate_scores([TRIAGE_LABEL], y, scores, thresholds, boot, against)["per_label"][TRIAGE_LABEL]
    metrics: dict = {"source": {"manifest": str(manifest_path), "images": len(manifest), "split": split,
                                "model": new.cfg.name, "version": new.cfg.version, "compared_with": current.cfg.name},
                     "triage": triage}
    metrics["adopt"] = bool(triage.get("reference") and triage["reference"]["difference_ci"][0] > 0)
    if reference is not None:
        peer = np.nanmax(read_predictions(reference, manifest.images, list(FINDINGS)), axis=1)[:, None]
        metrics["peer"] = evaluate_scores([TRIAGE_LABEL], y, scores, {}, boot, peer)["per_label"][TRIAGE_LABEL][
            "reference"] | {"predictions": str(reference), "score": "highest finding probability"}
    metrics["localization"] = localization(new, manifest)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(triage_markdown(metrics))
    print(triage_markdown(metrics))
    return metrics


def _ci(entry: dict, key: str = "auroc") -> str:
    low, high = entry[f"{key}_ci"] or (float("nan"), float("nan"))
    return f"{entry[key]:.3f} [{low:.3f}, {high:.3f}]"


def triage_markdown(m: dict) -> str:
    t, src = m["triage"], m["source"]
    lines = [f"**Triage** of `{src['model']}` {src['version']} on {src['images']} films of `{src['manifest']}`: "
             f"AUROC {_ci(t)} ({t['positives']} abnormal of {t['n']})."]
    if t.get("reference"):
        r = t["reference"]
        lines.append(f"Against `{src['compared_with']}` on the same films: {_ci(r)}; difference "
                     f"{_ci(r, 'difference')} (paired patient bootstrap): "
                     + ("adopt." if m["adopt"] else "do not adopt (the CI does not lie above 0)."))
    if m.get("peer"):
        p = m["peer"]
        lines.append(f"Peer (`{p['predictions']}`, {p['score']}): {_ci(p)}; difference {_ci(p, 'difference')}.")
    loc = m.get("localization")
    if loc:
        lines.append(f"Its map on {loc['boxes']} radiologists' boxes: pointing game {loc['pointing_game']:.1%}; "
                     f"T(IoU) 0.1 {loc['iou']['0.1']:.1%}, 0.3 {loc['iou']['0.3']:.1%}, 0.5 {loc['iou']['0.5']:.1%}.")
    return "\n\n".join(lines) + "\n"


def from_request(r: EvaluateRequest) -> None:
    """``radsight evaluate --task abnormal --model M``: M's triage, paired against the default model's (or
    ``--compare-with``'s)."""
    r.need("manifest", "images", "model")
    run_triage_evaluation(r.manifest, r.images, r.out, r.model, r.compare_with or DEFAULT_MODEL, r.reference,
                          r.split, r.bootstrap, r.lung_model)
