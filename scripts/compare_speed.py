"""Speed of two commits side by side: ``benchmarks/compare_torchxrayvision.py`` of each, from its own git worktree,
taking turns for ``--rounds`` rounds (one benchmark round each a turn), so a machine that speeds up or slows down
weighs on both. Prints each round's milliseconds an image (radsight one image at a time, radsight over the folder,
and torchxrayvision in the same run), the medians, and the later commit's medians over the earlier one's.

    python scripts/compare_speed.py --before HEAD~1 --after HEAD --rounds 5 -- \\
        --data ../shared/data/nih-cxr14/benchmark/images --limit 40
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINES = {"single": r"radsight, one image at a time .*: median ([\d.]+) ms/image",
         "folder": r"radsight over the folder .*: wall/images ([\d.]+) ms",
         "torchxrayvision": r"torchxrayvision read\+preprocess\+forward.*: median ([\d.]+) ms/image"}


def one_round(tree: Path, args: list[str]) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / "compare_torchxrayvision.py"), "--rounds", "1",
                           *args], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{tree.name}: benchmark failed:\n{done.stderr[-2000:]}")
    return {name: float(re.search(pattern, done.stdout).group(1)) for name, pattern in LINES.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True)
    parser.add_argument("--after", required=True)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("benchmark", nargs=argparse.REMAINDER, help="-- then compare_torchxrayvision.py's options")
    args = parser.parse_args()
    bench = [a for a in args.benchmark if a != "--"]
    with tempfile.TemporaryDirectory(prefix="radsight-speed-") as tmp:
        trees = {}
        try:
            for side in ("before", "after"):
                trees[side] = Path(tmp) / side
                subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(trees[side]),
                                getattr(args, side)], check=True)
            runs = {"before": [], "after": []}
            for i in range(args.rounds):
                for side in ("before", "after") if i % 2 == 0 else ("after", "before"):
                    runs[side].append(one_round(trees[side], bench))
                    r = runs[side][-1]
                    print(f"round {i + 1} {side:6s}: radsight {r['single']:.1f} ms one at a time, {r['folder']:.1f} "
                          f"ms over the folder; torchxrayvision {r['torchxrayvision']:.1f} ms", flush=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    medians = {side: {k: statistics.median(r[k] for r in rounds) for k in LINES} for side, rounds in runs.items()}
    for side in ("before", "after"):
        m = medians[side]
        print(f"median {side} ({getattr(args, side)}): radsight {m['single']:.1f} ms one at a time, "
              f"{m['folder']:.1f} ms over the folder; torchxrayvision {m['torchxrayvision']:.1f} ms")
    print("after / before: " + ", ".join(f"{k} {medians['after'][k] / medians['before'][k]:.3f}" for k in LINES))


if __name__ == "__main__":
    main()
