"""Per-film time of each head run on every image (``Head.on_each_image``: age-sex, nodules; pixel contract, ONNX
Runtime and reading), of the triage model (radsight-triage-256 on the thorax the lung model found) and of the age
head's occlusion map (``--heatmaps-for Age``), against a named peer also run on every film by default: the anatomy
head with radsight-lung-unet. Same films, same run, taking turns film by film.

    python benchmarks/head_cost.py --data ../shared/data/nih-cxr14/benchmark/images --limit 40
"""
from __future__ import annotations

import argparse
from pathlib import Path

from turns import print_medians, time_in_turns

from radsight.heads.age_sex import age_map
from radsight.heads.anatomy import LungModel
from radsight.heads.registry import HEADS
from radsight.heads.triage import TriageModel
from radsight.inputs.preprocess import prepare
from radsight.io import expand_inputs, load_image
from radsight.models.store import DEFAULT_TRIAGE_MODEL, get_model
from radsight.pipeline.inputs import installed
from radsight.runtime.onnx import OnnxModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of radiographs")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--peer", default="radsight-lung-unet")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    films = [load_image(f) for f in expand_inputs([args.data])[: args.limit]]
    if not films:
        raise SystemExit(f"no images under {args.data}")
    peer = LungModel(args.peer, threads=args.threads)
    lungs = {id(film): peer.segment(film).labels for film in films}  # what a head that reads the lungs is given
    runs = {f"{args.peer} (anatomy head)": peer.segment}
    for head in HEADS.values():
        if not head.on_each_image or installed(head.default_model) is None:
            continue
        session = OnnxModel(get_model(head.default_model), args.threads)

        def run(film, head=head, session=session):
            more = {"lungs": lungs[id(film)]} if head.reads_lungs else {}
            return head.read(session.cfg, session.run(prepare(film, session.cfg.input)[0][None]), film, **more)
        runs[f"{head.default_model} ({head.task} head)"] = run
        if head.heatmap is not None and head.heatmap[1] is age_map:
            runs[f"{head.default_model} (Age map)"] = lambda film, session=session: age_map(session, film)
    if installed(DEFAULT_TRIAGE_MODEL) is not None:
        triage = TriageModel(DEFAULT_TRIAGE_MODEL, args.threads)
        boxes = {id(film): peer.box(film) for film in films}
        runs[f"{DEFAULT_TRIAGE_MODEL} (triage)"] = lambda film: triage.score(film, boxes[id(film)])
    print_medians(time_in_turns(films, runs), f"{args.peer} (anatomy head)", args.threads)


if __name__ == "__main__":
    main()
