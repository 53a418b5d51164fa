"""``radsight evaluate``: score a labelled set (or read saved scores), measure, write the report."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from radsight.calibration import label_matrix
from radsight.core import FINDINGS
from radsight.data.manifest import read_manifest
from radsight.data.predictions import read_predictions
from radsight.evaluation import Bootstrap, evaluate_scores
from radsight.models.config import TRIAGE_LABEL


def run_evaluation(manifest_path: Path, images: Path, out: Path, model: str | None, predictions: Path | None,
                   reference: Path | None, split: str | None, n_boot: int) -> dict:
    manifest = read_manifest(manifest_path, images)
    if split:
        manifest = manifest.select(split)
    thresholds: dict[str, float] = {}
    source: dict = {"manifest": str(manifest_path), "images": len(manifest), "split": split}
    if model is not None:
        from rich.progress import Progress

        from radsight.pipeline import Predictor, score_manifest
        predictor = Predictor(model)
        labels, thresholds = predictor.cfg.labels, dict(predictor.cfg.thresholds)
        with Progress(transient=True) as progress:
            task = progress.add_task("scoring", total=len(manifest))
            scores, errors = score_manifest(predictor, manifest, on_progress=lambda n: progress.advance(task, n))
        source.update(model=predictor.cfg.name, version=predictor.cfg.version, unreadable=[str(e) for e in errors])
    else:
        labels = list(FINDINGS)
        scores = read_predictions(predictions, manifest.images, labels)
        source.update(predictions=str(predictions))
    y = label_matrix(manifest, labels)
    findings = [label for label in labels if label in FINDINGS]
    cols = [labels.index(f) for f in findings]
    ref = read_predictions(reference, manifest.images, findings) if reference else None
    boot = Bootstrap(manifest.patient_ids, n=n_boot)
    metrics = {"source": source, **evaluate_scores(findings, y[:, cols], scores[:, cols], thresholds, boot, ref)}
    if TRIAGE_LABEL in labels:
        j = labels.index(TRIAGE_LABEL)
        metrics["triage"] = evaluate_scores([TRIAGE_LABEL], y[:, [j]], scores[:, [j]], thresholds, boot)["per_label"][TRIAGE_LABEL]
    if reference:
        metrics["source"]["reference"] = str(reference)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default) + "\n")
    (out / "report.md").write_text(report_markdown(metrics))
    _print_table(metrics)
    return metrics


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise TypeError(type(value).__name__)


def _fmt(value, ci=None) -> str:
    if value is None:
        return "—"
    return f"{value:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def report_markdown(m: dict) -> str:
    has_ref = "reference_mean_auroc" in m
    head = "| finding | n+ | AUROC [95% CI] | sens. | spec. | PPV | threshold |"
    rule = "|---|---:|---|---:|---:|---:|---:|"
    if has_ref:
        head += " reference AUROC | Δ AUROC [95% CI] |"
        rule += "---|---|"
    lines = [f"# Evaluation: {m['source'].get('model') or m['source'].get('predictions')}", "",
             f"Images: {m['source']['images']} from `{m['source']['manifest']}`"
             + (f" (split {m['source']['split']})" if m['source'].get('split') else "") + ". "
             f"95% CIs: {m['bootstrap']['resamples']} bootstrap resamples of patients.", "", head, rule]
    for name, e in m["per_label"].items():
        op = e.get("operating_point") or {}
        row = (f"| {name} | {e['positives']} | {_fmt(e['auroc'], e.get('auroc_ci')) if e['auroc'] is not None else e.get('note')} "
               f"| {_fmt(op.get('sensitivity'))} | {_fmt(op.get('specificity'))} | {_fmt(op.get('ppv'))} "
               f"| {_fmt(op.get('threshold'))} |")
        if has_ref:
            r = e.get("reference") or {}
            row += f" {_fmt(r.get('auroc'), r.get('auroc_ci'))} | {_fmt(r.get('difference'), r.get('difference_ci'))} |"
        lines.append(row)
    mean = f"| **mean** ({len(m['mean_over'])} findings) | | **{_fmt(m['mean_auroc'], m['mean_auroc_ci'])}** | | | | |"
    if has_ref:
        mean += (f" **{_fmt(m['reference_mean_auroc'], m['reference_mean_auroc_ci'])}** "
                 f"| **{_fmt(m['mean_difference'], m['mean_difference_ci'])}** |")
    lines.append(mean)
    if "triage" in m:
        t, op = m["triage"], m["triage"].get("operating_point") or {}
        lines += ["", f"Triage (any finding vs none): AUROC {_fmt(t['auroc'], t.get('auroc_ci'))}, "
                      f"sensitivity {_fmt(op.get('sensitivity'))}, specificity {_fmt(op.get('specificity'))} "
                      f"at threshold {_fmt(op.get('threshold'))} ({t['positives']} abnormal of {t['n']})."]
    return "\n".join(lines) + "\n"


def _print_table(m: dict) -> None:
    table = Table(title=f"AUROC on {m['source']['images']} images (95% CI, patient bootstrap)")
    for col in ("finding", "n+", "AUROC", "95% CI"):
        table.add_column(col)
    if "reference_mean_auroc" in m:
        table.add_column("reference")
        table.add_column("Δ [95% CI]")
    for name, e in [*m["per_label"].items(), ("mean", {"positives": "", "auroc": m["mean_auroc"],
                                                      "auroc_ci": m["mean_auroc_ci"],
                                                      "reference": {"auroc": m.get("reference_mean_auroc"),
                                                                    "difference": m.get("mean_difference"),
                                                                    "difference_ci": m.get("mean_difference_ci")}})]:
        ci = e.get("auroc_ci")
        row = [name, str(e["positives"]), _fmt(e["auroc"]) if e["auroc"] is not None else e.get("note", "—"),
               f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else ""]
        if "reference_mean_auroc" in m:
            r = e.get("reference") or {}
            row += [_fmt(r.get("auroc")), _fmt(r.get("difference"), r.get("difference_ci"))]
        table.add_row(*row)
    Console().print(table)
