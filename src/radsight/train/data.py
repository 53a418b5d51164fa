"""Training tensors from a manifest, read through the same I/O and pixel contract as inference."""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track

from radsight.core import InputError
from radsight.data.manifest import Manifest
from radsight.inputs.preprocess import InputSpec, channel_stats
from radsight.io import load_image
from radsight.io.atomic import atomic_write
from radsight.pipeline.inputs import InputBuilder
from radsight.train.distributed import log


def load_split(manifest: Manifest, builder: InputBuilder, cache: Path | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model inputs in [0, 1] before normalisation (N, sources, S, S); targets (N, findings + 1), NaN unknown;
    each row's patient as a number (N,), the same number for the same patient id.

    Each image goes through ``builder`` exactly as the predictor's input does at inference (thorax crop,
    lung-masked and bone-suppressed views). The last target column is "any finding" (the triage output).
    With ``cache``, the inputs are stored there once and read back by later runs on the same rows and models.
    """
    def read() -> dict[str, torch.Tensor]:
        images, keep = [], []
        for i in track(range(len(manifest)), description=f"reading {len(manifest)} images", transient=True):
            try:
                image = load_image(manifest.path(i))
            except InputError as exc:
                log.warning("skipped: %s", exc)
                continue
            images.append(builder.build(image, normalised=False).x)
            keep.append(i)
        if not images:
            raise ValueError(f"no readable images under {manifest.root}")
        targets = np.concatenate([manifest.labels, manifest.abnormal()[:, None]], axis=1)[keep]
        numbers: dict[str, int] = {}
        patients = [numbers.setdefault(manifest.patient_ids[i], len(numbers)) for i in keep]
        return {"x": torch.from_numpy(np.stack(images)), "y": torch.from_numpy(targets),
                "patients": torch.tensor(patients, dtype=torch.long)}
    stored = cached(cache, _cache_key(manifest, builder), read)
    return stored["x"], stored["y"], stored["patients"]


def cached(cache: Path | None, key: str, build: Callable[[], dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``build()``'s tensors, written to ``cache`` once and read back from it while ``key`` is the same."""
    if cache is not None and cache.is_file():
        stored = torch.load(cache, weights_only=True)
        if stored.get("key") == key:
            return stored
    tensors = build()
    if cache is not None:
        atomic_write(cache, lambda tmp: torch.save({"key": key, **tensors}, tmp))
    return tensors


def _cache_key(manifest: Manifest, builder: InputBuilder) -> str:
    models = [m.cfg.sha256 or m.cfg.name for m in (builder.lungs, builder.bone) if m is not None]
    text = json.dumps([manifest.images, str(manifest.root), asdict(builder.spec), models, "patients"], default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _uniform(n: int, gen: torch.Generator, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=gen)


def random_affine(n: int, gen: torch.Generator) -> torch.Tensor:
    """Small rotations (±7°), scalings (0.9-1.1) and shifts (±6%) as affine_grid matrices (n, 2, 3)."""
    angle = _uniform(n, gen, -7, 7) * math.pi / 180
    scale = _uniform(n, gen, 0.9, 1.1)
    tx, ty = _uniform(n, gen, -0.06, 0.06), _uniform(n, gen, -0.06, 0.06)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)


def warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def photometric(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gamma, contrast and brightness jitter and detector-like noise on a batch in [0, 1]."""
    n = x.shape[0]
    gamma = torch.exp(_uniform(n, gen, -0.25, 0.25)).view(n, 1, 1, 1)
    x = x.clamp(0, 1) ** gamma
    x = (x - 0.5) * _uniform(n, gen, 0.85, 1.15).view(n, 1, 1, 1) + 0.5 + _uniform(n, gen, -0.06, 0.06).view(n, 1, 1, 1)
    x = x + 0.01 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Radiograph-safe augmentation of a batch in [0, 1]. No horizontal flip: chest anatomy is lateralised."""
    return photometric(warp(x, random_affine(x.shape[0], gen)), gen)


def normalise_batch(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """:func:`radsight.inputs.preprocess.normalise` for torch batches (N, sources, S, S) already on the model grid."""
    means, stds = (torch.from_numpy(v.copy()).view(1, -1, 1, 1) for v in channel_stats(spec))
    return (x - means.to(x.device)) / stds.to(x.device)
