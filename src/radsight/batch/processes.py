"""``radsight analyze --engine processes``: one process a core, each with its own predictor (built once, when
the process starts), analyzing jobs as the local engine does (``radsight.batch.run.analyze_job``). The Python work
of one image (maps, boxes, drawing) then never waits for another image's hold on the interpreter lock.

Each process hands back its outcome without the arrays (heatmaps, masks, views, DICOM datasets): they are in the
files it wrote. Outcomes come back in input order, as the local engine's do.
"""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

from radsight.batch.jobs import Job
from radsight.batch.run import Outcome, analyze_job
from radsight.concurrency import in_order, threads_per_worker
from radsight.core import Prediction, Radiograph, StudyPrediction
from radsight.io import load_image
from radsight.pipeline.options import PredictorOptions

_process: dict = {}  # in each worker process: its predictor, options, output folder and reader


def _start(options: PredictorOptions, out_dir: str, read: Callable[[Path], Radiograph]) -> None:
    _process.update(predictor=options.predictor(), options=options, out_dir=Path(out_dir), read=read)


def _analyze(job: Job) -> Outcome:
    return light(analyze_job(_process["predictor"], job, _process["out_dir"], _process["options"],
                             read=_process["read"]))


def light(outcome: Outcome) -> Outcome:
    """``outcome`` without its arrays (what its files hold): what a report of the run needs."""
    p = outcome.prediction
    if isinstance(p, StudyPrediction):
        p = replace(p, views=[replace(v, prediction=_light(v.prediction)) if v.prediction else v for v in p.views])
    elif isinstance(p, Prediction):
        p = _light(p)
    written = replace(outcome.written, datasets=[]) if outcome.written else None
    return replace(outcome, prediction=p, written=written)


def _light(p: Prediction) -> Prediction:
    return replace(p, heatmaps={}, alternates={}, lung_mask=None, structure_masks=None,
                   views=dict.fromkeys(p.views))


def analyze_in_processes(jobs: list[Job], out_dir: Path, options: PredictorOptions, processes: int,
                         read: Callable[[Path], Radiograph] = load_image) -> Iterator[Outcome]:
    """Each job's outcome, in input order, from ``processes`` processes (the cores shared out among them); at most
    twice that many jobs in flight. A run stopped early (an error, Ctrl-C) starts no further job. ``read``: how a
    file is read (picklable: it goes to each process)."""
    options = replace(options, threads=threads_per_worker(processes))
    pool = ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"), initializer=_start,
                               initargs=(options, str(out_dir), read))
    yield from in_order(pool, _analyze, jobs, 2 * processes)
