"""Where a service study's time goes: the upload's intake (read, view, gate) and the worker's analysis (predict,
render, write), run in one process under cProfile with ``radsight serve``'s default options.

    python benchmarks/profile_service.py --data ../shared/data/nih-cxr14/benchmark/images --studies 20

Prints, per study, the time of each stage (cumulative, so a stage includes the stages it calls) and how often it
ran; ``--stats FILE`` keeps the raw profile (``python -m pstats FILE``, or snakeviz).
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

from radsight.core import InputError
from radsight.io import expand_inputs
from radsight.pipeline.options import PredictorOptions
from radsight.service.app import service_options
from radsight.service.context import Settings
from radsight.service.db import StudyStore
from radsight.service.intake import Intake
from radsight.service.worker import analyze_study

# (stage, module path suffix, function): cumulative time of that function
STAGES = [
    ("intake: receive (write, read)", "service/intake.py", "receive"),
    ("intake: admit (view, gate)", "service/intake.py", "_admit"),
    ("worker: analyze_study", "service/worker.py", "analyze_study"),
    ("  read the upload", "io/loader.py", "load_image"),
    ("  predict", "pipeline/predictor.py", "predict"),
    ("    lung model (with its geometry)", "heads/anatomy.py", "segment"),
    ("    bone model", "heads/bone.py", "views"),
    ("    view classifier", "heads/view.py", "lateral_probability"),
    ("    ONNX runs (every model)", "runtime/onnx.py", "run"),
    ("    heatmaps (all methods)", "explain/session.py", "raw_maps"),
    ("    heatmaps to image grid", "pipeline/predictor.py", "_full_heatmap"),
    ("    boxes", "explain/boxes.py", "heatmap_boxes"),
    ("    out-of-distribution gate", "pipeline/predictor.py", "ood"),
    ("    triage model", "heads/triage.py", "score"),
    ("    per-image heads (age/sex...)", "pipeline/predictor.py", "_attach_image_results"),
    ("  write results", "results/writer.py", "write_results"),
    ("    overlay drawn", "results/render.py", "render_overlay"),
    ("    image files (PNG)", "results/files.py", "write_image_files"),
    ("    viewer copy", "results/files.py", "write_viewer_copy"),
    ("    PNG encode + write", "results/files.py", "write_png"),
    ("    DICOM results", "results/writer.py", "_dicom"),
]


def stage_table(stats: pstats.Stats, studies: int) -> list[tuple[str, float, float]]:
    """(stage, ms a study, calls a study) for each stage found in the profile."""
    rows = []
    for label, path, name in STAGES:
        found = [(v[1], v[3]) for (file, _, func), v in stats.stats.items()
                 if func == name and file.replace("\\", "/").endswith(path)]
        if found:
            calls, cumulative = sum(c for c, _ in found), sum(t for _, t in found)
            rows.append((label, 1000 * cumulative / studies, calls / studies))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--studies", type=int, default=20)
    parser.add_argument("--stats", type=Path, help="write the raw cProfile stats here")
    args = parser.parse_args()
    files = expand_inputs([args.data])[: args.studies]
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        options = service_options(Settings(data_dir, "profile", PredictorOptions(bone_views=True)))
        predictor = options.predictor()
        intake = Intake(data_dir, StudyStore(data_dir / "radsight.db"), predictor)
        refused = []

        def one(path: Path) -> None:
            try:
                job = intake.queue_or_discard([intake.receive(path.read_bytes(), path.name)], "upload")
            except InputError as exc:  # the gate refused it, as the service would answer 422
                refused.append(exc)
                return
            analyze_study(predictor, options, data_dir, job, read=intake.decoded.read)
        one(files[0])  # warm-up: sessions' first runs
        profile = cProfile.Profile()
        start = time.perf_counter()
        profile.enable()
        for path in files:
            one(path)
        profile.disable()
        wall = time.perf_counter() - start
    stats = pstats.Stats(profile)
    if args.stats:
        stats.dump_stats(args.stats)
    print(f"{len(files)} studies from {args.data} ({len(refused)} refused by the gate), one at a time, serve's "
          f"defaults (gate on, bone views, CAM with the torch-free alternates); {1000 * wall / len(files):.0f} ms a "
          f"study under the profiler")
    print("| stage | ms a study | runs a study |\n|---|---:|---:|")
    for label, ms, calls in stage_table(stats, len(files)):
        print(f"| {label} | {ms:.0f} | {calls:g} |")


if __name__ == "__main__":
    main()
