"""Training speed with 1 and 2 processes under ``torchrun`` (gloo on CPUs, NCCL on GPUs), in one run.

Each setup trains the classifier for ``--epochs`` on the same manifest from scratch; the input cache is built
first, outside the timing. Prints images/s in all and per process, and the ratio of 2 processes to 1.

    python benchmarks/train_ddp.py --manifest ../shared/data/nih-cxr14/train64/manifest.csv \\
        --images ../shared/data/nih-cxr14/train64/images --epochs 3
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _train(processes: int, args, out: Path, threads: int) -> float:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    command = [torchrun, "--standalone", "--nproc-per-node", str(processes), "-m", "radsight", "train",
               "--manifest", str(args.manifest), "--images", str(args.images), "--out", str(out),
               "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--threads", str(threads)]
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "warm"  # reads the images once: the timed runs start from the cached inputs
        _train(1, argparse.Namespace(**{**vars(args), "epochs": 1}), cache, cores)
        rows = []
        for processes in (1, 2):
            out = Path(tmp) / f"p{processes}"
            out.mkdir()
            for name in ("inputs-train.pt", "inputs-val.pt"):
                shutil.copy(cache / name, out / name)
            seconds = _train(processes, args, out, max(1, cores // processes))
            history = json.loads((out / "history.json").read_text())
            rows.append((processes, seconds, history[-1]["val_mean_auroc"]))
        import torch
        seen = args.epochs * len(torch.load(cache / "inputs-train.pt", weights_only=True)["x"])
    base = rows[0][1]
    print(f"{args.epochs} epochs of {seen // args.epochs} images ({args.manifest}), batch {args.batch_size}, {cores} "
          f"cores, {'CUDA' if torch.cuda.is_available() else 'CPU (gloo)'}; wall time includes start-up")
    print("| processes | wall | images/s | per process | ratio to 1 | final val mean AUROC |")
    print("|---:|---:|---:|---:|---:|---:|")
    for processes, seconds, auc in rows:
        print(f"| {processes} | {seconds:.1f} s | {seen / seconds:.1f} | {seen / seconds / processes:.1f} | "
              f"{base / seconds:.2f}x | {auc:.3f} |")


if __name__ == "__main__":
    main()
