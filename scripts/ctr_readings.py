"""How well each way of reading the CTR ranks Cardiomegaly on labelled films (never the benchmark: this chooses a
method): the heart's outline at several thresholds of its map, the lung fields' inner borders, and their mean and
maximum, each as a score against the manifest's ``Cardiomegaly`` column (AUROC over the films it was measured on).

    python scripts/ctr_readings.py --model radsight-anatomy \
        --manifest ../shared/data/nih-cxr14/train64/manifest.csv --images ../shared/data/nih-cxr14/train64/images
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from radsight.heads.anatomy import STRUCTURES, LungModel
from radsight.heads.heart_geometry import heart_ratio, largest_region
from radsight.heads.lung_geometry import cardiothoracic_ratio
from radsight.inputs.preprocess import prepare, resize
from radsight.io import load_image

THRESHOLDS = (0.3, 0.4, 0.5)


def readings(model: LungModel, path: Path) -> dict[str, float]:
    image = load_image(path)
    found = model.segment(image)
    if not found.anatomy.plausible:
        return {}
    out = {}
    borders = cardiothoracic_ratio(found.labels, image.height, image.width, None)
    if borders is not None and borders.value is not None:
        out["borders"] = borders.value
    maps = model.segmenter(prepare(image, model.cfg.input)[0][None])[0].astype(np.float32)
    heart = resize(maps[STRUCTURES.index("heart")], *found.labels.shape)
    for t in THRESHOLDS:
        mask = largest_region((heart >= t).astype(np.float32))
        ctr = heart_ratio(mask, found.labels, image.height, image.width, None) if mask.any() else None
        if ctr is not None and ctr.value is not None:
            out[f"heart at {t}"] = ctr.value
    if "borders" in out and "heart at 0.5" in out:
        out["mean of heart and borders"] = (out["heart at 0.5"] + out["borders"]) / 2
        out["max of heart and borders"] = max(out["heart at 0.5"], out["borders"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="a multi-structure anatomy model")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    args = parser.parse_args()
    if "benchmark" in str(args.manifest):
        raise SystemExit("choose on other films than the benchmark")
    model = LungModel(args.model)
    with open(args.manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    labels = np.array([int(r["Cardiomegaly"]) for r in rows])
    read = [readings(model, args.images / r["image"]) for r in rows]
    for name in dict.fromkeys(k for r in read for k in r):
        kept = np.array([name in r for r in read])
        scores = np.array([r.get(name, np.nan) for r in read])
        print(f"{name:28s} measured {kept.sum()}/{len(rows)}  AUROC {roc_auc_score(labels[kept], scores[kept]):.3f}")


if __name__ == "__main__":
    main()
