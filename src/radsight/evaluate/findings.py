"""``radsight evaluate``: score a labelled set (or read saved scores), measure, write report, metrics and plots."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from radsight.core import FINDINGS
from radsight.data.manifest import Manifest, read_manifest
from radsight.data.predictions import read_predictions, write_predictions
from radsight.evaluate import plots
from radsight.evaluate.calibration import label_matrix
from radsight.evaluate.localization import IOU_THRESHOLDS, box_cases, localization_summary
from radsight.evaluate.metrics import reliability
from radsight.evaluate.progress import stage
from radsight.evaluate.request import EvaluateRequest
from radsight.evaluate.scores import Bootstrap, evaluate_scores, urgent_summary
from radsight.heads.lung_geometry import energy_inside, on_grid, thorax_region
from radsight.heads.triage import UrgentPolicy
from radsight.models.config import TRIAGE_LABEL
from radsight.models.store import DEFAULT_LUNG_MODEL


def run_evaluation(manifest_path: Path, images: Path, out: Path, model: str | None, predictions: Path | None,
                   reference: Path | None, split: str | None, n_boot: int, methods: list[str] = (),
                   robustness: bool = False, lung_model: str | None = DEFAULT_LUNG_MODEL) -> dict:
    """``methods``: explanation methods to compare (:mod:`radsight.evaluate.explain`); ``robustness``: measure
    under attacks and natural changes (:mod:`radsight.evaluate.robustness`); ``lung_model``: the anatomy model
    whose CTR is scored for Cardiomegaly and whose thorax bounds the boxes."""
    manifest = read_manifest(manifest_path, images)
    if split:
        manifest = manifest.select(split)
    source: dict = {"manifest": str(manifest_path), "images": len(manifest), "split": split}
    predictor, thresholds = None, {}
    if model is not None:
        from radsight.pipeline.predictor import Predictor, score_manifest
        predictor = Predictor(model, lung_model=lung_model)
        labels, thresholds = predictor.cfg.labels, dict(predictor.cfg.thresholds)
        with stage("scoring", len(manifest)) as progress:
            scores, errors = score_manifest(predictor, manifest, on_progress=lambda n: progress.advance(n))
        source.update(model=predictor.cfg.name, version=predictor.cfg.version, unreadable=[str(e) for e in errors])
        if predictor.triage_model is not None and TRIAGE_LABEL in labels:  # the triage analyze and serve give
            from radsight.evaluate.triage import triage_model_scores
            scores[:, labels.index(TRIAGE_LABEL)] = triage_model_scores(predictor, manifest)
            source["triage_model"] = predictor.triage_model.cfg.name
    else:
        labels, scores = list(FINDINGS), read_predictions(predictions, manifest.images, list(FINDINGS))
        source.update(predictions=str(predictions))
    if reference:
        source["reference"] = str(reference)
    y = label_matrix(manifest, labels)
    findings = [label for label in labels if label in FINDINGS]
    cols = [labels.index(f) for f in findings]
    y_f, s_f = y[:, cols], scores[:, cols]
    ref = read_predictions(reference, manifest.images, findings) if reference else None
    boot = Bootstrap(manifest.patient_ids, n=n_boot)
    metrics = {"source": source, **evaluate_scores(findings, y_f, s_f, thresholds, boot, ref)}
    if TRIAGE_LABEL in labels:
        j = labels.index(TRIAGE_LABEL)
        metrics["triage"] = evaluate_scores([TRIAGE_LABEL], y[:, [j]], scores[:, [j]], thresholds,
                                            boot)["per_label"][TRIAGE_LABEL]
    metrics["calibration"] = {f: reliability(y_f[:, j], s_f[:, j]) for j, f in enumerate(findings)
                              if metrics["per_label"][f]["n"]}
    if ref is not None:
        metrics["reference_calibration"] = {f: reliability(y_f[:, j], ref[:, j]) for j, f in enumerate(findings)
                                            if metrics["per_label"][f]["n"] and not np.isnan(ref[:, j]).all()}
    if predictor is not None:
        cfg = predictor.cfg
        metrics["urgent"] = urgent_summary(labels, y, scores, thresholds, cfg.urgent,
                                           UrgentPolicy.from_dict(cfg.urgent_policy), boot)
        metrics.update(explanation_pass(predictor, manifest, y, labels, boot))
        if methods:
            from radsight.evaluate.explain import method_pass
            metrics["explanation_methods"] = method_pass(predictor, manifest, y, labels, list(methods))
        if robustness:
            from radsight.evaluate.robustness import robustness_pass
            metrics["robustness"] = robustness_pass(predictor, manifest, y, labels)

    out.mkdir(parents=True, exist_ok=True)
    if predictor is not None:  # the scores, in the predictions-CSV layout: a reference for later comparisons
        write_predictions(out / "predictions.csv", manifest.images, findings, s_f)
        metrics["predictions"] = "predictions.csv"
    aucs = {f: metrics["per_label"][f]["auroc"] for f in findings}
    metrics["plots"] = {"roc": "roc.png", "reliability": "reliability.png"}
    plots.roc_all(out / "roc.png", findings, y_f, s_f, aucs)
    plots.reliability_grid(out / "reliability.png", metrics["calibration"])
    if ref is not None:
        name = source.get("model") or "predictions"
        plots.roc_versus(out / "roc_vs_reference.png", findings, y_f, s_f, ref, (name, "reference"))
        metrics["plots"]["roc_vs_reference"] = "roc_vs_reference.png"
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    (out / "report.md").write_text(report_markdown(metrics))
    _print_table(metrics)
    return metrics


def explanation_pass(predictor, manifest: Manifest, y: np.ndarray, labels: list[str], boot: Bootstrap) -> dict:
    """One prediction with heatmaps per image that needs one: images with radiologists' boxes (localization),
    and with a lung model every image (CTR as a Cardiomegaly score; each finding's share of CAM energy inside
    the dilated thorax, where low shares mean the model looks at borders, tubes or text)."""
    from radsight.core import InputError
    from radsight.io import load_image
    findings, with_anatomy = predictor.cfg.findings, predictor.lungs is not None
    truths = manifest.boxes or [{}] * len(manifest)
    cases: list[dict] = []
    ctr = np.full(len(manifest), np.nan)
    energy: dict[str, list[float]] = {f: [] for f in findings}
    implausible, withheld, against_boxes, boxes_outside = 0, 0, [], [0, 0]  # (boxes, mostly outside the thorax)
    with stage("explaining", len(manifest)) as progress:
        for i, truth in enumerate(truths):
            progress.advance()
            if not truth and not with_anatomy:
                continue
            try:
                image = load_image(manifest.path(i))
            except InputError:
                continue
            p = predictor.predict(image, explain=findings if with_anatomy else set(truth))
            cases += box_cases(p, truth, image.height, image.width)
            if not with_anatomy:
                continue
            if not p.anatomy.plausible:
                implausible += 1
                continue
            c = p.anatomy.ctr
            if c is not None and c.value is not None:
                ctr[i] = c.value
                against_boxes += [{"image": manifest.images[i], "ctr": c.value, "box_ctr": box[2] / c.thoracic_px}
                                  for box in truth.get("Cardiomegaly", [])]  # NIH's heart box: a cardiac width
            elif c is not None:
                withheld += 1
            grid = next(iter(p.heatmaps.values())).shape
            region = on_grid(thorax_region(p.lung_mask), grid)
            for f in findings:
                energy[f].append(energy_inside(p.heatmaps[f], region))
            for f in p.positives:
                for b in f.boxes:
                    boxes_outside[0] += 1
                    boxes_outside[1] += _share_inside(b, region, image.height, image.width) < 0.5
    out: dict = {}
    if any(truths):
        out["localization"] = localization_summary(cases)
    if with_anatomy:
        errors = [abs(c["ctr"] - c["box_ctr"]) for c in against_boxes]
        anatomy = {"lung_model": predictor.lungs.cfg.name, "implausible_segmentations": implausible,
                   "ctr_withheld": withheld,
                   "boxes_of_positives": {"boxes": boxes_outside[0], "mostly_outside_thorax": boxes_outside[1]},
                   "ctr_against_heart_boxes": {
                       "images": against_boxes, "mean_absolute_error": float(np.mean(errors)) if errors else None},
                   "cam_energy_in_thorax": {f: float(np.nanmean(v)) if v else None for f, v in energy.items()}}
        if "Cardiomegaly" in labels:
            j = labels.index("Cardiomegaly")
            ctr_eval = evaluate_scores(["CTR"], y[:, [j]], ctr[:, None], {"CTR": 0.5}, boot)["per_label"]["CTR"]
            anatomy["ctr_for_cardiomegaly"] = {**ctr_eval, "measured": int(np.isfinite(ctr).sum())}
        out["anatomy"] = anatomy
    return out


def _share_inside(box, region: np.ndarray, height: int, width: int) -> float:
    """The share of a box's area (original pixels) that lies inside ``region`` (a mask on any grid)."""
    sy, sx = region.shape[0] / height, region.shape[1] / width
    r0, c0 = int(box.y * sy), int(box.x * sx)
    r1, c1 = max(r0 + 1, round((box.y + box.height) * sy)), max(c0 + 1, round((box.x + box.width) * sx))
    return float(region[r0:r1, c0:c1].mean())


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value).__name__)


def _fmt(value, ci=None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def report_markdown(m: dict) -> str:
    src = m["source"]
    has_ref = "reference_mean_auroc" in m
    head = "| finding | n+ | AUROC [95% CI] | sens. | spec. | PPV | threshold | ECE |"
    rule = "|---|---:|---|---:|---:|---:|---:|---:|"
    if has_ref:
        head += " reference AUROC | reference ECE | Δ AUROC [95% CI] |"
        rule += "---|---:|---|"
    lines = [f"# Evaluation: {src.get('model') or src.get('predictions')}", "",
             f"Images: {src['images']} from `{src['manifest']}`" + (f" (split {src['split']})" if src.get("split") else "")
             + f". 95% CIs: {m['bootstrap']['resamples']} bootstrap resamples of patients."
             + (f" Reference: `{src['reference']}`." if has_ref else ""), "", head, rule]
    for name, e in m["per_label"].items():
        op = e.get("operating_point") or {}
        auc = _fmt(e["auroc"], e.get("auroc_ci")) if e["auroc"] is not None else e.get("note")
        ece = (m["calibration"].get(name) or {}).get("ece")
        row = (f"| {name} | {e['positives']} | {auc} | {_fmt(op.get('sensitivity'), op.get('sensitivity_ci'))} "
               f"| {_fmt(op.get('specificity'), op.get('specificity_ci'))} | {_fmt(op.get('ppv'), op.get('ppv_ci'))} "
               f"| {_fmt(op.get('threshold'))} | {_fmt(ece)} |")
        if has_ref:
            r = e.get("reference") or {}
            ref_ece = (m.get("reference_calibration", {}).get(name) or {}).get("ece")
            row += (f" {_fmt(r.get('auroc'), r.get('auroc_ci'))} | {_fmt(ref_ece)} "
                    f"| {_fmt(r.get('difference'), r.get('difference_ci'))} |")
        lines.append(row)
    mean = f"| **mean** ({len(m['mean_over'])} findings) | | **{_fmt(m['mean_auroc'], m['mean_auroc_ci'])}** | | | | | |"
    if has_ref:
        mean += (f" **{_fmt(m['reference_mean_auroc'], m['reference_mean_auroc_ci'])}** | "
                 f"| **{_fmt(m['mean_difference'], m['mean_difference_ci'])}** |")
    lines.append(mean)
    if "triage" in m:
        t, op = m["triage"], m["triage"].get("operating_point") or {}
        lines += ["", f"**Triage** (any finding vs none): AUROC {_fmt(t['auroc'], t.get('auroc_ci'))}; "
                      f"sensitivity {_fmt(op.get('sensitivity'), op.get('sensitivity_ci'))}, "
                      f"specificity {_fmt(op.get('specificity'), op.get('specificity_ci'))} "
                      f"at threshold {_fmt(op.get('threshold'))} ({t['positives']} abnormal of {t['n']})."]
    if m.get("urgent"):
        lines += ["", *_urgent_markdown(m["urgent"])]
    if m.get("localization"):
        ts = [f"{t:.1f}" for t in IOU_THRESHOLDS]
        lines += ["", "**Localization** against radiologists' boxes (share of boxes found):", "",
                  "| finding | boxes | " + " | ".join(f"T(IoU)={t}" for t in ts) + " | T(IoBB)=0.5 | pointing game |",
                  "|---|---:|" + "---:|" * (len(ts) + 2)]
        for name, e in m["localization"].items():
            lines.append(f"| {name} | {e['boxes']} | " + " | ".join(f"{e['iou'][t]:.2f}" for t in ts)
                         + f" | {e['iobb']['0.5']:.2f} | {e['pointing_game']:.2f} |")
    if m.get("explanation_methods"):
        from radsight.evaluate.explain import methods_markdown
        lines += ["", *methods_markdown(m["explanation_methods"])]
    if m.get("robustness"):
        from radsight.evaluate.robustness import robustness_markdown
        lines += ["", *robustness_markdown(m["robustness"])]
    if m.get("anatomy"):
        a = m["anatomy"]
        boxes = a.get("ctr_against_heart_boxes") or {}
        if boxes.get("images"):
            lines += ["", f"**CTR against NIH's heart boxes** (box width over the measured thoracic width, "
                          f"{len(boxes['images'])} images): mean absolute error {boxes['mean_absolute_error']:.3f}; "
                      + ", ".join(f"{c['image']} {c['ctr']:.2f} vs {c['box_ctr']:.2f}" for c in boxes["images"]) + "."]
        if "ctr_for_cardiomegaly" in a:
            c = a["ctr_for_cardiomegaly"]
            op = c.get("operating_point") or {}
            lines += ["", f"**Cardiothoracic ratio as a Cardiomegaly score** ({a['lung_model']}; measured on "
                          f"{c['measured']} images, {a['implausible_segmentations']} implausible segmentations, "
                          f"{a.get('ctr_withheld', 0)} withheld by the border check): "
                          f"AUROC {_fmt(c['auroc'], c.get('auroc_ci'))}; at CTR > 0.5 sensitivity "
                          f"{_fmt(op.get('sensitivity'), op.get('sensitivity_ci'))}, specificity "
                          f"{_fmt(op.get('specificity'), op.get('specificity_ci'))} ({c['positives']} positives)."]
        if "boxes_of_positives" in a:
            b = a["boxes_of_positives"]
            lines += ["", f"**Boxes of positive findings**: {b['mostly_outside_thorax']} of {b['boxes']} lie mostly "
                          f"(half their area or more) outside the dilated thorax."]
        lines += ["", "**Share of CAM energy inside the dilated thorax** (lungs, mediastinum, heart), mean over images:",
                  "", "| finding | share |", "|---|---:|"]
        lines += [f"| {f} | {_fmt(v)} |" for f, v in a["cam_energy_in_thorax"].items()]
    lines += ["", "Plots: " + ", ".join(f"[{k}]({v})" for k, v in m.get("plots", {}).items()) + "."]
    return "\n".join(lines) + "\n"


def _urgent_markdown(u: dict) -> list[str]:
    rate = u["urgent_per_100_studies"]
    flagged = "—" if rate is None else f"{round(rate * u['studies'] / 100)} of {u['studies']} studies flagged urgent"
    lines = [f"**Urgent flags**: {flagged}. Policy: operating point for specificity "
             f"{u['policy']['target_specificity']:g} on the validation split; withheld below validated AUROC "
             f"{u['policy']['min_auroc']:g} or specificity {u['policy']['min_specificity']:g}, or with fewer than "
             f"{u['policy']['min_positives']} validation positives.", ""]
    for name, e in u["findings"].items():
        state = f"withheld ({e['withheld']})" if e["withheld"] else "in force"
        line = f"- {name}: {state}."
        op = e.get("operating_point")
        if op:
            line += (f" At its urgent point (p ≥ {op['threshold']:.3f}) on this set: sensitivity "
                     f"{_fmt(op['sensitivity'], op.get('sensitivity_ci'))}, specificity "
                     f"{_fmt(op['specificity'], op.get('specificity_ci'))}, PPV {_fmt(op['ppv'], op.get('ppv_ci'))}; "
                     f"{e['flags_per_100_if_in_force']:.1f} flags in 100 studies if it were in force.")
        if "flags_per_100_at_ordinary_threshold" in e:
            line += (f" Its ordinary threshold would flag {e['flags_per_100_at_ordinary_threshold']:.1f} in 100.")
        lines.append(line)
    return lines


def _print_table(m: dict) -> None:
    has_ref = "reference_mean_auroc" in m
    table = Table(title=f"AUROC on {m['source']['images']} images (95% CI, patient bootstrap)")
    for col in ("finding", "n+", "AUROC", "95% CI") + (("reference", "Δ [95% CI]") if has_ref else ()):
        table.add_column(col)
    mean_row = {"positives": "", "auroc": m["mean_auroc"], "auroc_ci": m["mean_auroc_ci"],
                "reference": {"auroc": m.get("reference_mean_auroc"), "difference": m.get("mean_difference"),
                              "difference_ci": m.get("mean_difference_ci")}}
    for name, e in [*m["per_label"].items(), ("mean", mean_row)]:
        ci = e.get("auroc_ci")
        row = [name, str(e["positives"]), _fmt(e["auroc"]) if e["auroc"] is not None else e.get("note", "—"),
               f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else ""]
        if has_ref:
            r = e.get("reference") or {}
            row += [_fmt(r.get("auroc")), _fmt(r.get("difference"), r.get("difference_ci"))]
        table.add_row(*row)
    Console(soft_wrap=True).print(table)


def from_request(r: EvaluateRequest) -> None:
    """``radsight evaluate --task findings`` (or ``abnormal``): a model, or a predictions CSV, on labelled images."""
    from radsight.evaluate.explain import chosen_methods
    r.need("manifest", "images")
    if r.predictions is not None and (r.explain or r.robustness):
        raise ValueError("--explain and --robustness need a --model, not --predictions")
    methods = chosen_methods(r.explain) if r.explain else []
    run_evaluation(r.manifest, r.images, r.out, None if r.predictions else r.model, r.predictions, r.reference,
                   r.split, r.bootstrap, methods, r.robustness, r.lung_model or DEFAULT_LUNG_MODEL)
