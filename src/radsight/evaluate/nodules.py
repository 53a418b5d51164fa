"""The nodule detector measured per lesion (``radsight evaluate --task nodules``): FROC (sensitivity at 1/8 to 8
false positives per image), the CPM, the image-level AUROC of each film's best score, sensitivity by subtlety and
size at the model's operating point, with case-bootstrap 95% CIs; and a picture of each film with a nodule or a
false positive above the operating point (reference circles cyan, hits green, false positives red).

The manifest gives ``nodule_x``, ``nodule_y`` (pixels of the image as stored), ``nodule_size_mm`` and optionally
``nodule_subtlety``; a row without ``nodule_x`` is a film without a nodule."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from radsight.core import InputError
from radsight.evaluate.froc import MIN_RADIUS_MM, Case, froc, mark, reaches
from radsight.evaluate.progress import stage
from radsight.evaluate.request import EvaluateRequest
from radsight.heads.anatomy import LungModel
from radsight.heads.lung_geometry import nodule_region
from radsight.heads.nodules import decode
from radsight.inputs.preprocess import prepare
from radsight.io import load_image
from radsight.models.config import ModelConfig
from radsight.models.store import get_model
from radsight.runtime.onnx import OnnxModel


def detect_all(cfg: ModelConfig, lung_model: str, rows: list[dict], images: Path, spacing_mm: float | None
               ) -> tuple[list[Case], list[dict], list[str]]:
    """Every candidate (down to the decoder's floor, not only above the operating point) of every readable film,
    as FROC cases in the films' own pixels; the rows read, and the errors of those that could not be."""
    session, lungs = OnnxModel(cfg), LungModel(lung_model)
    cases, read, errors = [], [], []
    with stage(f"detecting on {len(rows)} films", len(rows)) as progress:
        for r in rows:
            try:
                image = load_image(images / r["image"])
            except InputError as exc:
                errors.append(str(exc))
                progress.advance()
                continue
            maps = session.run(prepare(image, cfg.input)[0][None])["nodule_maps"][0]
            found = lungs.segment(image)
            region = nodule_region(found.labels) if found.anatomy.plausible else None
            size = maps.shape[-1]
            sx, sy = image.width / size, image.height / size
            points = [] if region is None else [(x * sx, y * sy, s) for x, y, _, s in decode(maps[0], maps[1], region)]
            spacing = spacing_mm or (float(np.mean(image.meta.pixel_spacing_mm)) if image.meta.pixel_spacing_mm
                                     else None)
            if spacing is None:
                raise ValueError(f"{r['image']}: no pixel spacing; give --pixel-spacing-mm")
            lesions = [(float(r["nodule_x"]), float(r["nodule_y"]), float(r["nodule_size_mm"]))] \
                if (r.get("nodule_x") or "").strip() else []
            tags = [{"subtlety": r.get("nodule_subtlety") or "?", "size": _size_group(float(r["nodule_size_mm"]))}] \
                if lesions else []
            cases.append(Case(lesions, points, spacing, tags))
            read.append(r)
            progress.advance()
    return cases, read, errors


def _size_group(mm: float) -> str:
    return "<10 mm" if mm < 10 else "10-20 mm" if mm <= 20 else ">20 mm"


def by_group(cases: list[Case], threshold: float, key: str) -> dict[str, dict]:
    """Share of each group's lesions found by a detection scoring at least ``threshold``."""
    m, groups, first = mark(cases), {}, 0
    found = set(m.lesion[(m.lesion >= 0) & (m.scores >= threshold)].tolist())
    for c in cases:
        for j, tag in enumerate(c.tags):
            g = groups.setdefault(str(tag[key]), {"lesions": 0, "found": 0})
            g["lesions"] += 1
            g["found"] += int(first + j in found)
        first += len(c.lesions)
    return {k: {**v, "sensitivity": v["found"] / v["lesions"]} for k, v in sorted(groups.items())}


def pictures(cases: list[Case], rows: list[dict], images: Path, threshold: float, out: Path, limit: int = 12) -> list[str]:
    """A picture of each film with a nodule or a false positive at the operating point (up to ``limit``)."""
    written = []
    for case, r in zip(cases, rows):
        shown = [d for d in case.detections if d[2] >= threshold]
        if not case.lesions and not shown or len(written) >= limit:
            continue
        film = Image.open(images / r["image"]).convert("RGB")
        draw = ImageDraw.Draw(film)
        for lx, ly, d in case.lesions:
            reach = max(d / 2, MIN_RADIUS_MM) / case.spacing_mm
            draw.ellipse([lx - reach, ly - reach, lx + reach, ly + reach], outline=(0, 220, 255), width=2)
        for x, y, s in shown:
            hit = any(reaches(x, y, lesion, case.spacing_mm) for lesion in case.lesions)
            draw.ellipse([x - 6, y - 6, x + 6, y + 6], outline=(0, 255, 0) if hit else (255, 60, 60), width=2)
            draw.text((x + 8, y - 8), f"{s:.2f}", fill=(0, 255, 0) if hit else (255, 60, 60))
        name = f"{Path(r['image']).stem}.detections.png"
        film.save(out / name)
        written.append(name)
    return written


def evaluate_nodules(cfg: ModelConfig, lung_model: str, rows: list[dict], images: Path, out: Path,
                     spacing_mm: float | None = None, bootstrap: int = 1000) -> dict:
    cases, read, errors = detect_all(cfg, lung_model, rows, images, spacing_mm)
    threshold = float(cfg.fitted.get("threshold", 0.5))
    metrics = {"model": cfg.name, "version": cfg.version, "lung_model": lung_model, "threshold": threshold,
               "froc": froc(cases, bootstrap), "unreadable": errors}
    metrics["image_auroc"] = metrics["froc"].pop("image_auroc")
    metrics["image_auroc_ci"] = metrics["froc"].pop("image_auroc_ci", None)
    metrics["by_subtlety"] = by_group(cases, threshold, "subtlety")
    metrics["by_size"] = by_group(cases, threshold, "size")
    marks = mark(cases)
    metrics["at_threshold"] = {
        "found": sum(g["found"] for g in metrics["by_size"].values()),
        "false_positives_per_image": int(((marks.lesion == -1) & (marks.scores >= threshold)).sum()) / max(1, len(cases))}
    out.mkdir(parents=True, exist_ok=True)
    metrics["pictures"] = pictures(cases, read, images, threshold, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(report(metrics))
    return metrics


def report(m: dict) -> str:
    f = m["froc"]
    ci = f.get("sensitivity_ci", {})
    lines = [f"# Nodule detection: {m['model']} {m['version']}", "",
             f"{f['cases']} films, {f['lesions']} nodules; 95% CIs from a case bootstrap.", "",
             "| false positives per image | " + " | ".join(f["sensitivity"]) + " |",
             "|---|" + "---|" * len(f["sensitivity"]),
             "| sensitivity | " + " | ".join(f"{v:.2f}" + (f" [{ci[k][0]:.2f}, {ci[k][1]:.2f}]" if k in ci else "")
                                          for k, v in f["sensitivity"].items()) + " |", "",
             f"CPM {f['cpm']:.3f}" + (f" [{f['cpm_ci'][0]:.3f}, {f['cpm_ci'][1]:.3f}]" if "cpm_ci" in f else "")
             + f"; image-level AUROC {m['image_auroc']:.3f}.", "",
             f"At the operating point ({m['threshold']:.3f}): {m['at_threshold']['found']} of {f['lesions']} found, "
             f"{m['at_threshold']['false_positives_per_image']:.2f} false positives per image.", "",
             "| subtlety | nodules | found |", "|---|---|---|"]
    lines += [f"| {k} | {v['lesions']} | {v['found']} |" for k, v in m["by_subtlety"].items()]
    lines += ["", "| size | nodules | found |", "|---|---|---|"]
    lines += [f"| {k} | {v['lesions']} | {v['found']} |" for k, v in m["by_size"].items()]
    return "\n".join(lines + [""])


def from_request(r: EvaluateRequest) -> str:
    r.need("manifest", "images")
    with open(r.manifest, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if r.split is None or row.get("split") == r.split]
    if not rows:
        raise ValueError("no rows to evaluate")
    m = evaluate_nodules(get_model(r.model), r.lung_model or "radsight-lung-unet", rows, r.images, r.out,
                         r.pixel_spacing_mm, r.bootstrap)
    return (f"{m['froc']['lesions']} nodules on {m['froc']['cases']} films: CPM {m['froc']['cpm']:.3f}, sensitivity "
            f"at 2 FP/image {m['froc']['sensitivity']['2']:.2f}; report in {r.out}")
