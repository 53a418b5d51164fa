"""radsight running a torchxrayvision DenseNet-121 against torchxrayvision itself, same images, same run.

The weights are random (the published files cannot be downloaded here; speed does not depend on the
values), saved in torchxrayvision's own format and imported with ``radsight models import``.

- torchxrayvision: ``xrv.utils.load_image`` + ``XRayCenterCrop`` + ``XRayResizer(224)`` + ``model(x)``
  under ``torch.no_grad()``: read + preprocess + forward, nothing else.
- radsight: read + preprocess + forward + thresholds + CAM heatmaps and boxes for every positive finding
  + triage (``Predictor.predict``), with ``--anatomy`` also the lung U-Net, lung fields and CTR, and with
  ``--outputs`` also the JSON, overlay and heatmap PNGs (``radsight analyze``).

Each side runs in its own process (idle OpenMP/BLAS threads of one would otherwise spin against the
other); radsight's process never imports torch, as in deployment. Prints per-image medians, the ratio torchxrayvision / radsight (above 1: radsight is faster) and the
largest probability difference between the two. Needs radsight[train,parity].

    python benchmarks/compare_torchxrayvision.py --data ../shared/data/nih-cxr14/benchmark/images --limit 100
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from pathlib import Path


def _timed(fn, items) -> tuple[list[float], list]:
    fn(items[0])  # warm-up
    times, results = [], []
    for item in items:
        t = time.perf_counter()
        results.append(fn(item))
        times.append(time.perf_counter() - t)
    return times, results


def _publisher(weights: str, files: list[Path]) -> tuple[list[float], list[dict]]:
    import torch
    import torchxrayvision as xrv
    net = torch.load(weights, map_location="cpu", weights_only=False).eval()

    def run(path: Path) -> dict:
        img = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(xrv.utils.load_image(str(path))))
        with torch.no_grad():
            return dict(zip(net.targets, net(torch.from_numpy(img)[None])[0].tolist()))
    return _timed(run, files)


def _radsight(home: str, files: list[Path], anatomy: bool, outputs: bool) -> tuple[list[float], list[dict], float]:
    os.environ["RADSIGHT_HOME"] = home
    from radsight.io import load_image
    from radsight.pipeline import Predictor, analyze_files
    predictor = Predictor("xrv-densenet121-res224-all", lung_model="radsight-lung-unet" if anatomy else None)
    times, predictions = _timed(lambda f: predictor.predict(load_image(f)), files)
    if outputs:
        times, t = [], time.perf_counter()
        for _ in analyze_files(files, Path(home) / "out", predictor):
            now = time.perf_counter()
            times.append(now - t)
            t = now
    probs = [{f.name: f.probability for f in p.findings} for p in predictions]
    return times, probs, statistics.mean(len(p.heatmaps) for p in predictions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of radiographs (PNG or DICOM)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="pass over the images this many times")
    parser.add_argument("--anatomy", action="store_true", help="radsight also segments the lungs (CTR)")
    parser.add_argument("--outputs", action="store_true", help="radsight also writes JSON, overlay and PNGs")
    args = parser.parse_args()
    from radsight.io import expand_inputs
    files = expand_inputs([args.data])[: args.limit] * args.repeat
    if not files:
        raise SystemExit(f"no images under {args.data}")
    spawn = mp.get_context("spawn")
    with tempfile.TemporaryDirectory() as tmp:
        with spawn.Pool(1) as pool:
            weights = pool.apply(_save_and_import, (tmp,))
            theirs_t, theirs = pool.apply(_publisher, (weights, files))
        with spawn.Pool(1) as pool:  # a fresh process: no torch imported
            ours_t, ours, heatmaps = pool.apply(_radsight, (tmp, files, args.anatomy, args.outputs))
    diff = max(abs(p[name] - q[name]) for p, q in zip(ours, theirs) for name in p)
    a, b = statistics.median(theirs_t), statistics.median(ours_t)
    what = "predict" + (" + anatomy" if args.anatomy else "") + (" + file outputs" if args.outputs else "")
    print(f"images: {len(files)} from {args.data}; each side in its own process on {os.cpu_count()} cores")
    print(f"torchxrayvision read+preprocess+forward: median {a * 1000:.1f} ms/image")
    print(f"radsight {what} (heatmaps+boxes for {heatmaps:.1f} findings/image): median {b * 1000:.1f} ms/image")
    print(f"ratio torchxrayvision / radsight: {a / b:.2f}x")
    print(f"max |probability difference|: {diff:.2e} (random weights, mostly saturated; "
          f"tests/test_importers.py checks parity on spread-out probabilities)")


def _save_and_import(home: str) -> str:
    """Random weights (seed 0) in torchxrayvision's own file format, imported into radsight's store at ``home``."""
    import torch
    import torchxrayvision as xrv
    os.environ["RADSIGHT_HOME"] = home
    from radsight.models.pull import import_file
    torch.manual_seed(0)
    path = Path(home) / "xrv.pt"
    torch.save(xrv.models.DenseNet(apply_sigmoid=True).eval(), path)
    import_file("xrv-densenet", path, "xrv-densenet121-res224-all")
    return str(path)


if __name__ == "__main__":
    main()
