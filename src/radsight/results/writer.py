"""The one writer of an analysis's results, for ``radsight analyze``, Ray and the service alike.

One image read alone gets ``STEM.json`` with ``STEM.*`` beside it; a study read together gets ``STEM.json`` with
``STEM.<view>.*`` for each view read. With ``dicom_out`` and DICOM input, the DICOM results (SR, lung SEG, overlay
and computed-view Secondary Captures) are written beside them, named by :func:`radsight.results.dicom.file_name`.
The JSON is written last: its presence means the analysis's files are all there.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL.Image import Image as PILImage

from radsight.core import InputError, Prediction, Radiograph, StudyPrediction
from radsight.io.atomic import atomic_text
from radsight.io.library_warnings import quiet_libraries
from radsight.results.document import prediction_document, study_descriptors, study_document
from radsight.results.files import write_image_files, write_viewer_copy
from radsight.results.render import render_overlay

log = logging.getLogger("radsight.results")


@dataclass
class Written:
    """What :func:`write_results` wrote: the JSON's name and document, and the DICOM results (to send on);
    ``problem``: why no DICOM results could be made (the JSON was written without them)."""

    json: str
    document: dict
    datasets: list[pydicom.Dataset] = field(default_factory=list)
    problem: str | None = None


@dataclass
class _Read:
    image: Radiograph
    prediction: Prediction
    view: str | None  # "frontal", "lateral" in a study; None alone
    overlay: PILImage | None  # None: deferred


def write_results(images: list[Radiograph], result: Prediction | StudyPrediction, out_dir: Path, stem: str,
                  unreadable: list[InputError] = (), dicom_out: bool = False, source: str | None = None,
                  viewer_copies: bool = False, defer_overlay: bool = False) -> Written:
    """Write everything one analysis produced. ``images``: what was read (one, for a :class:`Prediction`);
    ``unreadable``: a study's files that could not be read (listed in its document); ``source``: the name the
    document gives the input instead of its path (paths can carry patient identifiers); ``viewer_copies``: also
    ``image.png`` (``image.<view>.png`` in a study), the web viewer's copy of each radiograph read;
    ``defer_overlay``: the overlay of an image read alone whose results carry no DICOM is named, not drawn (its
    caller draws it when asked)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    study = isinstance(result, StudyPrediction)
    if study:
        by_source = {image.source: image for image in images}
        read = [_Read(by_source[r.source], r.prediction, r.view.view, render_overlay(by_source[r.source], r.prediction))
                for r in result.views if r.read]
    else:
        drawn = not defer_overlay or (dicom_out and images[0].from_dicom)  # a Secondary Capture carries it
        read = [_Read(images[0], result, None, render_overlay(images[0], result) if drawn else None)]
    files = [write_image_files(r.image, r.prediction, out_dir, f"{stem}.{r.view}" if study else stem, r.overlay,
                               draw_overlay=r.overlay is not None) for r in read]
    headers = [r.image.header if r.image.from_dicom else None for r in read]
    dicom_input = all(h is not None for h in headers)
    named, problem = _dicom(out_dir, stem, result, read, headers) if dicom_input and dicom_out else ([], None)
    dicom_names = [name for name, _ in named]
    if study:
        each = iter(files)
        document = study_document(result, [next(each) if r.read else None for r in result.views], unreadable)
        if dicom_names:
            document["dicom_results"] = dicom_names
    else:
        files[0].dicom = dicom_names
        document = prediction_document(result, files[0])
    if dicom_input:
        positions = " + ".join(r.image.meta.view_position or r.view or "" for r in read) or None
        document["study"] = study_descriptors(headers[0], positions)
        if study:
            document["study"]["name"] = result.study
    if source is not None:
        document["source"] = source
        for entry in document["views"] if study else []:
            entry["source"] = Path(entry["source"]).name
    if viewer_copies:
        for r in read:
            write_viewer_copy(r.image, out_dir / ("image.png" if r.view is None else f"image.{r.view}.png"))
    atomic_text(out_dir / f"{stem}.json", json.dumps(document, indent=2) + "\n")
    return Written(f"{stem}.json", document, [dataset for _, dataset in named], problem)


def _dicom(out_dir: Path, stem: str, result: Prediction | StudyPrediction, read: list[_Read],
           headers: list[pydicom.Dataset]) -> tuple[list[tuple[str, pydicom.Dataset]], str | None]:
    """The DICOM results, saved; or none and the reason a header could not carry them."""
    from radsight.results.dicom import dicom_results, file_name, save_dataset, study_results  # highdicom: on demand
    try:
        with quiet_libraries(log):  # highdicom's warnings quote header values: the patient's and physicians' names
            if isinstance(result, StudyPrediction):
                made = study_results([(h, r.view) for h, r in zip(headers, read)], result,
                                     [np.asarray(r.overlay) for r in read])
            else:
                made = dicom_results(headers[0], result, np.asarray(read[0].overlay))
    except Exception as exc:  # noqa: BLE001 - a header highdicom cannot build results from: reported, not raised
        what = "headers" if isinstance(result, StudyPrediction) else "header"
        return [], f"analyzed, but no DICOM results could be made from its {what} ({type(exc).__name__}: {exc})"
    named = [(file_name(stem, kind), dataset) for kind, dataset in made.items()]
    for name, dataset in named:
        save_dataset(dataset, out_dir / name)
    return named, None
