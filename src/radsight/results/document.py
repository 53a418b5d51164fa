"""The JSON document of an analysis: one image read alone, or a study read together (its ``views`` list).

Both shapes name the files written beside them (``OutputFiles``) and never copy a patient identifier; ``source``
is the input's path (the service puts its study id there instead).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import pydicom

from radsight.core import InputError, Prediction, StudyPrediction
from radsight.heads.registry import HEADS
from radsight.models.config import TRIAGE_LABEL

# 1.1: "views" (soft-tissue and bone images); 1.2: "triage.urgent"; 1.3: "explanation", findings' "heatmaps",
# "triage.heatmap"; 1.4: "view" (the projection the image was read as, and how that was decided), "image"'s
# "view_code" and "patient_orientation"; study documents. 2.0: one writer for the CLI, Ray and the service:
# "study" is an object (name, accession number, date, view) wherever the input is DICOM or a study; a study's
# frontal view lists its computed "views"; DICOM results are named STEM.sr.dcm, STEM.seg.dcm, STEM.sc.dcm,
# STEM.<view>.dcm (the service's STEM is "study"). 2.2: "age" and "sex" (the age-sex head). README's changelog
# lists each change. 2.3: "ood.reason", "boxes_withheld", findings' "withheld", "triage.model".
SCHEMA_VERSION = "2.3"
DISCLAIMER = ("Research and demonstration software: not a medical device and not for diagnostic use. "
              "Findings must be confirmed by a qualified reader.")


@dataclass
class OutputFiles:
    """The names of the files written for one image, relative to its output folder."""

    json: str
    overlay: str | None = None
    heatmaps: dict[str, str] = field(default_factory=dict)  # finding -> file (the prediction's method)
    alternates: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> finding -> file
    mask: str | None = None
    views: dict[str, str] = field(default_factory=dict)  # view name -> file
    dicom: list[str] = field(default_factory=list)  # DICOM results (SR, SEG, SC) written beside the JSON


def prediction_document(p: Prediction, files: OutputFiles | None = None) -> dict:
    """The document of one image read alone, with the files written beside it when ``files`` is given."""
    files = files or OutputFiles(json="")
    doc = {"schema_version": SCHEMA_VERSION, **p.to_dict()}
    for finding in doc["findings"]:
        name = finding["name"]
        finding["heatmap"] = files.heatmaps.get(name)
        finding["heatmaps"] = {p.explanation: finding["heatmap"]} if finding["heatmap"] else {}
        finding["heatmaps"].update((method, named[name]) for method, named in files.alternates.items()
                                   if name in named)
    doc["triage"]["heatmap"] = files.heatmaps.get(TRIAGE_LABEL)
    for head in HEADS.values():  # a head's own map, in its (first) section
        key = (head.sections or (head.section,))[0]
        if head.heatmap is not None and doc.get(key) is not None:
            doc[key]["heatmap"] = files.heatmaps.get(head.heatmap[0])
    if doc["anatomy"] is not None:
        doc["anatomy"]["mask"] = files.mask
    model = None if p.views_model is None else {"name": p.views_model.name, "version": p.views_model.version}
    doc["views"] = [{"name": name, "file": files.views.get(name), "model": model} for name in p.views]
    doc["overlay"] = files.overlay
    if files.dicom:
        doc["dicom_results"] = files.dicom
    doc["disclaimer"] = DISCLAIMER
    return doc


def study_document(sp: StudyPrediction, view_files: list[OutputFiles | None],
                   unreadable: list[InputError] = ()) -> dict:
    """The document of a study read together; ``view_files``: each view's written files (None: not read)."""
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
            if doc["views"]:
                entry["views"] = doc["views"]
            entry.update((section, doc[section]) for section in result.prediction.sections)
        views.append(entry)
    views += [{"source": e.source, "view": None, "read": False, "reason": e.reason} for e in unreadable]
    findings = [{k: v for k, v in asdict(f).items() if k != "boxes"} for f in sp.findings]
    return {"schema_version": SCHEMA_VERSION, "study": {"name": sp.study}, "model": asdict(sp.model),
            "triage": asdict(sp.triage), "findings": findings, "explanation": sp.explanation,
            "ood": asdict(sp.ood) if sp.ood else None, "views": views, "disclaimer": DISCLAIMER}


def study_descriptors(ds: pydicom.Dataset, view: str | None) -> dict:
    """What tells a reader which study a worklist row is: its StudyInstanceUID, accession number, study date
    (ISO) and view; no patient identifier."""
    date = str(ds.get("StudyDate", "") or "")
    iso = f"{date[:4]}-{date[4:6]}-{date[6:8]}" if len(date) == 8 and date.isdigit() else (date or None)
    return {"name": str(ds.get("StudyInstanceUID", "") or "") or None,
            "accession_number": str(ds.get("AccessionNumber", "") or "") or None, "study_date": iso,
            "view_position": view}
