"""The two-view model on the multiview pairs of patients it did not train on: that each study runs, that its
frontal-only result equals the same model's with the lateral absent (whatever the lateral input), and how far the
lateral moves each probability. No accuracy is claimed: the pairs are too few.

    python scripts/twoview_multiview_check.py ../shared/data [--patients 20,33,77] [--model radsight-twoview-demo]
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from radsight.inputs.preprocess import prepare
from radsight.io import load_image
from radsight.models.store import DEFAULT_TWO_VIEW_MODEL
from radsight.pipeline.predictor import Predictor
from radsight.runtime.onnx import sigmoid


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--patients", default="20,33,77")
    parser.add_argument("--model", default=DEFAULT_TWO_VIEW_MODEL)
    args = parser.parse_args()
    root = args.data / "multiview"
    rows = [r for r in csv.DictReader(open(root / "manifest.csv")) if r["patientid"] in args.patients.split(",")]
    studies: dict[str, dict[str, Path]] = {}
    for r in rows:
        studies.setdefault(f"{r['patientid']}@{r['offset'] or 'unknown'}", {})[r["view"]] = root / "images" / r["filename"]
    predictor = Predictor(args.model, lung_model=None)
    print(f"model {predictor.cfg.name}; {len(studies)} held-out studies (patients {args.patients})")
    print("| study | runs | frontal-only = lateral absent (max abs dp) | lateral ignored when absent | "
          "max abs dp from the lateral | triage with / without lateral |")
    print("|---|---|---|---|---|---|")
    for name, views in studies.items():
        front, side = load_image(views["PA"]), load_image(views["L"])
        both = predictor.predict_study([front, side], name)
        alone = predictor.predict_study([front], name)
        p_both = np.array([f.probability for f in both.findings])
        p_alone = np.array([f.probability for f in alone.findings])
        x = prepare(front, predictor.cfg.input)[0][None]
        lateral = prepare(side, predictor.cfg.input)[0][None]
        absent = predictor.model(x)["probabilities"][0, :len(p_alone)]
        noise = np.random.default_rng(0).random(lateral.shape, dtype=np.float32)  # fed with lateral_present 0
        logits = predictor.model.run(x, ["logits"], {"lateral": noise, "lateral_present": np.zeros((1, 1))})["logits"]
        hidden = sigmoid(logits[0, :len(p_alone)].astype(np.float64))
        print(f"| {name} | {'yes' if len(both.views) == 2 and all(v.read for v in both.views) else 'NO'} | "
              f"{np.abs(p_alone - absent).max():.1e} | {np.abs(hidden - absent).max():.1e} | "
              f"{np.abs(p_both - p_alone).max():.3f} | {both.triage.priority} / {alone.triage.priority} |")


if __name__ == "__main__":
    main()
