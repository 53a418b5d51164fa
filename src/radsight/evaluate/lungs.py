"""``radsight evaluate --masks``: a lung segmentation model against reference masks."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from rich.console import Console
from rich.table import Table
from scipy import ndimage

from radsight.evaluate.overlap import dice, hausdorff, iou, read_mask, side_dice
from radsight.heads.anatomy import LungModel
from radsight.heads.lung_geometry import outline
from radsight.inputs.preprocess import resize
from radsight.io import load_image

MAX_LISTED = 30  # more images than this: the report lists the worst ones only
OVERLAYS = 20  # overlays are drawn for this many images, the lowest Dice first


def run_segmentation_evaluation(manifest: Path, images: Path, masks: Path, out: Path, lung_model: str,
                                subset: list[str] | None, split: str | None = None) -> dict:
    """Each image against its reference mask (the manifest's ``mask`` column, else the image's own name); Dice
    also for each lung (the patient's right and left), which tells a difference of convention at the heart, where
    some references draw the lung behind it, from a lung the model missed."""
    with open(manifest, newline="") as fh:
        rows = [row for row in csv.DictReader(fh) if split is None or row.get("split") == split]
    if not rows:
        raise ValueError(f"no rows{f' of split {split!r}' if split else ''} in {manifest}")
    names = [row["image"] for row in rows]
    mask_of = {row["image"]: row.get("mask") or row["image"] for row in rows}
    source_of = {row["image"]: row.get("source") for row in rows}
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
        truth = read_mask(masks / mask_of[name], image.height, image.width) > 0.5
        right, left = side_dice(predicted, truth)
        per_image[name] = {"dice": dice(predicted, truth), "dice_right": right, "dice_left": left,
                           "iou": iou(predicted, truth),
                           "hausdorff_px": _defined(hausdorff(predicted, truth)), "plausible": anatomy.plausible,
                           "reason": anatomy.reason, "source": source_of[name], "size": [image.width, image.height],
                           "ctr": anatomy.ctr.value if anatomy.ctr else None,
                           "ctr_withheld": anatomy.ctr.reason if anatomy.ctr else None}
    for name in sorted(per_image, key=lambda n: per_image[n]["dice"])[:OVERLAYS]:
        image = load_image(images / name)
        truth = read_mask(masks / mask_of[name], image.height, image.width) > 0.5
        labels = lungs.segment(image).labels
        predicted = resize((labels > 0).astype(np.float32), image.height, image.width) > 0.5
        per_image[name]["overlay"] = f"{Path(name).stem}.seg.png"
        _overlay(image.pixels, truth, predicted).save(out / per_image[name]["overlay"])
    metrics = {"lung_model": lungs.cfg.name, "manifest": str(manifest), "split": split, "images": len(per_image),
               "per_image": per_image, "mean": _summary(per_image.values()),
               "by_source": {src: _summary([v for v in per_image.values() if v["source"] == src])
                             for src in sorted({v["source"] for v in per_image.values() if v["source"]})}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(_report(metrics))
    table = Table(title=f"{metrics['lung_model']} on {len(per_image)} images")
    for col in ("image", "Dice", "IoU", "Hausdorff (px)", "plausible"):
        table.add_column(col)
    for name, v in [*_listed(per_image), ("mean", {**metrics["mean"], "plausible": ""})]:
        table.add_row(name, f"{v['dice']:.4f}", f"{v['iou']:.4f}", _px(v["hausdorff_px"]), str(v["plausible"]))
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


def _summary(values) -> dict:
    values = list(values)
    out = {k: float(np.mean([v[k] for v in values])) for k in ("dice", "dice_right", "dice_left", "iou")}
    distances = [v["hausdorff_px"] for v in values if v["hausdorff_px"] is not None]
    # a film with no lung found (or no reference) has no boundary distance: counted apart, not averaged as infinite
    out.update(hausdorff_px=float(np.mean(distances)) if distances else None,
               hausdorff_undefined=len(values) - len(distances))
    dices = np.asarray([v["dice"] for v in values])
    out.update(images=len(values), median_dice=float(np.median(dices)), dice_p05=float(np.percentile(dices, 5)),
               below_0_9=int((dices < 0.9).sum()), plausible=float(np.mean([v["plausible"] for v in values])),
               ctr_withheld=int(sum(1 for v in values if v.get("ctr_withheld"))))
    return out


def _listed(per_image: dict) -> list[tuple[str, dict]]:
    """Every image, or the MAX_LISTED with the lowest Dice."""
    items = list(per_image.items())
    return items if len(items) <= MAX_LISTED else sorted(items, key=lambda kv: kv[1]["dice"])[:MAX_LISTED]


def _report(m: dict) -> str:
    split = f" (split {m['split']})" if m.get("split") else ""
    lines = [f"# Lung segmentation: {m['lung_model']}", "", f"{m['images']} images from `{m['manifest']}`{split}.", "",
             "| set | images | mean Dice | right lung | left lung | median Dice | 5th pct. Dice | Dice < 0.9 | mean IoU "
             "| mean Hausdorff (px) | plausible | CTR withheld |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, v in [("all", m["mean"]), *m["by_source"].items()]:
        lines.append(f"| {name} | {v['images']} | {v['dice']:.4f} | {v['dice_right']:.4f} | {v['dice_left']:.4f} | "
                     f"{v['median_dice']:.4f} | {v['dice_p05']:.4f} | "
                     f"{v['below_0_9']} | {v['iou']:.4f} | {_px(v['hausdorff_px'])} | {v['plausible']:.1%} | "
                     f"{v['ctr_withheld']} |")
    listed = _listed(m["per_image"])
    lines += ["", "Per image" + (f" (the {len(listed)} lowest Dice)" if len(listed) < m["images"] else "") + ":", "",
              "| image | Dice | right lung | left lung | IoU | Hausdorff (px) | plausible |", "|---|---:|---:|---:|---:|---:|---|"]
    for name, v in listed:
        lines.append(f"| {name} | {v['dice']:.4f} | {v['dice_right']:.4f} | {v['dice_left']:.4f} | {v['iou']:.4f} | "
                     f"{_px(v['hausdorff_px'])} | {v['plausible']} |")
    return "\n".join(lines) + "\n"


def _defined(distance: float) -> float | None:
    return distance if np.isfinite(distance) else None


def _px(distance: float | None) -> str:
    return "—" if distance is None else f"{distance:.1f}"
