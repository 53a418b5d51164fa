"""radsight running a torchxrayvision DenseNet-121 against torchxrayvision itself, same images, same run.

The weights are random (the published files cannot be downloaded here; speed does not depend on the
values), saved in torchxrayvision's own format and imported with ``radsight models import``.

- torchxrayvision: ``xrv.utils.load_image`` + ``XRayCenterCrop`` + ``XRayResizer(224)`` + ``model(x)``
  under ``torch.no_grad()``, one image after another: read + preprocess + forward, nothing else.
- radsight, two ways, each doing read + preprocess + forward + thresholds + CAM heatmaps and boxes for every
  positive finding + triage (``Predictor.predict``); with ``--anatomy`` also the lung U-Net, lung fields and
  CTR, and with ``--outputs`` also the JSON, overlay and heatmap PNGs (``radsight analyze``):
  - one image at a time on every core (latency of a single study);
  - the folder, as ``radsight analyze`` runs it: one file a core at once (per-image time = wall / images).

Each side runs in its own process (idle OpenMP/BLAS threads of one would otherwise spin against the
other), and radsight's two ways in one each; radsight's processes never import torch, as in deployment, and the
model is made (and quantized) in another. The sides take turns over ``--rounds`` passes, so a machine that
speeds up or slows down during the run affects both. Prints per-image times, the ratios torchxrayvision /
radsight of each round and their median (above 1: radsight is faster), each process's peak memory (RSS) and
the largest probability difference.
With ``--device cuda`` both sides run on the GPU (torch's CUDA build; onnxruntime-gpu's CUDA or TensorRT
provider). With ``--precision int8`` radsight runs the int8 variant ``radsight models quantize`` makes (activations
calibrated on ``--calibration`` images: a training split, never the measured ones); the probability difference
printed is then the int8 model's against torchxrayvision's float32 forward pass.
Needs radsight[train,parity].

    python benchmarks/compare_torchxrayvision.py --data ../shared/data/nih-cxr14/benchmark/images --limit 100
    python benchmarks/compare_torchxrayvision.py --data ../shared/data/nih-cxr14/benchmark/images --limit 100 \
        --precision int8 --calibration ../shared/data/lung-masks-public/images
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from functools import lru_cache
from pathlib import Path

MODEL = "xrv-densenet121-res224-all"


def _timed(fn, items) -> tuple[list[float], float, list]:
    """Per-item seconds, wall seconds, results."""
    times, results, start = [], [], time.perf_counter()
    for item in items:
        t = time.perf_counter()
        results.append(fn(item))
        times.append(time.perf_counter() - t)
    return times, time.perf_counter() - start, results


@lru_cache(maxsize=1)
def _xrv_model(weights: str):
    import torch
    return torch.load(weights, map_location="cpu", weights_only=False).eval()


def _peak_mb() -> float:
    """This process's peak resident memory so far, in MB."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _publisher(weights: str, files: list[Path], device: str = "cpu") -> tuple[list[float], float, list[dict], float]:
    import torch
    import torchxrayvision as xrv
    net = _xrv_model(weights).to(device)

    def run(path: Path) -> dict:
        img = xrv.datasets.XRayResizer(224)(xrv.datasets.XRayCenterCrop()(xrv.utils.load_image(str(path))))
        with torch.no_grad():
            return dict(zip(net.targets, net(torch.from_numpy(img)[None].to(device))[0].tolist()))
    run(files[0])  # warm-up
    return (*_timed(run, files), _peak_mb())


@lru_cache(maxsize=2)
def _predictor(home: str, anatomy: bool, threads: int, model: str, device: str):
    os.environ["RADSIGHT_HOME"] = home
    from radsight.models.store import DEFAULT_LUNG_MODEL
    from radsight.pipeline.predictor import Predictor
    return Predictor(model, lung_model=DEFAULT_LUNG_MODEL if anatomy else None, threads=threads, device=device)


def _radsight_single(home: str, files: list[Path], anatomy: bool, model: str, device: str = "cpu") -> dict:
    """One image at a time on every core: per-image seconds, probabilities, heatmaps an image, peak memory."""
    from radsight.io import load_image
    single = _predictor(home, anatomy, 0, model, device)
    single.predict(load_image(files[0]))  # warm-up
    times, _, predictions = _timed(lambda f: single.predict(load_image(f)), files)
    return {"times": times, "probs": [{f.name: f.probability for f in p.findings} for p in predictions],
            "heatmaps": statistics.mean(len(p.heatmaps) for p in predictions), "peak_mb": _peak_mb()}


def _radsight_folder(home: str, files: list[Path], anatomy: bool, outputs: bool, model: str,
                     device: str = "cpu") -> dict:
    """The folder as ``radsight analyze`` runs it: wall seconds, files at once, peak memory."""
    from radsight.batch.run import analyze_files
    from radsight.concurrency import default_workers, ordered_map, threads_per_worker
    from radsight.io import load_image
    workers = default_workers(len(files))
    folder = _predictor(home, anatomy, threads_per_worker(workers), model, device)
    folder.predict(load_image(files[0]))  # warm-up
    start = time.perf_counter()
    if outputs:
        with tempfile.TemporaryDirectory() as out:
            for _ in analyze_files(files, Path(out), folder, workers):
                pass
    else:
        for _ in ordered_map(lambda f: folder.predict(load_image(f)), files, workers):
            pass
    return {"wall": time.perf_counter() - start, "workers": workers, "peak_mb": _peak_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of radiographs (PNG or DICOM)")
    parser.add_argument("--limit", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=1, help="pass over the images this many times a round")
    parser.add_argument("--rounds", type=int, default=5, help="turns each side takes")
    parser.add_argument("--anatomy", action="store_true", help="radsight also segments the lungs (CTR)")
    parser.add_argument("--outputs", action="store_true", help="radsight also writes JSON, overlay and PNGs")
    parser.add_argument("--precision", choices=("float32", "int8"), default="float32", help="radsight's model")
    parser.add_argument("--calibration", type=Path, help="with int8: training-split images for calibration")
    parser.add_argument("--calibration-limit", type=int, default=300)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="both sides on this device (cuda: torch's CUDA build and onnxruntime-gpu)")
    args = parser.parse_args()
    if args.precision == "int8" and args.calibration is None:
        raise SystemExit("--precision int8 needs --calibration (training-split images, never the measured ones)")
    from radsight.io import expand_inputs
    files = expand_inputs([args.data])[: args.limit] * args.repeat
    if not files:
        raise SystemExit(f"no images under {args.data}")
    spawn = mp.get_context("spawn")
    rounds = []  # per round: torchxrayvision median, its wall/images, radsight median, radsight folder wall/images
    with tempfile.TemporaryDirectory() as tmp:
        with spawn.Pool(1) as setup:  # its own process, so that quantizing weighs on no side's memory
            weights = setup.apply(_save_and_import, (tmp,))
            model = MODEL
            if args.precision == "int8":
                model = setup.apply(_quantize, (tmp, str(args.calibration), args.calibration_limit))
        with spawn.Pool(1) as publisher, spawn.Pool(1) as single_pool, spawn.Pool(1) as folder_pool:
            for _ in range(args.rounds):
                times, wall, theirs, their_peak = publisher.apply(_publisher, (weights, files, args.device))
                ours = single_pool.apply(_radsight_single, (tmp, files, args.anatomy, model, args.device))
                ours_folder = folder_pool.apply(_radsight_folder, (tmp, files, args.anatomy, args.outputs, model,
                                                              args.device))
                rounds.append((statistics.median(times), wall / len(files), statistics.median(ours["times"]),
                               ours_folder["wall"] / len(files)))
            for pool in (publisher, single_pool, folder_pool):  # the workers exit on their own, not terminated
                pool.close()
                pool.join()
    diff = max(abs(p[name] - q[name]) for p, q in zip(ours["probs"], theirs) for name in p)
    a, a_wall, b, b_wall = (statistics.median(r[i] for r in rounds) for i in range(4))
    single, folder = [r[0] / r[2] for r in rounds], [r[1] / r[3] for r in rounds]
    what = "predict" + (" + anatomy" if args.anatomy else "") + (" + file outputs" if args.outputs else "")
    print(f"radsight model: {model} ({args.precision}), device {args.device}")
    print(f"images: {len(files)} from {args.data}, {args.rounds} rounds; each side in its own process "
          f"on {os.cpu_count()} cores; medians over rounds")
    print(f"radsight does: {what}, with CAM heatmaps and boxes for {ours['heatmaps']:.1f} findings/image")
    print(f"torchxrayvision read+preprocess+forward, one image after another: median {a * 1000:.1f} ms/image, "
          f"wall/images {a_wall * 1000:.1f} ms")
    print(f"radsight, one image at a time (every core): median {b * 1000:.1f} ms/image")
    print(f"radsight over the folder ({ours_folder['workers']} files at once, as radsight analyze): "
          f"wall/images {b_wall * 1000:.1f} ms")
    print(f"ratio torchxrayvision / radsight, one image at a time: {_ratios(single)}")
    print(f"ratio torchxrayvision / radsight, per-image time over the folder: {_ratios(folder)}")
    print(f"peak memory (RSS) of each process: torchxrayvision {their_peak:.0f} MB; radsight one image at a time "
          f"{ours['peak_mb']:.0f} MB, over the folder {ours_folder['peak_mb']:.0f} MB")
    print(f"max |probability difference|: {diff:.2e} (random weights, mostly saturated; "
          f"tests/test_importers.py checks parity on spread-out probabilities)")


def _ratios(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f}x (rounds: {', '.join(f'{v:.2f}' for v in values)})"


def _save_and_import(home: str) -> str:
    """Random weights (seed 0) in torchxrayvision's own file format, imported into radsight's store at ``home``."""
    import torch
    import torchxrayvision as xrv
    os.environ["RADSIGHT_HOME"] = home
    from radsight.convert.pull import import_file
    torch.manual_seed(0)
    path = Path(home) / "xrv.pt"
    torch.save(xrv.models.DenseNet(apply_sigmoid=True).eval(), path)
    import_file("xrv-densenet", path, MODEL)
    return str(path)


def _quantize(home: str, calibration: str, limit: int) -> str:
    """The imported model's int8 variant, calibrated on ``limit`` images of the folder ``calibration``."""
    import numpy as np
    os.environ["RADSIGHT_HOME"] = home
    from radsight.convert.quantize import quantize
    from radsight.io import expand_inputs, load_image
    from radsight.pipeline.predictor import Predictor
    float_model = Predictor(MODEL, lung_model=None)
    inputs = np.stack([float_model.classifier_input(load_image(f))[0]
                       for f in expand_inputs([Path(calibration)])[:limit]])
    return quantize(float_model.cfg, inputs, f"{calibration} ({len(inputs)} images)").name


if __name__ == "__main__":
    main()
