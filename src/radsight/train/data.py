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
from radsight.preprocess import InputSpec, resize


def load_split(manifest: Manifest, spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Images resized to the model input, in [0, 1] (N, 1, S, S); targets (N, findings + 1), NaN unknown.

    The last target column is "any finding" (the triage output).
    """
    images, keep = [], []
    for i in track(range(len(manifest)), description=f"reading {len(manifest)} images", transient=True):
        try:
            pixels = load_image(manifest.path(i)).pixels
        except InputError as exc:
            print(f"skipped: {exc}")
            continue
        images.append(resize(pixels, spec.size, spec.size))
        keep.append(i)
    if not images:
        raise ValueError(f"no readable images under {manifest.root}")
    targets = np.concatenate([manifest.labels, manifest.abnormal()[:, None]], axis=1)[keep]
    return torch.from_numpy(np.stack(images)[:, None]), torch.from_numpy(targets)


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Radiograph-safe augmentation on a batch in [0, 1]: small rotation, scale and shift; contrast,
    brightness and gamma; detector-like noise. No horizontal flip: chest anatomy is lateralised."""
    n = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen)  # noqa: E731
    angle = u(-7, 7) * math.pi / 180
    scale = u(0.9, 1.1)
    tx, ty = u(-0.06, 0.06), u(-0.06, 0.06)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    gamma = torch.exp(u(-0.25, 0.25)).view(n, 1, 1, 1)
    x = x.clamp(0, 1) ** gamma
    x = (x - 0.5) * u(0.85, 1.15).view(n, 1, 1, 1) + 0.5 + u(-0.06, 0.06).view(n, 1, 1, 1)
    x = x + 0.01 * torch.randn(x.shape, generator=gen)
    return x.clamp(0, 1)


def normalise_batch(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Torch twin of :func:`radsight.preprocess.normalise` for batches already on the model grid."""
    return ((x - spec.mean) / spec.std).repeat(1, spec.channels, 1, 1)
