"""One analysis from files to results: read, predict, write (``radsight.results.writer``), as one outcome.

``radsight analyze`` (on threads), Ray's actors and the service's workers all analyze through :func:`analyze_job`.
A file that cannot be read, an image the model cannot analyze and one the out-of-distribution gate refuses are
error outcomes; the run goes on.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from radsight.batch.jobs import Job, image_jobs
from radsight.concurrency import ordered_map
from radsight.core import InputError, Prediction, Radiograph, StudyPrediction
from radsight.io import load_image
from radsight.pipeline.options import PredictorOptions
from radsight.pipeline.predictor import Predictor, refuse_ood
from radsight.results.writer import Written, write_results


@dataclass
class Outcome:
    """What became of one job: its prediction and what was written, or the error that stopped it (``error`` may
    come with a prediction and a JSON: analyzed, but its DICOM results could not be made); ``notes``: a study's
    files that could not be read, the study analyzed without them."""

    job: Job
    prediction: Prediction | StudyPrediction | None = None
    written: Written | None = None
    error: InputError | None = None
    notes: list[InputError] = field(default_factory=list)

    @property
    def json(self) -> str | None:
        return self.written.json if self.written else None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def probabilities(self) -> list[float] | None:
        return [f.probability for f in self.prediction.findings] if self.prediction else None


def analyze_job(predictor: Predictor, job: Job, out_dir: Path, options: PredictorOptions = PredictorOptions(),
                source: str | None = None, viewer_copies: bool = False,
                read: Callable[[Path], Radiograph] = load_image) -> Outcome:
    """Read (with ``read``), predict and write one job (``options``: ``heatmaps_for``, ``allow_ood``,
    ``dicom_out``); ``source``/``viewer_copies``: see :func:`~radsight.results.writer.write_results`."""
    images: list[Radiograph] = []
    outcome = Outcome(job)
    for path in job.paths:
        try:
            images.append(read(path))
        except InputError as exc:
            outcome.notes.append(exc)
    try:
        outcome.prediction = _predict(predictor, job, images, outcome.notes, options)
    except InputError as exc:
        outcome.error = exc
        outcome.notes = outcome.notes if job.together else []
        return outcome
    outcome.written = write_results(images, outcome.prediction, out_dir, job.stem, outcome.notes if job.together
                                    else [], options.dicom_out, source, viewer_copies, options.deferred_images)
    if outcome.written.problem:
        outcome.error = InputError(job.name, outcome.written.problem)
    return outcome


def _predict(predictor: Predictor, job: Job, images: list[Radiograph], unreadable: list[InputError],
             options: PredictorOptions) -> Prediction | StudyPrediction:
    if not job.together:
        if not images:
            raise unreadable[0]
        prediction = predictor.predict(images[0], options.heatmaps_for)
        if not options.allow_ood:
            refuse_ood(prediction.ood, prediction.source)
        return prediction
    if not images:
        raise InputError(job.name, "no image of this study could be read")
    prediction = predictor.predict_study(images, job.name, options.heatmaps_for)
    if not options.allow_ood:
        refuse_ood(prediction.ood, job.name, "frontal view ")
    return prediction


def analyze_jobs(predictor: Predictor, jobs: list[Job], out_dir: Path, options: PredictorOptions = PredictorOptions(),
                 workers: int = 1, read: Callable[[Path], Radiograph] = load_image) -> Iterator[Outcome]:
    """:func:`analyze_job` for each job, in input order; with ``workers`` > 1 that many at once on threads sharing
    ``predictor`` (built with ``threads=threads_per_worker(workers)`` so they share the cores out)."""
    return ordered_map(lambda job: analyze_job(predictor, job, out_dir, options, read=read), jobs, workers)


def analyze_files(paths: list[Path], out_dir: Path, predictor: Predictor, workers: int = 1,
                  options: PredictorOptions = PredictorOptions()) -> Iterator[Outcome]:
    """Each file read alone (:func:`~radsight.batch.jobs.image_jobs`), as ``radsight analyze`` reads files with a
    frontal model."""
    return analyze_jobs(predictor, image_jobs(paths), out_dir, options, workers)
