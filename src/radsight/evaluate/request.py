"""What ``radsight evaluate`` was asked: every option of the command, for the head's evaluator to take what it
reads. ``model``: the model named by ``--model`` (or, for the anatomy and bone heads, by ``--lung-model`` and
``--bone-model``), else the head's shipped model."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class EvaluateRequest:
    task: str
    out: Path
    model: str | None = None
    manifest: Path | None = None
    images: Path | None = None
    predictions: Path | None = None
    reference: Path | None = None
    split: str | None = None
    bootstrap: int = 1000
    masks: Path | None = None
    landmarks: Path | None = None  # anatomy: reference outline landmarks (landmarks.csv)
    pixel_spacing_mm: float | None = None  # anatomy: the images' pixel size, for distances in mm
    lung_model: str | None = None
    subset: tuple[str, ...] = ()
    bone_pairs: Path | None = None
    targets: Path | None = None
    ood_test: tuple[str, ...] = ()
    explain: str | None = None
    robustness: bool = False
    metadata: Path | None = None  # age-sex: NIH's Data_Entry table, filling empty age/sex cells
    compare_with: str | None = None  # abnormal: the model paired against (default: the shipped default model)

    def need(self, *names: str) -> None:
        """ValueError naming the first of ``names`` (options) this evaluation needs and was not given."""
        for name in names:
            if getattr(self, name) in (None, ()):
                raise ValueError(f"--task {self.task} needs --{name.replace('_', '-')}")
