"""Background analysis: claim a queued study, analyze it, write its outputs and DICOM results, send them on."""
from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from radsight.core import InputError
from radsight.dicom_results import dicom_results, save_dataset, study_results
from radsight.io import load_image
from radsight.pipeline import Predictor
from radsight.render import render_overlay
from radsight.report import atomic_write, grey_png, prediction_document, write_outputs, write_png
from radsight.service.db import Study, StudyStore
from radsight.service.intake import upload_files, upload_path
from radsight.study import write_view_files

log = logging.getLogger("radsight.service")
DISPLAY_LONGEST = 2048  # the viewer's copy of the radiograph


class Workers:
    """``count`` threads sharing one predictor (ONNX Runtime sessions are thread-safe)."""

    def __init__(self, store: StudyStore, predictor: Predictor, data_dir: Path, count: int = 1,
                 deliver: Callable[[Path, list[pydicom.Dataset]], None] | None = None):
        self.store, self.predictor, self.data_dir, self.deliver = store, predictor, data_dir, deliver
        self._stop, self._wake = threading.Event(), threading.Event()
        self._threads = [threading.Thread(target=self._run, name=f"radsight-worker-{i}", daemon=True)
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

    def _run(self) -> None:
        while not self._stop.is_set():
            study = self.store.claim()
            if study is None:
                self._wake.wait(timeout=1.0)
                self._wake.clear()
                continue
            self.process(study)

    def process(self, study: Study) -> None:
        """Analyze one study, holding its lease meanwhile; any failure is recorded on that study and the queue
        goes on. A result is recorded only while the lease is held: one that expired went to another replica."""
        with _lease(self.store, study.id):
            try:
                result = analyze_study(self.predictor, self.data_dir, study.id, self.deliver)
            except InputError as exc:
                recorded, outcome = self.store.fail(study.id, exc.reason), f"failed: {exc.reason}"
            except Exception as exc:  # a bug or a resource problem: record it, keep serving the others
                log.exception("study %s: internal error", study.id)
                recorded, outcome = self.store.fail(study.id, f"internal error ({type(exc).__name__})"), "failed"
            else:
                recorded, outcome = self.store.finish(study.id, result), f"done ({result['triage']['priority']})"
        if recorded:
            log.info("study %s %s", study.id, outcome)
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


def analyze_study(predictor: Predictor, data_dir: Path, study_id: str,
                  deliver: Callable[[Path, list[pydicom.Dataset]], None] | None = None) -> dict:
    """Outputs under ``results/<id>/``: analyze JSON, overlay, heatmaps, lung mask, the viewer's radiograph, and
    for DICOM input its DICOM results: SR, lung SEG, Secondary Captures (sent on when ``deliver`` is set). An
    analysis of several instances (one study's views) goes to :func:`analyze_views`."""
    files = upload_files(data_dir, study_id)
    if len(files) > 1:
        return analyze_views(predictor, data_dir, study_id, files, deliver)
    source = files[0]
    image = load_image(source)
    prediction = predictor.predict(image)
    out = results_dir(data_dir, study_id)
    overlay = render_overlay(image, prediction)  # drawn once: the overlay PNG and, for DICOM, the SC
    files = write_outputs(image, prediction, out, "study", overlay)
    write_png(_display(image.pixels), out / "image.png")
    document = prediction_document(prediction, files)
    document["source"] = study_id  # never the upload's path or name: those can carry patient identifiers
    if image.from_dicom:  # DICOM in, DICOM out
        ds = pydicom.dcmread(source, stop_before_pixels=True)  # identifiers only: pixels were read above
        document["study"] = study_descriptors(ds, image.meta.view_position)
        named = {f"{kind}.dcm": dataset for kind, dataset in dicom_results(ds, prediction, np.asarray(overlay)).items()}
        _send(named, source, out, document, deliver)
    return document


def analyze_views(predictor: Predictor, data_dir: Path, study_id: str, files: list[Path],
                  deliver: Callable[[Path, list[pydicom.Dataset]], None] | None = None) -> dict:
    """One study's instances analyzed together (``Predictor.predict_study``): the study document with a ``views``
    list, ``study.<view>.*`` and ``image.<view>.png`` for each view read, and the study's DICOM results (``sr.dcm``
    referencing every image read, ``seg.dcm``, ``<view>.overlay.dcm``)."""
    images = [load_image(path) for path in files]
    sp = predictor.predict_study(images, study_id)
    out = results_dir(data_dir, study_id)
    document, read = write_view_files(images, sp, out, "study")
    for view in read:
        write_png(_display(view.image.pixels), out / f"image.{view.view}.png")
    document["source"] = study_id
    for entry in document["views"]:  # an instance by its place in the study, not by the server's path
        entry["source"] = Path(entry["source"]).name
    headers = [(pydicom.dcmread(view.image.source, stop_before_pixels=True), view.view) for view in read]
    positions = " + ".join(v.image.meta.view_position or v.view for v in read)
    document["study"] = study_descriptors(headers[0][0], positions)
    named = {f"{kind}.dcm": dataset for kind, dataset
             in study_results(headers, sp, [np.asarray(v.overlay) for v in read]).items()}
    _send(named, upload_path(data_dir, study_id), out, document, deliver)
    atomic_write(out / "study.json", lambda t: t.write_text(json.dumps(document, indent=2) + "\n"))
    return document


def _send(named: dict[str, pydicom.Dataset], source: Path, out: Path, document: dict,
          deliver: Callable[[Path, list[pydicom.Dataset]], None] | None) -> None:
    """Save the DICOM results beside the outputs, list them in ``document`` and send them on."""
    for name, dataset in named.items():
        save_dataset(dataset, out / name)
    document["dicom_results"] = list(named)
    if deliver is not None:
        deliver(source, list(named.values()))


def study_descriptors(ds: pydicom.Dataset, view: str | None) -> dict:
    """What tells a reader which study a worklist row is: accession number, study date (ISO) and view."""
    date = str(ds.get("StudyDate", "") or "")
    iso = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else (date or None)
    return {"accession_number": str(ds.get("AccessionNumber", "") or "") or None, "study_date": iso,
            "view_position": view}


def _display(pixels: np.ndarray) -> Image.Image:
    im = grey_png(pixels)
    if max(im.size) > DISPLAY_LONGEST:
        im.thumbnail((DISPLAY_LONGEST, DISPLAY_LONGEST), Image.Resampling.LANCZOS)
    return im
