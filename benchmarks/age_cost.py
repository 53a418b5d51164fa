"""Per-film time of the age-sex head (pixel contract, ONNX Runtime, reading) and of its occlusion map
(``--heatmaps-for Age``), against a named peer run on every film by default too: the anatomy head with
radsight-lung-unet. Same films, same run, taking turns film by film.

    python benchmarks/age_cost.py --data ../shared/data/nih-cxr14/benchmark/images --limit 40
"""
from __future__ import annotations

import argparse
from pathlib import Path

from turns import print_medians, time_in_turns

from radsight.heads.age_sex import DEFAULT_AGE_MODEL, age_map, read_age_sex
from radsight.heads.anatomy import LungModel
from radsight.inputs.preprocess import prepare
from radsight.io import expand_inputs, load_image
from radsight.models.store import get_model
from radsight.runtime.onnx import OnnxModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of radiographs")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--model", default=DEFAULT_AGE_MODEL)
    parser.add_argument("--peer", default="radsight-lung-unet")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    films = [load_image(f) for f in expand_inputs([args.data])[: args.limit]]
    if not films:
        raise SystemExit(f"no images under {args.data}")
    session, peer = OnnxModel(get_model(args.model), args.threads), LungModel(args.peer, threads=args.threads)

    def head(film):
        return read_age_sex(session.cfg, session.run(prepare(film, session.cfg.input)[0][None]), film)
    runs = {f"{args.model} (head)": head, f"{args.model} (map)": lambda film: age_map(session, film),
            f"{args.peer} (anatomy head)": peer.segment}
    print_medians(time_in_turns(films, runs), f"{args.peer} (anatomy head)", args.threads)


if __name__ == "__main__":
    main()
