"""Studies, not single images: files grouped by StudyInstanceUID, analyzed together, one document a study.

``STUDY.json`` holds one set of findings, probabilities, triage and priority for the study, and a ``views`` list:
each image's source, the view it was read as and how that was decided (header or view classifier, and any
contradiction between them), its size, and on its own pixels the heatmap and boxes of each finding shown.
"""
from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from PIL.Image import Image as PILImage

from radsight.concurrency import ordered_map
from radsight.core import ImageMeta, InputError, Radiograph, StudyPrediction
from radsight.io import load_image
from radsight.io.dicom import view_elements
from radsight.io.loader import looks_like_dicom
from radsight.pipeline import refuse_ood
from radsight.render import render_overlay
from radsight.report import (DISCLAIMER, SCHEMA_VERSION, atomic_write, prediction_document, unique_stem,
                             write_image_files)
from radsight.views import LATERAL, header_view

HEADER_TAGS = ["StudyInstanceUID", "ViewPosition", "ViewCodeSequence", "PatientOrientation"]


@dataclass
class StudyInput:
    """The files of one study: ``name`` is its StudyInstanceUID, or the first file's stem for files without one;
    ``stem`` its output name (the name with characters unsafe in file names replaced, numbered when an earlier
    study has it)."""

    name: str
    paths: list[Path]
    lateral_in_header: bool = False  # a header names a lateral view
    stem: str = ""


def group_studies(paths: list[Path], one_study: bool = False) -> list[StudyInput]:
    """DICOM files by the StudyInstanceUID in their headers (pixel data is not read here), in the order each study
    is first met; every other file, and a DICOM file without a StudyInstanceUID, a study of its own. With
    ``one_study``, the files given are one study, named by the StudyInstanceUID they share, else by the first
    file."""
    if one_study:
        headers = [_header(p) for p in paths]
        uids = {uid for uid, _ in headers}
        name = next(iter(uids)) if len(uids) == 1 and None not in uids else (paths[0].stem if paths else "")
        studies = {"": StudyInput(name, list(paths), any(lateral for _, lateral in headers))} if paths else {}
    else:
        studies = {}
        for path in paths:
            uid, lateral = _header(path)
            study = studies.setdefault(uid or f"file:{path}", StudyInput(uid or (path.stem or path.name), []))
            study.paths.append(path)
            study.lateral_in_header |= lateral
    used: set[str] = set()
    for study in studies.values():
        study.stem = unique_stem(re.sub(r"[^A-Za-z0-9._-]", "_", study.name)[:128] or "study", used)
    return list(studies.values())


def _header(path: Path) -> tuple[str | None, bool]:
    """A DICOM file's StudyInstanceUID and whether its header names a lateral view; (None, False) for other files
    and for headers that cannot be read (the file's error comes when it is analyzed)."""
    try:
        with open(path, "rb") as fh:
            if not looks_like_dicom(fh.read(132)):
                return None, False
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        lateral = header_view(ImageMeta(**view_elements(ds))).view == LATERAL
        return str(ds.get("StudyInstanceUID", "")).strip() or None, lateral
    except Exception:  # noqa: BLE001 - any parser failure: the file is analyzed (and refused) as it is later
        return None, False


@dataclass
class StudyOutcome:
    study: StudyInput
    prediction: StudyPrediction | None = None
    json: str | None = None
    error: InputError | None = None
    unreadable: list[InputError] = field(default_factory=list)  # files of the study that could not be read


def analyze_studies(studies: list[StudyInput], out_dir: Path, predictor, workers: int = 1,
                    explain: Collection[str] = (), dicom_out: bool = False,
                    allow_ood: bool = False) -> Iterator[StudyOutcome]:
    """Each study analyzed by ``predictor`` (``pipeline.Predictor``) and written as ``STUDY.json`` with its view
    files (and with ``dicom_out`` its DICOM results); a study that cannot be analyzed, or whose frontal the
    out-of-distribution gate refuses (unless ``allow_ood``), is an error outcome and the others go on. In input
    order."""
    return ordered_map(lambda s: analyze_study(predictor, s, out_dir, explain, dicom_out, allow_ood), studies,
                       workers)


def analyze_study(predictor, study: StudyInput, out_dir: Path, explain: Collection[str] = (),
                  dicom_out: bool = False, allow_ood: bool = False) -> StudyOutcome:
    images: list[Radiograph] = []
    outcome = StudyOutcome(study)
    for path in study.paths:
        try:
            images.append(load_image(path))
        except InputError as exc:
            outcome.unreadable.append(exc)
    try:
        if not images:
            raise InputError(study.name, "no image of this study could be read")
        outcome.prediction = predictor.predict_study(images, study.name, explain)
        if not allow_ood:
            refuse_ood(outcome.prediction.ood, study.name, "frontal view ")
    except InputError as exc:
        outcome.error = exc
        return outcome
    try:
        outcome.json = write_study_outputs(images, outcome.prediction, out_dir, study.stem, outcome.unreadable,
                                           dicom_out)
    except InputError as exc:  # analyzed and written, but its DICOM results could not be made
        outcome.json, outcome.error = study.stem + ".json", exc
    return outcome


def study_document(sp: StudyPrediction, view_files: list, unreadable: list[InputError] = ()) -> dict:
    """The study's JSON document; ``view_files``: each view's written files (``report.OutputFiles`` or None)."""
    views = []
    for result, files in zip(sp.views, view_files):
        entry = {"source": result.source, "view": result.view.view if result.view else None,
                 "view_decision": asdict(result.view) if result.view else None, "read": result.read,
                 "reason": result.reason}
        if result.prediction is not None:
            doc = prediction_document(result.prediction, files)
            entry.update(width=doc["width"], height=doc["height"], image=doc["image"], overlay=doc["overlay"],
                         findings={f["name"]: {"heatmaps": f["heatmaps"], "boxes": f["boxes"]}
                                   for f in doc["findings"] if f["heatmaps"] or f["boxes"]},
                         triage_heatmap=doc["triage"]["heatmap"])
            if doc["anatomy"] is not None:
                entry["anatomy"] = doc["anatomy"]
        views.append(entry)
    views += [{"source": e.source, "view": None, "read": False, "reason": e.reason} for e in unreadable]
    findings = [{k: v for k, v in asdict(f).items() if k != "boxes"} for f in sp.findings]
    return {"schema_version": SCHEMA_VERSION, "study": sp.study, "model": asdict(sp.model),
            "triage": asdict(sp.triage), "findings": findings, "explanation": sp.explanation,
            "ood": asdict(sp.ood) if sp.ood else None, "views": views, "disclaimer": DISCLAIMER}


@dataclass
class ReadView:
    """A view the model read, as written: its image, view name ("frontal", "lateral") and overlay."""

    image: Radiograph
    view: str
    overlay: PILImage


def write_view_files(images: list[Radiograph], sp: StudyPrediction, out_dir: Path, stem: str,
                     unreadable: list[InputError] = ()) -> tuple[dict, list[ReadView]]:
    """For each view read, ``stem.<view>.*`` (overlay, heatmaps, lungs); the study's document (not written) and
    the views read, in ``sp.views`` order."""
    by_source = {image.source: image for image in images}
    read: list[ReadView] = []
    files = []
    for r in sp.views:  # one frontal and one lateral are read at most
        if r.read:
            image = by_source[r.source]
            read.append(ReadView(image, r.view.view, render_overlay(image, r.prediction)))
            files.append(write_image_files(image, r.prediction, out_dir, f"{stem}.{r.view.view}", read[-1].overlay))
        else:
            files.append(None)
    return study_document(sp, files, unreadable), read


def write_study_outputs(images: list[Radiograph], sp: StudyPrediction, out_dir: Path, stem: str,
                        unreadable: list[InputError] = (), dicom_out: bool = False) -> str:
    """``stem.json`` and, for each view read, ``stem.<view>.*`` (overlay, heatmaps, lungs); with ``dicom_out``,
    when every view read is DICOM, also the study's DICOM results (``dicom_results.write_study_dicom``). The
    JSON's name; :class:`InputError` (after the JSON is written) when a header cannot carry DICOM results."""
    document, read = write_view_files(images, sp, out_dir, stem, unreadable)
    problem = None
    if dicom_out and all(r.image.from_dicom for r in read):
        from radsight.dicom_results import write_study_dicom  # highdicom: loaded only when asked for
        try:
            document["dicom_results"] = write_study_dicom([(Path(r.image.source), r.view) for r in read],
                                                          sp, [np.asarray(r.overlay) for r in read], out_dir, stem)
        except Exception as exc:  # noqa: BLE001 - a header highdicom cannot build results from: reported, not raised
            problem = InputError(sp.study, f"analyzed, but no DICOM results could be made from its headers "
                                           f"({type(exc).__name__}: {exc})")
    text = json.dumps(document, indent=2)
    atomic_write(out_dir / f"{stem}.json", lambda t: t.write_text(text + "\n"))
    if problem is not None:
        raise problem
    return f"{stem}.json"
