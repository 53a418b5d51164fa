"""Paired image sets (a radiograph and its bone-suppressed soft-tissue image): a CSV manifest with columns
``image, target, patient_id, split`` (``kind`` optional) beside an image folder and a target folder."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

REQUIRED = ("image", "target", "patient_id", "split")


@dataclass(frozen=True)
class Pair:
    image: Path
    target: Path
    patient_id: str
    split: str
    kind: str = ""


def read_pairs(manifest: Path, images: Path, targets: Path | None = None) -> list[Pair]:
    """Every row of ``manifest``; ``targets`` defaults to the ``targets`` folder beside ``images``."""
    targets = targets or images.parent / "targets"
    with open(manifest, newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest}: paired manifest lacks column(s) {', '.join(missing)}")
        return [Pair(images / row["image"], targets / row["target"], row["patient_id"], row["split"],
                     row.get("kind") or "") for row in reader]


def select(pairs: list[Pair], split: str | None = None, kind: str | None = None) -> list[Pair]:
    return [p for p in pairs if (split is None or p.split == split) and (kind is None or p.kind == kind)]
