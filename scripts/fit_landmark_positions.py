"""Fit where each numbered outline landmark lies along an anatomy model's outlines, on a training split only, and
write the shares to the model's folder (``landmarks.json``), which the anatomy head then traces at.

    python scripts/fit_landmark_positions.py --model src/radsight/weights/radsight-anatomy \
        --manifest ../shared/data/jsrt-scr/manifest.csv --images ../shared/data/jsrt-scr/images \
        --landmarks ../shared/data/jsrt-scr/landmarks.csv --split train
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from radsight.evaluate.anatomy import read_landmarks
from radsight.heads.anatomy import LungModel, structure_outlines
from radsight.heads.landmarks import POSITIONS_FILE, fit_positions
from radsight.io import load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="the anatomy model's folder")
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--landmarks", type=Path, required=True)
    parser.add_argument("--split", default="train", help="the only split read (never a test split)")
    args = parser.parse_args()
    with open(args.manifest, newline="") as fh:
        names = [r["image"] for r in csv.DictReader(fh) if r.get("split") == args.split]
    reference = read_landmarks(args.landmarks)
    model = LungModel(str(args.model))
    cases = []
    for name in names:
        if name in reference:
            cases.append((structure_outlines(model.segment(load_image(args.images / name)).anatomy), reference[name]))
    shares = fit_positions(cases)
    out = {"fitted_on": f"{args.manifest.parent.name} {args.split} split, {len(cases)} films, outlines of "
                        f"{model.cfg.name} {model.cfg.version}", "shares": shares}
    (args.model / POSITIONS_FILE).write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(cases)} films; wrote {args.model / POSITIONS_FILE}")


if __name__ == "__main__":
    main()
