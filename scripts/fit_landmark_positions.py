"""Fit how an anatomy model places each numbered outline landmark, on a training split only, and write it to the
model's folder (``landmarks.json``), which the anatomy head then places its points with:

- each point's mean share of the outline's length, on the model's own outlines of the training films;
- a shape model of each landmark set (``radsight.heads.shape_model``) from the observers' points on those films,
  keeping the fewest modes that explain ``--variance`` of the shapes' variation.

    python scripts/fit_landmark_positions.py --model src/radsight/weights/radsight-anatomy \
        --manifest ../shared/data/jsrt-scr/manifest.csv --images ../shared/data/jsrt-scr/images \
        --landmarks ../shared/data/jsrt-scr/landmarks.csv --split train --variance 0.8
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np

from radsight.evaluate.anatomy import read_landmarks
from radsight.heads.anatomy import LungModel, structure_outlines
from radsight.heads.landmarks import COUNTS, POSITIONS_FILE, fit_positions
from radsight.heads.shape_model import ShapeModel
from radsight.io import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the anatomy model's folder")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--split", default="train", help="the only split read (never a test split)")
    parser.add_argument("--variance", type=float, default=0.8, help="share of the shapes' variation the shape "
                        "models keep (0: none is written)")
    args = parser.parse_args()
    with open(args.manifest, newline="") as fh:
        names = [r["image"] for r in csv.DictReader(fh) if r.get("split") == args.split]
    reference = read_landmarks(args.landmarks)
    names = [n for n in names if n in reference]
    model = LungModel(str(args.model))
    cases = [(structure_outlines(model.segment(load_image(args.images / n)).anatomy), reference[n]) for n in names]
    out = {"fitted_on": f"{args.manifest.parent.name} {args.split} split, {len(cases)} films, outlines of "
                        f"{model.cfg.name} {model.cfg.version}", "shares": fit_positions(cases)}
    if args.variance > 0:
        shapes = {s: np.stack([reference[n][s] for n in names if len(reference[n].get(s, ())) == count])
                  for s, count in COUNTS.items()}
        out["shape_models_fitted_on"] = (f"observers' landmarks of {args.manifest.parent.name} {args.split} split "
                                         f"({', '.join(f'{s} {len(v)}' for s, v in shapes.items())} films), "
                                         f"{args.variance:g} of the variation kept")
        out["shape_models"] = {s: ShapeModel.build(v, args.variance).to_json() for s, v in shapes.items()}
    (args.model / POSITIONS_FILE).write_text(json.dumps(out) + "\n")
    print(f"{len(cases)} films; wrote {args.model / POSITIONS_FILE}")


if __name__ == "__main__":
    main()
