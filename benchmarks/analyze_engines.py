"""``radsight analyze`` over a folder with each local engine, whole runs as a user starts them (start-up and model
loading included): threads sharing one predictor (``--engine local``) against one process a core (``--engine
processes``). The engines take turns over ``--rounds``; prints each run's wall time, images/s and the ratio
local / processes of each round and their median (above 1: processes are faster).

    python benchmarks/analyze_engines.py --data ../shared/data/nih-cxr14/benchmark/images --limit 40 --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from radsight.io import expand_inputs

ENGINES = ("local", "processes")


def run(engine: str, files: list[Path], extra: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "radsight", "analyze", *map(str, files), "--out", out, "--quiet",
                        "--engine", engine, *extra], check=True, stdout=subprocess.DEVNULL)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more options for radsight analyze (after --)")
    args = parser.parse_args()
    files = expand_inputs([args.data])[: args.limit]
    walls = {e: [] for e in ENGINES}
    for _ in range(args.rounds):
        for engine in ENGINES:
            walls[engine].append(run(engine, files, args.extra))
    print(f"radsight analyze of {len(files)} images from {args.data} {' '.join(args.extra)}, {args.rounds} rounds, "
          f"whole runs (start-up included)")
    for engine in ENGINES:
        w = statistics.median(walls[engine])
        print(f"--engine {engine}: median {w:.1f} s ({len(files) / w:.2f} images/s); runs "
              f"{', '.join(f'{v:.1f}' for v in walls[engine])} s")
    ratios = [a / b for a, b in zip(walls["local"], walls["processes"])]
    print(f"ratio local / processes: median {statistics.median(ratios):.2f}x "
          f"(rounds: {', '.join(f'{r:.2f}' for r in ratios)})")


if __name__ == "__main__":
    main()
