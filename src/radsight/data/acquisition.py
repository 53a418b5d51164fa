"""What a metadata table of NIH's form states about each film, for films whose files carry no header (NIH's
PNGs): the view position, the pixel spacing (given for the original film: scaled to the file's size, x and y
apart, for most originals are not square), and the patient's stated age and sex (read to grade and to compare,
never written to results). A DICOM header's own values are never overridden."""
from __future__ import annotations

import csv
import gzip
from dataclasses import dataclass, replace
from pathlib import Path

from radsight.core import Radiograph
from radsight.data.demographics import parse_age, parse_sex

# the table's header splits "OriginalImage[Width,Height]" and "OriginalImagePixelSpacing[x,y]" at their commas
COLUMNS = ("Image Index", "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]")


@dataclass(frozen=True)
class Stated:
    """One film's row: view position, original size (width, height) and spacing (x, y) in mm, age, sex."""

    view_position: str | None
    original_size: tuple[int, int] | None
    spacing_xy_mm: tuple[float, float] | None
    age_years: float | None
    sex: str | None


def read_acquisition(path: Path) -> dict[str, Stated]:
    """File name -> what the table states of it (plain or gzipped CSV)."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", newline="") as fh:
        rows = csv.DictReader(fh)
        missing = set(COLUMNS) - set(rows.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: not a metadata table of NIH's form (no {', '.join(sorted(missing))} column)")
        return {r["Image Index"]: _stated(r) for r in rows}


def _stated(row: dict) -> Stated:
    try:
        size = (int(row["OriginalImage[Width"]), int(row["Height]"]))
        spacing = (float(row["OriginalImagePixelSpacing[x"]), float(row["y]"]))
        known = min(size) > 0 and min(spacing) > 0
    except (TypeError, ValueError):
        known = False
    age, female = parse_age(row.get("Patient Age")), parse_sex(row.get("Patient Gender"))
    return Stated((row.get("View Position") or "").strip().upper() or None, size if known else None,
                  spacing if known else None, None if age != age else age,
                  None if female != female else "F" if female else "M")


def with_stated(image: Radiograph, stated: Stated | None) -> Radiograph:
    """``image`` with what ``stated`` says where its own metadata is silent (a DICOM header is never overridden)."""
    if stated is None or image.from_dicom:
        return image
    meta = image.meta
    spacing = meta.pixel_spacing_mm
    if spacing is None and stated.spacing_xy_mm is not None:
        (x, y), (w, h) = stated.spacing_xy_mm, stated.original_size
        spacing = (y * h / image.height, x * w / image.width)  # (row, column) at the file's size
    image.meta = replace(meta, view_position=meta.view_position or stated.view_position, pixel_spacing_mm=spacing,
                         stated_age_years=meta.stated_age_years if meta.stated_age_years is not None
                         else stated.age_years, stated_sex=meta.stated_sex or stated.sex)
    return image


class StatedReader:
    """Reads a file as ``radsight.io.load_image`` does, then fills what ``table`` states of it (by file name)."""

    def __init__(self, table: dict[str, Stated]):
        self.table = table

    def __call__(self, path: Path) -> Radiograph:
        from radsight.io import load_image
        return with_stated(load_image(path), self.table.get(Path(path).name))
