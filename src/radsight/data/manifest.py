"""Labelled image sets: a CSV manifest (one row an image) beside a folder of images.

Columns: ``image`` (file name relative to the image folder), ``patient_id``, optional ``split``,
and one column per finding (NIH spellings; 1 positive, 0 negative, empty or -1 unknown, read as NaN). An optional
``abnormal`` column (1 abnormal, 0 normal) labels the triage of films whose findings are not named (a radiologist's
normal/abnormal read); where it is empty the findings decide. An optional ``source`` column names each row's dataset
(the shortcut audit compares them).
"""
from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsight.core import FINDING_ALIASES, FINDINGS


@dataclass
class Manifest:
    images: list[str]
    patient_ids: list[str]
    splits: list[str]
    labels: np.ndarray  # (N, len(findings)) float32, NaN = unknown
    findings: tuple[str, ...]
    root: Path  # image folder
    boxes: list[dict[str, list[tuple[float, float, float, float]]]] | None = None  # per image: finding -> x, y, w, h
    stated_abnormal: np.ndarray | None = None  # (N,) the ``abnormal`` column, NaN where empty
    sources: list[str] | None = None  # the ``source`` column

    def __len__(self) -> int:
        return len(self.images)

    def path(self, i: int) -> Path:
        return self.root / self.images[i]

    def select(self, split: str) -> "Manifest":
        keep = [i for i, s in enumerate(self.splits) if s == split]
        return Manifest([self.images[i] for i in keep], [self.patient_ids[i] for i in keep],
                        [split] * len(keep), self.labels[keep], self.findings, self.root,
                        [self.boxes[i] for i in keep] if self.boxes is not None else None,
                        self.stated_abnormal[keep] if self.stated_abnormal is not None else None,
                        [self.sources[i] for i in keep] if self.sources is not None else None)

    def abnormal(self) -> np.ndarray:
        """The ``abnormal`` column where it is filled; else 1 where any finding is positive, 0 where all are
        negative, NaN otherwise."""
        any_pos = np.nansum(self.labels, axis=1) > 0
        all_known = ~np.isnan(self.labels).any(axis=1)
        derived = np.where(any_pos, 1.0, np.where(all_known, 0.0, np.nan))
        if self.stated_abnormal is not None:
            derived = np.where(np.isnan(self.stated_abnormal), derived, self.stated_abnormal)
        return derived.astype(np.float32)


def _label(value: str) -> float:
    value = value.strip()
    if value in ("", "-1", "nan", "NaN"):
        return float("nan")
    return float(value)


def read_manifest(csv_path: Path, images: Path, findings: tuple[str, ...] = FINDINGS) -> Manifest:
    with open(csv_path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise ValueError(f"{csv_path}: manifest has no rows")
    missing = [c for c in ("image", *findings) if c not in rows[0]]
    if missing:
        raise ValueError(f"{csv_path}: manifest lacks columns {', '.join(missing)}")
    patients = [r.get("patient_id") or r["image"] for r in rows]
    splits = [r.get("split") or patient_split(p) for r, p in zip(rows, patients)]
    labels = np.array([[_label(r[f]) for f in findings] for r in rows], dtype=np.float32)
    boxes = [parse_boxes(r.get("bboxes") or "") for r in rows] if "bboxes" in rows[0] else None
    stated = np.array([_label(r["abnormal"]) for r in rows], np.float32) if "abnormal" in rows[0] else None
    sources = [r["source"] for r in rows] if "source" in rows[0] else None
    return Manifest([r["image"] for r in rows], patients, splits, labels, findings, Path(images), boxes, stated,
                    sources)


def parse_boxes(text: str) -> dict[str, list[tuple[float, float, float, float]]]:
    """``Label:x,y,w,h;Label:x,y,w,h`` (image pixels) -> {label: [(x, y, w, h), ...]}."""
    out: dict[str, list[tuple[float, float, float, float]]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        label, _, coords = part.partition(":")
        try:
            x, y, w, h = (float(v) for v in coords.split(","))
        except ValueError:
            raise ValueError(f"box {part!r} is not Label:x,y,w,h") from None
        label = FINDING_ALIASES.get(label.strip(), label.strip())
        out.setdefault(label, []).append((x, y, w, h))
    return out


def patient_split(patient_id: str, val_fraction: float = 0.15) -> str:
    """A stable patient-wise split for manifests without a ``split`` column."""
    bucket = int(hashlib.sha256(patient_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if bucket < val_fraction else "train"
