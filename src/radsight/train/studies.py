"""Two-view training data: studies (a frontal image and, when there is one, a lateral) from manifests with
``study_id`` and ``view`` columns; rows without them are frontal-only studies (ChestX-ray14 and its like)."""
from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import track

from radsight.core import LATERAL_NAMES, InputError
from radsight.data.manifest import Manifest, read_manifest
from radsight.io import load_image
from radsight.pipeline.inputs import InputBuilder
from radsight.train.data import cached
from radsight.train.distributed import log


@dataclass
class StudyRows:
    """One study: its frontal image, its lateral (or None), split and labels (the frontal row's)."""

    frontal: Path
    lateral: Path | None
    split: str
    labels: np.ndarray  # (findings + 1,), NaN unknown; the last is "any finding"


def study_rows(sources: list[tuple[str, str]]) -> list[StudyRows]:
    """Studies of every (manifest, images) source. A study's lateral is its first lateral row; a study with no
    frontal row is skipped (the model needs a frontal view), as are extra frontal rows' duplicates."""
    out = []
    for manifest_path, images in sources:
        manifest = read_manifest(Path(manifest_path), Path(images))
        with open(manifest_path, newline="") as fh:
            extra = [(r.get("study_id") or "", r.get("view") or "") for r in csv.DictReader(fh)]
        out += _grouped(manifest, extra)
    return out


def _grouped(manifest: Manifest, extra: list[tuple[str, str]]) -> list[StudyRows]:
    targets = np.concatenate([manifest.labels, manifest.abnormal()[:, None]], axis=1)
    studies: dict[str, dict] = {}
    for i, (study, view) in enumerate(extra):
        entry = studies.setdefault(study or f"row{i}", {})
        key = "lateral" if view.strip().lower() in LATERAL_NAMES else "frontal"
        entry.setdefault(key, i)
    rows = []
    for entry in studies.values():
        if "frontal" not in entry:
            continue
        f = entry["frontal"]
        lateral = manifest.path(entry["lateral"]) if "lateral" in entry else None
        rows.append(StudyRows(manifest.path(f), lateral, manifest.splits[f], targets[f]))
    return rows


def load_studies(rows: list[StudyRows], builder: InputBuilder, cache: Path | None = None
                 ) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """(frontal, lateral, present) inputs in [0, 1] and targets; an absent lateral is zeros with present 0.
    A study whose frontal cannot be read is skipped; an unreadable lateral is treated as absent."""
    def read() -> dict[str, torch.Tensor]:
        fronts, laterals, present, targets = [], [], [], []
        for row in track(rows, description=f"reading {len(rows)} studies", transient=True):
            try:
                front = builder.build(load_image(row.frontal), normalised=False).x
            except InputError as exc:
                log.warning("skipped: %s", exc)
                continue
            side = np.zeros_like(front)
            if row.lateral is not None:
                try:
                    side = builder.build(load_image(row.lateral), normalised=False).x
                except InputError as exc:
                    log.warning("lateral treated as absent: %s", exc)
            fronts.append(front)
            laterals.append(side)
            present.append(float(row.lateral is not None and side.any()))
            targets.append(row.labels)
        if not fronts:
            raise ValueError("no readable studies")
        return {"f": torch.from_numpy(np.stack(fronts)), "l": torch.from_numpy(np.stack(laterals)),
                "p": torch.tensor(present, dtype=torch.float32)[:, None],
                "y": torch.from_numpy(np.stack(targets).astype(np.float32))}
    key = json.dumps([repr(builder.spec), *(f"{r.frontal}|{r.lateral}" for r in rows)])
    stored = cached(cache, hashlib.sha256(key.encode()).hexdigest(), read)
    return (stored["f"], stored["l"], stored["p"]), stored["y"]


def oversample_laterals(x: tuple[torch.Tensor, torch.Tensor, torch.Tensor], y: torch.Tensor, share: float
                        ) -> tuple[tuple[torch.Tensor, ...], torch.Tensor]:
    """Repeat the studies that have a lateral so that they are about ``share`` of the rows (laterals are rare)."""
    with_lateral = torch.nonzero(x[2].view(-1) > 0).flatten()
    if len(with_lateral) == 0:
        return x, y
    copies = max(0, round(share * len(y) / len(with_lateral)) - 1)
    rows = torch.cat([torch.arange(len(y)), with_lateral.repeat(copies)])
    return tuple(t[rows] for t in x), y[rows]
