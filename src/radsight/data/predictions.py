"""Predictions CSV: ``Image Index`` then ``prob_<Finding>`` columns (the reproduce-chexnet layout)."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

IMAGE_COLUMN = "Image Index"


def write_predictions(path: Path, images: list[str], labels: list[str], probs: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow([IMAGE_COLUMN, *(f"prob_{label}" for label in labels)])
        for name, row in zip(images, probs):
            writer.writerow([name, *(f"{v:.6g}" for v in row)])


def read_predictions(path: Path, images: list[str], labels: list[str]) -> np.ndarray:
    """Scores (len(images), len(labels)) in the given orders; NaN where the CSV lacks a row or column."""
    with open(path, newline="") as fh:
        rows = {r[IMAGE_COLUMN]: r for r in csv.DictReader(fh)}
    out = np.full((len(images), len(labels)), np.nan)
    for i, name in enumerate(images):
        row = rows.get(name) or rows.get(Path(name).name)
        if row is None:
            continue
        for j, label in enumerate(labels):
            value = row.get(f"prob_{label}")
            if value not in (None, ""):
                out[i, j] = float(value)
    return out
