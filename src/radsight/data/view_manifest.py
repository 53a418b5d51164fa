"""Images labelled by view (frontal or lateral) from manifests, for the view classifier's training and
evaluation."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from radsight.core import FRONTAL, LATERAL, LATERAL_NAMES
from radsight.data.manifest import patient_split


@dataclass
class ViewRow:
    path: Path
    view: str
    source: str  # the manifest the row came from
    patient: str  # as that manifest names it
    split: str


def view_rows(sources: list[tuple[str, str]]) -> list[ViewRow]:
    """Every row of every (manifest CSV, image folder) source. A manifest needs an ``image`` column; ``view`` (L,
    LL, lateral... : lateral; anything else, or no column, as in ChestX-ray14: frontal), ``patient_id`` (else
    ``group``) and ``split`` (else a hash of the patient) are read when present."""
    rows = []
    for manifest, images in sources:
        with open(manifest, newline="") as fh:
            for r in csv.DictReader(fh):
                if "image" not in r:
                    raise ValueError(f"{manifest}: no 'image' column")
                view = LATERAL if (r.get("view") or "").strip().lower() in LATERAL_NAMES else FRONTAL
                patient = r.get("patient_id") or r.get("group") or r["image"]
                split = r.get("split") or patient_split(f"{manifest}:{patient}")
                rows.append(ViewRow(Path(images) / r["image"], view, str(manifest), patient, split))
    return rows
