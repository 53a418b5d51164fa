"""Stated ages and sexes of a manifest's images: its ``age``/``sex`` columns, filled where empty from a metadata
table of NIH's form (``Image Index``, ``Patient Age``, ``Patient Gender``; plain or gzipped CSV)."""
from __future__ import annotations

import csv
import gzip
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsight.data.manifest import patient_split

FEMALE, MALE = "F", "M"


@dataclass
class Demographics:
    """Per manifest row: ``images``, ``patients``, ``splits``, ``age`` in years (NaN unknown) and ``female`` (1 F,
    0 M, NaN unknown); ``root`` is the image folder."""

    images: list[str]
    patients: list[str]
    splits: list[str]
    age: np.ndarray
    female: np.ndarray
    root: Path

    def __len__(self) -> int:
        return len(self.images)

    def path(self, i: int) -> Path:
        return self.root / self.images[i]

    def select(self, keep: np.ndarray | list[int]) -> Demographics:
        keep = np.asarray(keep, int)
        return Demographics([self.images[i] for i in keep], [self.patients[i] for i in keep],
                            [self.splits[i] for i in keep], self.age[keep],
                            self.female[keep], self.root)

    def split(self, name: str) -> Demographics:
        return self.select([i for i, s in enumerate(self.splits) if s == name])


def parse_age(text: str | None) -> float:
    """A manifest's age in years (a number; NaN when empty or not one)."""
    try:
        value = float(str(text or "").strip())
    except ValueError:
        return math.nan
    return value if 0 <= value < 130 else math.nan


def parse_sex(text: str | None) -> float:
    value = str(text or "").strip().upper()[:1]
    return 1.0 if value == FEMALE else 0.0 if value == MALE else math.nan


def read_metadata(path: Path) -> dict[str, tuple[float, float]]:
    """Image file name -> (age, female) from an NIH-style metadata table."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        rows = csv.DictReader(fh)
        missing = {"Image Index", "Patient Age", "Patient Gender"} - set(rows.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: metadata lacks columns {', '.join(sorted(missing))}")
        return {r["Image Index"]: (parse_age(r["Patient Age"]), parse_sex(r["Patient Gender"])) for r in rows}


def read_demographics(manifest: Path, images: Path, metadata: Path | None = None) -> Demographics:
    """The manifest's rows with their ages and sexes; ``metadata`` fills what its columns leave empty."""
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "image" not in rows[0]:
        raise ValueError(f"{manifest}: manifest has no rows or no image column")
    known = read_metadata(metadata) if metadata else {}
    age = np.array([parse_age(r.get("age")) for r in rows])
    female = np.array([parse_sex(r.get("sex")) for r in rows])
    for i, r in enumerate(rows):
        filled = known.get(Path(r["image"]).name)
        if filled:
            age[i] = filled[0] if math.isnan(age[i]) else age[i]
            female[i] = filled[1] if math.isnan(female[i]) else female[i]
    patients = [r.get("patient_id") or r["image"] for r in rows]
    splits = [r.get("split") or patient_split(p) for r, p in zip(rows, patients)]
    return Demographics([r["image"] for r in rows], patients, splits, age, female, Path(images))
