"""Per-film time of the anatomy head (segmentation, outlines, landmarks, CTR) of a model against a named peer, on
the same films in the same run, taking turns film by film so the machine's noise falls on both alike.

    python benchmarks/anatomy_cost.py --data ../shared/data/nih-cxr14/benchmark/images --limit 40 \
        --model radsight-anatomy --peer radsight-lung-unet
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from radsight.heads.anatomy import LungModel
from radsight.io import expand_inputs, load_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of radiographs")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--model", default="radsight-anatomy")
    parser.add_argument("--peer", default="radsight-lung-unet")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    files = expand_inputs([args.data])[: args.limit]
    if not files:
        raise SystemExit(f"no images under {args.data}")
    films = [load_image(f) for f in files]
    models = {name: LungModel(name, threads=args.threads) for name in (args.model, args.peer)}
    times: dict[str, list[float]] = {name: [] for name in models}
    for name, model in models.items():
        model.segment(films[0])  # warm-up
    for film in films:
        for name, model in models.items():
            start = time.perf_counter()
            model.segment(film)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times[args.peer])
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:24s} median {median * 1000:7.1f} ms a film ({len(values)} films, {args.threads} thread)  "
              f"ratio to {args.peer}: {median / base:.2f}")


if __name__ == "__main__":
    main()
