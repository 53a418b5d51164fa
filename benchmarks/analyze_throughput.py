"""Per-image time of ``radsight analyze`` against a bare baseline, on the same images in the same run.

Baseline ("bare"): read the file + pixel contract + ONNX forward pass of the same model, nothing else.
radsight: the full analyze path (the same, plus thresholds, CAM heatmaps, boxes, JSON, overlay and heatmap PNGs).
Prints medians over images and the ratio radsight / bare.

    python benchmarks/analyze_throughput.py --data ../shared/data/nih-cxr14/benchmark/images --limit 100
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from radsight.batch.run import analyze_files
from radsight.io import expand_inputs, load_image
from radsight.models.store import DEFAULT_MODEL
from radsight.pipeline.predictor import Predictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of radiographs (DICOM/PNG/JPEG)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    files = expand_inputs([args.data])[: args.limit]
    if not files:
        raise SystemExit(f"no images under {args.data}")
    predictor = Predictor(args.model)
    predictor.predict(load_image(files[0]))  # warm-up

    bare = []
    for f in files:
        t = time.perf_counter()
        predictor.model(predictor.classifier_input(load_image(f))[0][None])
        bare.append(time.perf_counter() - t)

    full = []
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        for _ in analyze_files(files, Path(out), predictor):
            now = time.perf_counter()
            full.append(now - t)
            t = now
    b, r = statistics.median(bare), statistics.median(full)
    print(f"images: {len(files)} from {args.data}  model: {predictor.cfg.name}")
    print(f"bare read+preprocess+forward: median {b * 1000:.1f} ms/image ({1 / b:.1f} images/s)")
    print(f"radsight analyze (all outputs): median {r * 1000:.1f} ms/image ({1 / r:.1f} images/s), "
          f"total {sum(full):.1f} s")
    print(f"ratio analyze / bare: {r / b:.2f}")


if __name__ == "__main__":
    main()
