"""Public chest X-ray releases, read from their own files as published, into one radsight manifest.

Each release's labels are mapped onto the 14 ChestX-ray14 findings (NIH spellings); its other findings are kept as
extra columns under their own names. A finding a release does not label is empty (NaN: masked out of the loss),
never a negative. Patient ids are kept, so splits stay patient-wise: the release's own split where it has one,
else a stable hash of the patient id (``manifest.patient_split``).
"""
from __future__ import annotations

import ast
import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from radsight.core import FINDINGS
from radsight.io.atomic import atomic_write

NAN = float("nan")
UNCERTAIN_POLICIES = ("ignore", "ones", "zeros")  # CheXpert and MIMIC's -1: unknown, positive or negative

# CheXpert / MIMIC-CXR-JPG column -> NIH finding; the other columns are kept as extras.
CHEXPERT_TO_NIH = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Pleural Effusion": "Effusion",
                   "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax", "Consolidation": "Consolidation",
                   "Edema": "Edema"}
CHEXPERT_COLUMNS = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
                    "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
                    "Pleural Other", "Fracture", "Support Devices")
PADCHEST_TO_NIH = {"atelectasis": "Atelectasis", "cardiomegaly": "Cardiomegaly", "pleural effusion": "Effusion",
                   "infiltrates": "Infiltration", "mass": "Mass", "nodule": "Nodule", "pneumonia": "Pneumonia",
                   "pneumothorax": "Pneumothorax", "consolidation": "Consolidation", "pulmonary edema": "Edema",
                   "emphysema": "Emphysema", "pulmonary fibrosis": "Fibrosis", "pleural thickening": "Pleural_Thickening",
                   "hiatal hernia": "Hernia"}
VINDR_TO_NIH = {"Atelectasis": "Atelectasis", "Cardiomegaly": "Cardiomegaly", "Pleural effusion": "Effusion",
                "Infiltration": "Infiltration", "Pneumonia": "Pneumonia", "Pneumothorax": "Pneumothorax",
                "Consolidation": "Consolidation", "Emphysema": "Emphysema", "Pulmonary fibrosis": "Fibrosis",
                "Pleural thickening": "Pleural_Thickening"}


@dataclass
class Row:
    image: str  # relative to the release's root
    patient_id: str
    split: str = ""  # empty: a hash of the patient id decides
    findings: dict[str, float] = field(default_factory=dict)  # NIH finding -> 1, 0 or NaN (unlabelled)
    extras: dict[str, float] = field(default_factory=dict)  # the release's other labels
    bboxes: str = ""  # Label:x,y,w,h;... in image pixels
    study_id: str = ""  # the study the image belongs to (releases with several views a study)
    view: str = ""  # frontal or lateral, where the release says


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        raise ValueError(f"{path}: missing (is this the release's root folder?)")
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _chexpert_value(text: str, uncertain: str) -> float:
    text = (text or "").strip()
    if text == "":
        return NAN  # not mentioned in the report: not labelled
    value = float(text)
    if value == -1:
        return {"ignore": NAN, "ones": 1.0, "zeros": 0.0}[uncertain]
    return value


def _chexpert_labels(record: dict, uncertain: str) -> tuple[dict[str, float], dict[str, float]]:
    findings = {CHEXPERT_TO_NIH[c]: _chexpert_value(record.get(c, ""), uncertain) for c in CHEXPERT_TO_NIH}
    extras = {c: _chexpert_value(record.get(c, ""), uncertain) for c in CHEXPERT_COLUMNS if c not in CHEXPERT_TO_NIH}
    return findings, extras


def chestxray14(root: Path, uncertain: str = "ignore") -> list[Row]:
    """NIH ChestX-ray14: Data_Entry_2017.csv, BBox_List_2017.csv, train_val_list.txt / test_list.txt,
    images/ (every finding is labelled)."""
    test = set((root / "test_list.txt").read_text().split()) if (root / "test_list.txt").is_file() else set()
    boxes: dict[str, list[str]] = {}
    if (root / "BBox_List_2017.csv").is_file():  # Image Index, Finding Label, x, y, w, h (a header that splits)
        with open(root / "BBox_List_2017.csv", newline="") as fh:
            for r in list(csv.reader(fh))[1:]:
                if len(r) >= 6:
                    boxes.setdefault(r[0], []).append(f"{r[1]}:{','.join(v.strip() for v in r[2:6])}")
    rows = []
    for r in _read(root / "Data_Entry_2017.csv"):
        found = {label.strip() for label in r["Finding Labels"].split("|")}
        name = r["Image Index"]
        rows.append(Row(f"images/{name}", r["Patient ID"], "test" if name in test else "",
                        {f: float(f in found or f.replace("_", " ") in found) for f in FINDINGS},
                        bboxes=";".join(boxes.get(name, []))))
    return rows


def chexpert(root: Path, uncertain: str = "ignore") -> list[Row]:
    """CheXpert v1.0: train.csv and valid.csv with Path (CheXpert-v1.0/train/patientNNNNN/studyN/viewN_...jpg)."""
    rows = []
    for split, name in (("train", "train.csv"), ("val", "valid.csv")):
        for r in _read(root / name):
            path = r["Path"]
            patient = next(p for p in path.split("/") if p.startswith("patient"))
            findings, extras = _chexpert_labels(r, uncertain)
            rows.append(Row(path.split("/", 1)[1] if path.startswith("CheXpert") else path, patient, split, findings,
                            extras))
    return rows


def mimic_cxr(root: Path, uncertain: str = "ignore") -> list[Row]:
    """MIMIC-CXR-JPG 2.0: mimic-cxr-2.0.0-chexpert.csv (labels by study), -split.csv and -metadata.csv (images);
    images at files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg."""
    labels = {(r["subject_id"], r["study_id"]): r for r in _read(root / "mimic-cxr-2.0.0-chexpert.csv")}
    splits = {r["dicom_id"]: r["split"] for r in _read(root / "mimic-cxr-2.0.0-split.csv")}
    rows = []
    for r in _read(root / "mimic-cxr-2.0.0-metadata.csv"):
        subject, study, dicom = r["subject_id"], r["study_id"], r["dicom_id"]
        record = labels.get((subject, study), {})
        findings, extras = _chexpert_labels(record, uncertain)
        split = {"validate": "val"}.get(splits.get(dicom, ""), splits.get(dicom, ""))
        rows.append(Row(f"files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg", subject, split, findings, extras))
    return rows


def padchest(root: Path, uncertain: str = "ignore") -> list[Row]:
    """PadChest: PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv (ImageID, ImageDir, PatientID, Labels as a
    Python list literal); images under <ImageDir>/ (every finding is labelled)."""
    csv_files = sorted(root.glob("PADCHEST_chest_x_ray_images_labels_*.csv"))
    if not csv_files:
        raise ValueError(f"{root}: no PADCHEST_chest_x_ray_images_labels_*.csv (is this the release's root folder?)")
    rows = []
    for r in _read(csv_files[0]):
        try:
            labels = {str(v).strip().lower() for v in ast.literal_eval(r.get("Labels") or "[]")}
        except (ValueError, SyntaxError):
            labels = set()
        findings = {f: 0.0 for f in FINDINGS}
        findings.update({PADCHEST_TO_NIH[label]: 1.0 for label in labels if label in PADCHEST_TO_NIH})
        rows.append(Row(f"{r['ImageDir']}/{r['ImageID']}", r["PatientID"], "", findings))
    return rows


def vindr_cxr(root: Path, uncertain: str = "ignore") -> list[Row]:
    """VinDr-CXR: annotations/image_labels_train.csv and image_labels_test.csv (one row a radiologist; an image is
    positive when any of them says so); images at train/<image_id>.dicom and test/<image_id>.dicom."""
    rows = []
    for split in ("train", "test"):
        merged: dict[str, dict[str, float]] = {}
        for r in _read(root / "annotations" / f"image_labels_{split}.csv"):
            votes = merged.setdefault(r["image_id"], {})
            for column, value in r.items():
                if column not in ("image_id", "rad_id") and value not in ("", None):
                    votes[column] = max(votes.get(column, 0.0), float(value))
        for image, votes in merged.items():
            findings = {f: NAN for f in FINDINGS}
            findings.update({nih: votes.get(c, NAN) for c, nih in VINDR_TO_NIH.items()})
            extras = {c: v for c, v in votes.items() if c not in VINDR_TO_NIH}
            rows.append(Row(f"{split}/{image}.dicom", image, "test" if split == "test" else "", findings, extras))
    return rows


def rsna_pneumonia(root: Path, uncertain: str = "ignore") -> list[Row]:
    """RSNA Pneumonia Detection: stage_2_train_labels.csv (patientId, x, y, width, height, Target; one row a box);
    images at stage_2_train_images/<patientId>.dcm. Only Pneumonia is labelled."""
    merged: dict[str, Row] = {}
    for r in _read(root / "stage_2_train_labels.csv"):
        row = merged.setdefault(r["patientId"], Row(f"stage_2_train_images/{r['patientId']}.dcm", r["patientId"], "",
                                                    {f: NAN for f in FINDINGS}))
        row.findings["Pneumonia"] = max(row.findings["Pneumonia"] if not math.isnan(row.findings["Pneumonia"])
                                        else 0.0, float(r["Target"]))
        if r["Target"] == "1":
            box = f"Pneumonia:{r['x']},{r['y']},{r['width']},{r['height']}"
            row.bboxes = f"{row.bboxes};{box}" if row.bboxes else box
    return list(merged.values())


COHEN_FRONTAL = {"PA", "AP", "AP SUPINE", "AP SEMI ERECT", "AP ERECT"}
COHEN_LATERAL = {"L", "LL", "LATERAL"}
COHEN_PNEUMONIAS = ("pneumonia", "covid", "sars", "mers", "ards", "pneumocystis", "streptococcus", "legionella",
                    "klebsiella", "chlamydophila", "mycoplasma", "influenza", "varicella", "nocardia", "aspergillosis")


def covid_chestxray(root: Path, uncertain: str = "ignore") -> list[Row]:
    """The COVID-19 image data collection (Cohen et al. 2020): metadata.csv (or a subset saved as manifest.csv)
    with patientid, offset, view, finding, modality, filename; images/ (or the ``folder`` column). Radiographs
    only; a study is a patient at one offset (days since symptom onset); PA/AP rows are frontal, L lateral.
    Pneumonias (any cause, COVID-19 included) are Pneumonia; "No Finding" is negative for all 14; nothing else is
    labelled. The release's finding is kept as an extra column under its own name."""
    path = root / "metadata.csv" if (root / "metadata.csv").is_file() else root / "manifest.csv"
    rows = []
    for r in _read(path):
        if (r.get("modality") or "X-ray") != "X-ray":
            continue
        position = (r.get("view") or "").strip().upper()
        view = "frontal" if position in COHEN_FRONTAL else "lateral" if position in COHEN_LATERAL else ""
        finding = (r.get("finding") or "").strip()
        findings = {f: NAN for f in FINDINGS}
        if finding.lower() == "no finding":
            findings = {f: 0.0 for f in FINDINGS}
        elif any(word in finding.lower() for word in COHEN_PNEUMONIAS):
            findings["Pneumonia"] = 1.0
        extras = {finding.split("/")[-1]: 1.0} if finding and finding.lower() != "no finding" else {}
        study = f"{r['patientid']}@{r.get('offset') or r.get('date') or 'unknown'}"
        rows.append(Row(f"{r.get('folder') or 'images'}/{r['filename']}", r["patientid"], "", findings, extras,
                        study_id=study, view=view))
    return rows


ADAPTERS: dict[str, Callable[..., list[Row]]] = {
    "chestxray14": chestxray14, "chexpert": chexpert, "mimic-cxr-jpg": mimic_cxr, "padchest": padchest,
    "vindr-cxr": vindr_cxr, "rsna-pneumonia": rsna_pneumonia, "covid-chestxray": covid_chestxray}


def write_manifest(rows: list[Row], path: Path) -> Path:
    """The radsight manifest: image, patient_id, split, the 14 findings, the extras, bboxes, and study_id and view
    when the release gives them; empty = unlabelled."""
    extras = sorted({name for r in rows for name in r.extras})
    studies = ["study_id", "view"] if any(r.study_id or r.view for r in rows) else []

    def cell(value: float) -> str:
        return "" if value is None or math.isnan(value) else str(int(value)) if value in (0.0, 1.0) else str(value)
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["image", "patient_id", "split", *FINDINGS, *extras, "bboxes", *studies])
            for r in rows:
                writer.writerow([r.image, r.patient_id, r.split, *(cell(r.findings.get(f, NAN)) for f in FINDINGS),
                                 *(cell(r.extras.get(e, NAN)) for e in extras), r.bboxes,
                                 *([r.study_id, r.view] if studies else [])])
    atomic_write(path, write)
    return path


def import_release(name: str, root: Path, out: Path, uncertain: str = "ignore") -> int:
    """Read release ``name`` under ``root`` and write its manifest to ``out``; the number of images."""
    if name not in ADAPTERS:
        raise ValueError(f"unknown release {name!r}; known: {', '.join(ADAPTERS)}")
    if uncertain not in UNCERTAIN_POLICIES:
        raise ValueError(f"uncertain-label policy {uncertain!r}: choose one of {', '.join(UNCERTAIN_POLICIES)}")
    try:
        rows = ADAPTERS[name](root, uncertain)
    except KeyError as exc:
        raise ValueError(f"{root}: not the {name} layout (a file lacks the column {exc})") from exc
    if not rows:
        raise ValueError(f"{root}: no images listed")
    write_manifest(rows, out)
    return len(rows)
