"""Background analysis: claim a queued study, analyze it, write its outputs and DICOM results, send them on."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image

from radsight.core import InputError
from radsight.dicom_results import dicom_results, is_dicom
from radsight.io import load_image
from radsight.pipeline import Predictor
from radsight.render import render_overlay
from radsight.report import grey_png, prediction_document, write_outputs, write_png
from radsight.service.db import Study, StudyStore

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
        """Analyze one study; any failure is recorded on that study and the queue goes on."""
        try:
            result = analyze_study(self.predictor, self.data_dir, study.id, self.deliver)
        except InputError as exc:
            self.store.fail(study.id, exc.reason)
            log.info("study %s failed: %s", study.id, exc.reason)
        except Exception as exc:  # a bug or a resource problem: record it, keep serving the others
            self.store.fail(study.id, f"internal error ({type(exc).__name__})")
            log.exception("study %s: internal error", study.id)
        else:
            self.store.finish(study.id, result)
            log.info("study %s done (%s)", study.id, result["triage"]["priority"])


def upload_path(data_dir: Path, study_id: str) -> Path:
    return data_dir / "uploads" / study_id


def results_dir(data_dir: Path, study_id: str) -> Path:
    return data_dir / "results" / study_id


def analyze_study(predictor: Predictor, data_dir: Path, study_id: str,
                  deliver: Callable[[Path, list[pydicom.Dataset]], None] | None = None) -> dict:
    """Outputs under ``results/<id>/``: analyze JSON, overlay, heatmaps, lung mask, the viewer's radiograph, and
    for DICOM input an SR and a Secondary Capture (sent to the PACS when ``deliver`` is set)."""
    source = upload_path(data_dir, study_id)
    image = load_image(source)
    prediction = predictor.predict(image)
    out = results_dir(data_dir, study_id)
    overlay = render_overlay(image, prediction)  # drawn once: the overlay PNG and, for DICOM, the SC
    files = write_outputs(image, prediction, out, "study", overlay)
    write_png(_display(image.pixels), out / "image.png")
    document = prediction_document(prediction, files)
    document["source"] = study_id  # never the upload's path or name: those can carry patient identifiers
    if is_dicom(image):  # DICOM in, DICOM out
        ds = pydicom.dcmread(source, stop_before_pixels=True)  # identifiers only: pixels were read above
        document["study"] = study_descriptors(ds, image.meta.view_position)
        named = {f"{kind}.dcm": dataset for kind, dataset in dicom_results(ds, prediction, np.asarray(overlay)).items()}
        for name, dataset in named.items():
            dataset.save_as(out / name, enforce_file_format=True)
        results = list(named.values())
        document["dicom_results"] = list(named)
        if deliver is not None:
            deliver(source, results)
    return document


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
