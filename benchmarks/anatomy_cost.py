"""Per-film time of the anatomy head (segmentation, outlines, landmarks, CTR) of a model against a named peer, on
the same films in the same run, taking turns film by film so the machine's noise falls on both alike.

    python benchmarks/anatomy_cost.py --data ../shared/data/nih-cxr14/benchmark/images --limit 40 \
        --model radsight-anatomy --peer radsight-lung-unet
"""
from __future__ import annotations

import argparse
from pathlib import Path

from turns import print_medians, time_in_turns

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
    print_medians(time_in_turns(films, {name: model.segment for name, model in models.items()}), args.peer,
                  args.threads)


if __name__ == "__main__":
    main()
