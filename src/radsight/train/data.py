"""Training tensors from a manifest, read through the same I/O and pixel contract as inference."""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track

from radsight.core import InputError
from radsight.data.manifest import Manifest
from radsight.io import load_image
from radsight.pipeline import ThoraxCropper, cut
from radsight.preprocess import InputSpec, resize


def load_split(manifest: Manifest, spec: InputSpec, cropper: ThoraxCropper | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Images resized to the model input, in [0, 1] (N, 1, S, S); targets (N, findings + 1), NaN unknown.

    The last target column is "any finding" (the triage output). With a ``cropper``, each image is first
    cropped to its thorax exactly as the predictor does at inference.
    """
    images, keep = [], []
    for i in track(range(len(manifest)), description=f"reading {len(manifest)} images", transient=True):
        try:
            image = load_image(manifest.path(i))
        except InputError as exc:
            print(f"skipped: {exc}")
            continue
        pixels = cut(image.model_pixels(spec.pixels), cropper.box(image) if cropper else None)
        images.append(resize(pixels, spec.size, spec.size))
        keep.append(i)
    if not images:
        raise ValueError(f"no readable images under {manifest.root}")
    targets = np.concatenate([manifest.labels, manifest.abnormal()[:, None]], axis=1)[keep]
    return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(targets)


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
    """Torch twin of :func:`radsight.preprocess.normalise` for batches already on the model grid."""
    return ((x - spec.mean) / spec.std).repeat(1, spec.channels, 1, 1)
