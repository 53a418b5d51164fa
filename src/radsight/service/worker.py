"""Background analysis: claim a queued study, analyze it, write its outputs and DICOM results, send them on."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pydicom

from radsight.batch.jobs import Job
from radsight.batch.run import analyze_job
from radsight.core import InputError, Radiograph
from radsight.io import load_image
from radsight.pipeline.options import PredictorOptions
from radsight.pipeline.predictor import Predictor
from radsight.service.db import Study, StudyStore
from radsight.service.intake import upload_files, upload_path

log = logging.getLogger("radsight.service")

# seconds a worker's queue stays dry before its memory goes back to the system: not between studies that follow
# one another (shrinking the arenas costs a classifier run, and the next study would grow them again)
RELEASE_AFTER_IDLE = 2.0


class Workers:
    """``count`` threads sharing one predictor (ONNX Runtime sessions are thread-safe). ``stop``/``wake``: the
    events that stop and wake them (default: their own; a worker process is given its server's);
    ``holding``: told the id of each study as it is claimed, and "" once it is recorded; ``finished``: told the
    id of each study whose outcome was recorded."""

    def __init__(self, store: StudyStore, predictor: Predictor, options: PredictorOptions, data_dir: Path,
                 count: int = 1, deliver: Callable[[Path, list[pydicom.Dataset]], None] | None = None,
                 read: Callable[[Path], Radiograph] = load_image, stop=None, wake=None,
                 holding: Callable[[str], None] = lambda study_id: None,
                 finished: Callable[[str], None] = lambda study_id: None):
        self.store, self.predictor, self.options, self.data_dir = store, predictor, options, data_dir
        self.deliver, self.read, self.holding, self.finished = deliver, read, holding, finished
        self._stop = stop if stop is not None else threading.Event()
        self._wake = wake if wake is not None else threading.Event()
        self._threads = [threading.Thread(target=self.run, name=f"radsight-worker-{i}", daemon=True)
                         for i in range(count)]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for t in self._threads:
            t.join(timeout=30)

    def notify(self) -> None:
        self._wake.set()

    def run(self) -> None:
        """Claim and analyze studies until stopped."""
        last_work = None  # when this worker last finished a study; None once its memory went back
        while not self._stop.is_set():
            study = self.store.claim()
            if study is None:
                if last_work is not None and time.monotonic() - last_work >= RELEASE_AFTER_IDLE:
                    self.predictor.release_memory()  # the queue stayed dry: what the burst freed goes back
                    last_work = None
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self.holding(study.id)
            self.process(study)
            self.holding("")
            last_work = time.monotonic()

    def process(self, study: Study) -> None:
        """Analyze one study, holding its lease meanwhile; any failure is recorded on that study and the queue
        goes on. A result is recorded only while the lease is held: one that expired went to another replica."""
        with _lease(self.store, study.id):
            try:
                result = analyze_study(self.predictor, self.options, self.data_dir, study.id, self.deliver, self.read)
            except InputError as exc:
                recorded, outcome = self.store.fail(study.id, exc.reason), f"failed: {exc.reason}"
            except Exception as exc:  # a bug or a resource problem: record it, keep serving the others
                log.exception("study %s: internal error", study.id)
                recorded, outcome = self.store.fail(study.id, f"internal error ({type(exc).__name__})"), "failed"
            else:
                recorded, outcome = self.store.finish(study.id, result), f"done ({result['triage']['priority']})"
        if recorded:
            log.info("study %s %s", study.id, outcome)
            self.finished(study.id)
        else:
            log.warning("study %s: lease lost to another replica; this outcome is not recorded", study.id)


class _lease:
    """Renews a study's lease every third of its length while the block runs (nothing for stores without leases)."""

    def __init__(self, store, study_id: str):
        self.store, self.study_id, self._done = store, study_id, threading.Event()
        self._thread = None

    def __enter__(self):
        if self.store.lease_seconds:
            self._thread = threading.Thread(target=self._renew, args=(self.store.lease_seconds / 3,), daemon=True)
            self._thread.start()
        return self

    def _renew(self, every: float) -> None:
        while not self._done.wait(every):
            try:
                if not self.store.renew(self.study_id):
                    return
            except Exception:  # the database is unreachable: the lease may lapse; finish() will tell
                log.exception("study %s: lease not renewed", self.study_id)

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def results_dir(data_dir: Path, study_id: str) -> Path:
    return data_dir / "results" / study_id


def analyze_study(predictor: Predictor, options: PredictorOptions, data_dir: Path, study_id: str,
                  deliver: Callable[[Path, list[pydicom.Dataset]], None] | None = None,
                  read: Callable[[Path], Radiograph] = load_image) -> dict:
    """One queued analysis (one upload, or a study's instances read together) through the writer ``radsight
    analyze`` uses: its document and files under ``results/<id>/`` named ``study.*``, the viewer's copy of each
    radiograph read, and for DICOM input its DICOM results, sent on when ``deliver`` is set. The document's
    ``source`` is the study id, never the upload's path or name (they can carry patient identifiers). Instances
    were admitted by the intake (view, out-of-distribution gate) before they were queued; ``read``: how a file is
    read (the intake's :class:`~radsight.service.intake.Decoded` hands over what it read)."""
    files = upload_files(data_dir, study_id)
    job = Job(study_id, files, "study", together=len(files) > 1)
    outcome = analyze_job(predictor, job, results_dir(data_dir, study_id),
                          replace(options, allow_ood=True, dicom_out=True), source=study_id, viewer_copies=True,
                          read=read)
    if outcome.error is not None:
        raise outcome.error
    if deliver is not None and outcome.written.datasets:
        deliver(upload_path(data_dir, study_id) if job.together else files[0], outcome.written.datasets)
    return outcome.written.document
