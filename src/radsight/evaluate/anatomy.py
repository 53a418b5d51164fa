"""``radsight evaluate --task anatomy --masks DIR`` where DIR holds a folder per structure (``heart``,
``right_lung``, ``left_lung``, ``right_clavicle``, ``left_clavicle``): each structure's Dice (bootstrap 95% CI
over cases), average surface distance and Hausdorff distance (mm with ``--pixel-spacing-mm`` or DICOM spacing,
else pixels), the CTR against the one measured on the reference masks by both methods, and with ``--landmarks``
the outline landmarks traced from the predicted masks against the reference ones. A flat folder of lung masks is
evaluated as before (``evaluate.lungs``)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from radsight.evaluate.lungs import run_segmentation_evaluation
from radsight.evaluate.overlap import dice, read_mask, surface_distances
from radsight.evaluate.progress import stage
from radsight.evaluate.request import EvaluateRequest
from radsight.evaluate.scores import Bootstrap, _ci
from radsight.heads.anatomy import STRUCTURES, LungModel
from radsight.heads.heart_geometry import heart_ratio
from radsight.heads.landmarks import Placement, densify
from radsight.heads.lung_geometry import LEFT, RIGHT, cardiothoracic_ratio, outline
from radsight.inputs.preprocess import resize
from radsight.io import load_image


def bootstrap_ci(values: list[float], resamples: int) -> list[float] | None:
    """95% interval of the mean over cases resampled with replacement (:class:`Bootstrap`, a case each)."""
    v = np.asarray([x for x in values if np.isfinite(x)])
    if len(v) < 2 or resamples < 1:
        return None
    weights = Bootstrap([str(i) for i in range(len(v))], n=resamples).weights().astype(np.float64)
    return _ci(list(weights @ v / weights.sum(axis=1)))


def predicted_masks(found, height: int, width: int) -> dict[str, np.ndarray]:
    """The model's structures at the image's size (a lung model: the two lungs only)."""
    def full(mask: np.ndarray) -> np.ndarray:
        return resize(mask.astype(np.float32), height, width) > 0.5
    masks = {"right_lung": full(found.labels == RIGHT), "left_lung": full(found.labels == LEFT)}
    for name, mask in (found.masks or {}).items():
        masks[name] = full(mask)
    return masks


def reference_ctr(masks: dict[str, np.ndarray]) -> float | None:
    """The CTR measured on the reference masks (heart outline, lungs' outer borders)."""
    labels = masks["right_lung"].astype(np.uint8) * RIGHT + (masks["left_lung"] & ~masks["right_lung"]) * LEFT
    ratio = heart_ratio(masks["heart"], labels.astype(np.uint8), *labels.shape, None)
    return ratio.value if ratio is not None else None


def read_landmarks(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """landmarks.csv (image, structure, index, x, y; structures named with spaces) as image -> structure -> (n, 2)."""
    points: dict[str, dict[str, list]] = {}
    with open(path, newline="") as fh:
        for row in csv.DictReader(fh):
            name = row["structure"].strip().replace(" ", "_")
            points.setdefault(row["image"], {}).setdefault(name, []).append(
                (int(row["index"]), float(row["x"]), float(row["y"])))
    return {image: {s: np.array(sorted(p))[:, 1:] for s, p in by.items()} for image, by in points.items()}


def landmark_errors(predicted: dict[str, np.ndarray], reference: dict[str, np.ndarray],
                    placement: Placement = Placement()) -> dict[str, float]:
    """Mean point-to-point error (the points placed as the anatomy head places them, against the reference's, in
    order; and, to compare, the points traced at equal arc length and at the fitted shares alone) and
    point-to-outline error (each reference point to the predicted outline), in pixels, over the structures both
    have."""
    errors: dict[str, list[float]] = {k: [] for k in ("point_to_point", "point_to_point_equal_arcs",
                                                      "point_to_point_shares", "point_to_outline")}
    traced_only = Placement(placement.shares)
    for name, ref in reference.items():
        mask = predicted.get(name)
        if mask is None or not mask.any():
            continue
        polygon = np.asarray(outline(mask, 1.0, 1.0, max_points=4000))
        errors["point_to_outline"] += list(cKDTree(densify(polygon)).query(ref)[0])
        for key, how in (("point_to_point", placement), ("point_to_point_equal_arcs", Placement()),
                         ("point_to_point_shares", traced_only)):
            errors[key] += list(np.hypot(*(np.asarray(how.place(polygon, name, len(ref))) - ref).T))
    return {k: float(np.mean(v)) if v else float("nan") for k, v in errors.items()}


def run_anatomy_evaluation(r: EvaluateRequest) -> dict:
    structures = [s for s in STRUCTURES if (r.masks / s).is_dir()]
    with open(r.manifest, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if r.split is None or row.get("split") == r.split]
    if r.subset:
        rows = [row for row in rows if row["image"] in r.subset]
    if not rows:
        raise ValueError(f"no rows{f' of split {r.split!r}' if r.split else ''} in {r.manifest}")
    landmarks = read_landmarks(r.landmarks) if r.landmarks else {}
    model = LungModel(r.model)
    per_image = {}
    with stage("anatomy", len(rows)) as progress:
        for row in rows:
            per_image[row["image"]] = _one(model, r, row, structures, landmarks.get(row["image"]))
            progress.advance()
    metrics = _summary(per_image, structures, r)
    r.out.mkdir(parents=True, exist_ok=True)
    (r.out / "metrics.json").write_text(json.dumps({**metrics, "per_image": per_image}, indent=2) + "\n")
    (r.out / "report.md").write_text(_report(metrics))
    return metrics


def _one(model: LungModel, r: EvaluateRequest, row: dict, structures: list[str], points) -> dict:
    image = load_image(r.images / row["image"])
    found = model.segment(image)
    predicted = predicted_masks(found, image.height, image.width)
    truth = {s: read_mask(r.masks / s / (row.get("mask") or row["image"]), image.height, image.width) > 0.5
             for s in structures}
    spacing = r.pixel_spacing_mm or (image.meta.pixel_spacing_mm[1] if image.meta.pixel_spacing_mm else None)
    scale = spacing or 1.0
    out = {"plausible": found.anatomy.plausible, "reason": found.anatomy.reason, "spacing_mm": spacing,
           "structures": {}}
    for s in structures:
        if s not in predicted:
            continue
        assd, hd = surface_distances(predicted[s], truth[s])
        out["structures"][s] = {"dice": dice(predicted[s], truth[s]), "assd": assd * scale, "hausdorff": hd * scale}
    if {"heart", "right_lung", "left_lung"} <= set(structures):
        ctr = found.anatomy.ctr
        borders = cardiothoracic_ratio(found.labels, image.height, image.width, None)
        out["ctr"] = {"reference": reference_ctr(truth),
                      "heart": ctr.value if ctr is not None and ctr.method == "heart" else None,
                      "lung_borders": borders.value if borders is not None else None}
    if points:
        out["landmarks"] = {k: v * scale for k, v in landmark_errors(
            predicted, points, model.landmarks).items()}
    return out


def _summary(per_image: dict, structures: list[str], r: EvaluateRequest) -> dict:
    unit = "mm" if any(v["spacing_mm"] for v in per_image.values()) else "px"
    mean: dict[str, dict] = {}
    for s in structures:
        found = [v["structures"][s] for v in per_image.values() if s in v["structures"]]
        if not found:
            continue
        dices = [f["dice"] for f in found]
        mean[s] = {"dice": float(np.mean(dices)), "dice_ci": bootstrap_ci(dices, r.bootstrap),
                   f"assd_{unit}": float(np.mean([f["assd"] for f in found])),
                   f"hausdorff_{unit}": float(np.mean([f["hausdorff"] for f in found])), "images": len(found)}
    if "right_lung" in mean and "left_lung" in mean:
        lungs = [(v["structures"]["right_lung"]["dice"] + v["structures"]["left_lung"]["dice"]) / 2
                 for v in per_image.values() if "right_lung" in v["structures"]]
        mean["lungs"] = {"dice": float(np.mean(lungs)), "dice_ci": bootstrap_ci(lungs, r.bootstrap)}
    out = {"model": r.model, "manifest": str(r.manifest), "split": r.split, "images": len(per_image), "unit": unit,
           "plausible": float(np.mean([v["plausible"] for v in per_image.values()])),
           "segmentation": {"mean": mean}}
    ctrs = [v["ctr"] for v in per_image.values() if v.get("ctr") and v["ctr"]["reference"] is not None]
    if ctrs:
        out["ctr"] = {method: _agreement([c[method] - c["reference"] for c in ctrs if c[method] is not None],
                                         len(ctrs), r.bootstrap)
                      for method in ("heart", "lung_borders")}
    marks = [v["landmarks"] for v in per_image.values() if "landmarks" in v]
    if marks:
        out["landmarks"] = {"mean": {f"{k}_{unit}": float(np.nanmean([m[k] for m in marks]))
                                     for k in marks[0]}, "images": len(marks)}
    return out


def _agreement(differences: list[float], cases: int, resamples: int) -> dict:
    """Mean absolute error (bootstrap CI) and Bland-Altman bias and 95% limits of agreement."""
    d = np.asarray(differences)
    if not len(d):
        return {"measured": 0, "cases": cases}
    sd = float(d.std(ddof=1)) if len(d) > 1 else 0.0
    return {"mae": float(np.abs(d).mean()), "mae_ci": bootstrap_ci(list(np.abs(d)), resamples),
            "bias": float(d.mean()), "limits": [float(d.mean() - 1.96 * sd), float(d.mean() + 1.96 * sd)],
            "measured": int(len(d)), "cases": cases}


def _report(m: dict) -> str:
    unit = m["unit"]
    lines = [f"# Anatomy: {m['model']}", "", f"{m['images']} images from `{m['manifest']}`"
             + (f" (split {m['split']})" if m["split"] else "") + f"; plausible {m['plausible']:.1%}.", "",
             f"| structure | Dice | 95% CI | ASSD ({unit}) | Hausdorff ({unit}) |", "|---|---:|---|---:|---:|"]
    for name, v in m["segmentation"]["mean"].items():
        ci = "–".join(f"{x:.4f}" for x in v["dice_ci"]) if v.get("dice_ci") else ""
        lines.append(f"| {name} | {v['dice']:.4f} | {ci} | {v.get(f'assd_{unit}', float('nan')):.2f} | "
                     f"{v.get(f'hausdorff_{unit}', float('nan')):.2f} |")
    for method, v in m.get("ctr", {}).items():
        if v.get("measured"):
            lines.append(f"\nCTR by {method}: MAE {v['mae']:.4f} against the reference masks' CTR, bias "
                         f"{v['bias']:+.4f}, limits of agreement {v['limits'][0]:+.4f} to {v['limits'][1]:+.4f} "
                         f"({v['measured']} of {v['cases']} measured).")
    if "landmarks" in m:
        v = m["landmarks"]["mean"]
        lines.append(f"\nLandmarks on the predicted outlines: point-to-outline {v[f'point_to_outline_{unit}']:.2f} "
                     f"{unit}; point-to-point {v[f'point_to_point_{unit}']:.2f} {unit} as the head places them "
                     f"(traced at equal arc length: {v[f'point_to_point_equal_arcs_{unit}']:.2f}; at the fitted "
                     f"shares alone: {v[f'point_to_point_shares_{unit}']:.2f}).")
    return "\n".join(lines) + "\n"


def from_request(r: EvaluateRequest) -> None:
    """``radsight evaluate --task anatomy``: per structure with structure folders, else the lung evaluation."""
    r.need("manifest", "images", "masks")
    if not any((r.masks / s).is_dir() for s in STRUCTURES):
        run_segmentation_evaluation(r.manifest, r.images, r.masks, r.out, r.model, list(r.subset), r.split)
        return
    run_anatomy_evaluation(r)
