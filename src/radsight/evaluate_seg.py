"""``radsight evaluate --masks``: a lung segmentation model against reference masks."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from rich.console import Console
from rich.table import Table

from radsight.anatomy import outline
from radsight.io import load_image
from radsight.lung_model import LungModel
from radsight.preprocess import resize
from radsight.segmentation import dice, hausdorff, iou, read_mask


def run_segmentation_evaluation(manifest: Path, images: Path, masks: Path, out: Path, lung_model: str,
                                subset: list[str] | None) -> dict:
    with open(manifest, newline="") as fh:
        names = [row["image"] for row in csv.DictReader(fh)]
    if subset:
        missing = set(subset) - set(names)
        if missing:
            raise ValueError(f"not in the manifest: {', '.join(sorted(missing))}")
        names = [n for n in names if n in subset]
    lungs = LungModel(lung_model)
    out.mkdir(parents=True, exist_ok=True)
    per_image = {}
    for name in names:
        image = load_image(images / name)
        found = lungs.segment(image)
        anatomy, labels = found.anatomy, found.labels
        predicted = resize((labels > 0).astype(np.float32), image.height, image.width) > 0.5
        truth = read_mask(masks / name, image.height, image.width) > 0.5
        per_image[name] = {"dice": dice(predicted, truth), "iou": iou(predicted, truth),
                           "hausdorff_px": hausdorff(predicted, truth), "plausible": anatomy.plausible,
                           "reason": anatomy.reason, "overlay": f"{Path(name).stem}.seg.png"}
        _overlay(image.pixels, truth, predicted).save(out / per_image[name]["overlay"])
    metrics = {"lung_model": lungs.cfg.name, "manifest": str(manifest), "images": len(per_image),
               "per_image": per_image,
               "mean": {k: float(np.mean([v[k] for v in per_image.values()])) for k in ("dice", "iou", "hausdorff_px")}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(_report(metrics))
    table = Table(title=f"{metrics['lung_model']} on {len(per_image)} images")
    for col in ("image", "Dice", "IoU", "Hausdorff (px)", "plausible"):
        table.add_column(col)
    for name, v in [*per_image.items(), ("mean", {**metrics["mean"], "plausible": ""})]:
        table.add_row(name, f"{v['dice']:.4f}", f"{v['iou']:.4f}", f"{v['hausdorff_px']:.1f}", str(v["plausible"]))
    Console(soft_wrap=True).print(table)
    return metrics


def _overlay(pixels: np.ndarray, truth: np.ndarray, predicted: np.ndarray) -> Image.Image:
    """The radiograph with the reference outline (green) and the predicted one (cyan)."""
    picture = Image.fromarray(np.round(pixels * 255).astype(np.uint8), mode="L").convert("RGB")
    draw = ImageDraw.Draw(picture)
    for mask, colour in ((truth, (0, 230, 0)), (predicted, (0, 220, 255))):
        regions, count = ndimage.label(mask)
        for k in range(1, count + 1):
            points = outline(regions == k, 1.0, 1.0)
            draw.line(points + points[:1], fill=colour, width=2)
    return picture


def _report(m: dict) -> str:
    lines = [f"# Lung segmentation: {m['lung_model']}", "", f"{m['images']} images from `{m['manifest']}`.", "",
             "| image | Dice | IoU | Hausdorff (px) | plausible |", "|---|---:|---:|---:|---|"]
    for name, v in m["per_image"].items():
        lines.append(f"| {name} | {v['dice']:.4f} | {v['iou']:.4f} | {v['hausdorff_px']:.1f} | {v['plausible']} |")
    mean = m["mean"]
    lines.append(f"| **mean** | **{mean['dice']:.4f}** | **{mean['iou']:.4f}** | **{mean['hausdorff_px']:.1f}** | |")
    return "\n".join(lines) + "\n"
