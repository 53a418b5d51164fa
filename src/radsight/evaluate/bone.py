"""``radsight evaluate --bone-pairs``: a bone suppression model against reference soft-tissue images.

Per image: PSNR, SSIM and MS-SSIM of the model's soft-tissue view and of the identity baseline (the
radiograph itself), over the whole image and inside the lung fields (found by the lung model on the
radiograph); with reference anatomy masks (``--masks``: a folder per structure, files named by patient id), PSNR
inside the clavicles, split into their part inside the lung fields and the part outside (BSE-JSRT's targets keep
the clavicles outside the lungs). Means with 95% bootstrap CIs over patients, and the paired difference model -
identity.
Each kind of pair (e.g. BSE-JSRT, dual-energy) is summarised on its own. Side-by-side images are written.
"""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from radsight.data.pairs import read_pairs, select
from radsight.evaluate.image_quality import ms_ssim, psnr, ssim
from radsight.evaluate.overlap import read_mask
from radsight.evaluate.request import EvaluateRequest
from radsight.evaluate.scores import Bootstrap, _ci
from radsight.heads.anatomy import LungModel
from radsight.heads.bone import BoneModel
from radsight.inputs.preprocess import resize
from radsight.io import load_image
from radsight.results.files import grey_png

METRICS = {"psnr": psnr, "ssim": ssim, "ms_ssim": ms_ssim}
REGIONS = ("image", "lungs", "clavicles-in-lungs", "clavicles-outside-lungs")
CLAVICLE_REGIONS = REGIONS[2:]  # PSNR only: SSIM's windows do not fit a thin band


def run_bone_evaluation(manifest: Path, images: Path, targets: Path | None, out: Path, bone_model: str,
                        lung_model: str, split: str | None = "test", bootstrap: int = 1000,
                        anatomy: Path | None = None) -> dict:
    pairs = select(read_pairs(manifest, images, targets), split)
    if not pairs:
        raise ValueError(f"{manifest}: no pairs in split {split!r}")
    bone, lungs = BoneModel(bone_model), LungModel(lung_model)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for pair in pairs:
        image, target = load_image(pair.image), load_image(pair.target).pixels
        if target.shape != image.pixels.shape:
            raise ValueError(f"{pair.target.name}: {target.shape[::-1]} is not the radiograph's size")
        soft = bone.views(image).soft_tissue
        inside = resize(lungs.segment(image).probability, image.height, image.width) >= 0.5
        row = {"image": pair.image.name, "patient_id": pair.patient_id, "kind": pair.kind or "pairs",
               "side_by_side": f"{pair.image.stem}.bone.png"}
        regions = {"image": None, "lungs": inside, **clavicle_regions(anatomy, pair.patient_id, image.height,
                                                                      image.width)}
        for region, mask in regions.items():
            if mask is not None and not mask.any():
                continue
            for metric, fn in METRICS.items():
                if region in CLAVICLE_REGIONS and metric != "psnr":
                    continue
                row[f"model_{metric}_{region}"] = fn(soft, target, mask)
                row[f"identity_{metric}_{region}"] = fn(image.pixels, target, mask)
        rows.append(row)
        _side_by_side(image.pixels, soft, target).save(out / row["side_by_side"])
    by_kind = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
    metrics = {"bone_model": bone.cfg.name, "lung_model": lungs.cfg.name, "manifest": str(manifest), "split": split,
               "summary": {kind: summarise(kind_rows, bootstrap) for kind, kind_rows in by_kind.items()},
               "per_image": rows}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "report.md").write_text(report_markdown(metrics))
    _print(metrics)
    return metrics


def clavicle_regions(anatomy: Path | None, patient_id: str, height: int, width: int) -> dict[str, np.ndarray]:
    """The reference clavicles' parts inside and outside the reference lung fields (none without masks for this
    patient)."""
    if anatomy is None:
        return {}
    files = {s: anatomy / s / f"{patient_id}.png" for s in ("right_clavicle", "left_clavicle", "right_lung", "left_lung")}
    if not all(f.is_file() for f in files.values()):
        return {}
    masks = {s: read_mask(f, height, width) > 0.5 for s, f in files.items()}
    clavicles, lungs = masks["right_clavicle"] | masks["left_clavicle"], masks["right_lung"] | masks["left_lung"]
    return {"clavicles-in-lungs": clavicles & lungs, "clavicles-outside-lungs": clavicles & ~lungs}


def summarise(rows: list[dict], n: int = 1000) -> dict:
    """Per region and metric: the model's and the identity's mean, and model - identity, each with a 95% CI."""
    weights = Bootstrap([r["patient_id"] for r in rows], n=n).weights().astype(np.float64)
    weights /= weights.sum(axis=1, keepdims=True)
    out = {"images": len(rows)}
    for region in REGIONS:
        for metric in METRICS:
            key = f"{metric}_{region}"
            if not all(f"model_{key}" in r for r in rows):
                continue
            model = np.array([r[f"model_{key}"] for r in rows])
            identity = np.array([r[f"identity_{key}"] for r in rows])
            out[key] = {name: {"mean": float(v.mean()), "ci": _ci(list(weights @ v))}
                        for name, v in (("model", model), ("identity", identity), ("difference", model - identity))}
    return out


def _summary_rows(summary: dict):
    """(metric, region, figures) for each measured metric of one kind's summary."""
    for key, figures in summary.items():
        if key != "images":
            metric, region = key.rsplit("_", 1)
            yield metric, region, figures


def _side_by_side(radiograph: np.ndarray, soft: np.ndarray, target: np.ndarray) -> Image.Image:
    """Radiograph | model's soft tissue | reference soft tissue | |model - reference| x 10."""
    error = np.clip(np.abs(soft - target) * 10, 0, 1)
    return grey_png(np.concatenate([radiograph, soft, target, error], axis=1))


def report_markdown(m: dict) -> str:
    lines = [f"# Bone suppression: {m['bone_model']}", "",
             f"Pairs: `{m['manifest']}`, split `{m['split']}`. Lung fields from {m['lung_model']}. "
             "Identity = the radiograph itself as the output. 95% CIs from a bootstrap over patients.", ""]
    for kind, summary in m["summary"].items():
        lines += [f"## {kind} ({summary['images']} images)", "",
                  "| metric | region | model | identity | model - identity |", "|---|---|---|---|---|"]
        for metric, region, v in _summary_rows(summary):
            cells = [f"{v[n]['mean']:.4f}" + (f" [{v[n]['ci'][0]:.4f}, {v[n]['ci'][1]:.4f}]" if v[n]["ci"] else "")
                     for n in ("model", "identity", "difference")]
            lines.append(f"| {metric} | {region} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _print(m: dict) -> None:
    console = Console(soft_wrap=True)
    for kind, summary in m["summary"].items():
        table = Table(title=f"{m['bone_model']} on {summary['images']} {kind} pairs ({m['split']})")
        for col in ("metric", "region", "model", "identity", "model - identity (95% CI)"):
            table.add_column(col)
        for metric, region, v in _summary_rows(summary):
            d = v["difference"]
            table.add_row(metric, region, f"{v['model']['mean']:.4f}", f"{v['identity']['mean']:.4f}",
                          f"{d['mean']:+.4f}" + (f" [{d['ci'][0]:+.4f}, {d['ci'][1]:+.4f}]" if d["ci"] else ""))
        console.print(table)


def from_request(r: EvaluateRequest) -> None:
    """``radsight evaluate --task bone-suppression``: paired films (``--bone-pairs``, else ``--manifest``)."""
    r.need("images")
    pairs = r.bone_pairs or r.manifest
    if pairs is None:
        raise ValueError(f"--task {r.task} needs --bone-pairs")
    run_bone_evaluation(pairs, r.images, r.targets, r.out, r.model, r.lung_model, r.split or "test", r.bootstrap,
                        r.masks)
