"""The out-of-distribution gate: how far an image lies from the frontal chest radiographs a model was fitted on.

An image is seen three ways, each a vector scored by its Mahalanobis distance (Ledoit-Wolf covariance) to the
fitting images:
- ``classifier``: the classifier's pooled features (its ``features`` output);
- ``thumbnail``: the image at 16x16, the layout of a frontal chest film;
- ``image``: grey-level and gradient histograms at 256 px and left-right symmetry (drawings, noise and photographs
  have other textures and histograms than radiographs).

Each distance is put on one scale with held-out chest radiographs (their median is 0, their 99th percentile 1);
the score is the largest of the three, and the threshold is the score that ``refuse_rate`` of the held-out
radiographs exceed. Fitting needs scikit-learn; scoring needs NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsight.core import OodCheck, Radiograph
from radsight.heads.base import Head
from radsight.inputs.preprocess import InputSpec, prepare
from radsight.io.atomic import atomic_write
from radsight.models.config import ModelConfig
from radsight.models.store import DEFAULT_MODEL, ChecksumMismatch, ModelNotFound, sha256_file

PARTS = ("classifier", "thumbnail", "image")
THUMBNAIL = 16
STATS_SIZE = 256
GRADIENT_EDGES = np.r_[0.0, np.geomspace(1e-3, 1.0, 15)]


def describe(image: Radiograph) -> dict[str, np.ndarray]:
    """The model-free parts of an image: its thumbnail and its image statistics."""
    x = prepare(image, InputSpec(size=STATS_SIZE), normalised=False)[0][0]
    step = STATS_SIZE // THUMBNAIL
    thumb = x.reshape(THUMBNAIL, step, THUMBNAIL, step).mean(axis=(1, 3))
    grey = np.histogram(x, bins=16, range=(0.0, 1.0))[0] / x.size
    gradient = np.hypot(np.diff(x, axis=0)[:, :-1], np.diff(x, axis=1)[:-1, :])
    edges = np.histogram(gradient, bins=GRADIENT_EDGES)[0] / gradient.size
    spread = float(thumb.std())
    symmetry = float(np.corrcoef(thumb.ravel(), thumb[:, ::-1].ravel())[0, 1]) if spread > 1e-6 else 0.0
    return {"thumbnail": thumb.ravel(), "image": np.r_[grey, edges, symmetry]}


@dataclass
class Part:
    mean: np.ndarray
    precision: np.ndarray
    median: float  # of the held-out radiographs' distances
    q99: float

    def distance(self, vectors: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(vectors) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, self.precision, d), 0.0))

    def scaled(self, vectors: np.ndarray) -> np.ndarray:
        return (self.distance(vectors) - self.median) / max(self.q99 - self.median, 1e-9)


@dataclass
class OodGate:
    parts: dict[str, Part]
    threshold: float

    def scores(self, vectors: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) scores: the largest scaled distance over the parts."""
        return np.max([part.scaled(vectors[name]) for name, part in self.parts.items()], axis=0)

    def check(self, vectors: dict[str, np.ndarray]) -> OodCheck:
        score = float(self.scores(vectors)[0])
        return OodCheck(score=score, threshold=self.threshold, in_distribution=score <= self.threshold)

    def save(self, path: Path) -> None:
        arrays = {"threshold": np.asarray(self.threshold)}
        for name, part in self.parts.items():
            arrays |= {f"{name}.mean": part.mean, f"{name}.precision": part.precision,
                       f"{name}.scale": np.asarray([part.median, part.q99])}
        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:  # a handle: np.savez adds ".npz" to a path's name
                np.savez(fh, **arrays)
        atomic_write(path, save)

    @classmethod
    def load(cls, path: Path) -> OodGate:
        with np.load(path, allow_pickle=False) as data:
            parts = {name: Part(data[f"{name}.mean"], data[f"{name}.precision"], *map(float, data[f"{name}.scale"]))
                     for name in PARTS if f"{name}.mean" in data}
            return cls(parts, float(data["threshold"]))


def load_gate(cfg: ModelConfig) -> OodGate | None:
    """The gate a model config names, after checking its sha256; None when it names none."""
    if not cfg.ood:
        return None
    if "features" not in cfg.outputs:
        raise ValueError(f"model {cfg.name}: its out-of-distribution gate needs the 'features' output")
    path = cfg.directory / cfg.ood["file"]
    if not path.is_file():
        raise ModelNotFound(f"model {cfg.name}: out-of-distribution gate {path} is missing")
    if sha256_file(path) != cfg.ood["sha256"]:
        raise ChecksumMismatch(f"model {cfg.name}: {path.name} does not match its recorded sha256")
    return OodGate.load(path)


def fit_gate(fit: dict[str, np.ndarray], held: dict[str, np.ndarray], refuse_rate: float) -> tuple[OodGate, np.ndarray]:
    """A gate from the fitting images' vectors and the held-out radiographs' vectors (name -> (N, K)); also the
    held-out scores."""
    from sklearn.covariance import LedoitWolf
    parts = {}
    for name in PARTS:
        covariance = LedoitWolf().fit(fit[name].astype(np.float64))
        part = Part(covariance.location_, covariance.precision_, 0.0, 1.0)
        distances = part.distance(held[name])
        part.median, part.q99 = float(np.median(distances)), float(np.quantile(distances, 0.99))
        parts[name] = part
    gate = OodGate(parts, 0.0)
    scores = gate.scores(held)
    gate.threshold = float(np.quantile(scores, 1.0 - refuse_rate))
    return gate, scores


HEAD = Head(task="ood", summary="the out-of-distribution gate: how unlike the model's frontal radiographs a film is "
            "(fitted onto a classifier by radsight fit-ood)", model_tasks=("classification",),
            default_model=DEFAULT_MODEL, read=OodGate.check,
            section="ood", evaluate="radsight.evaluate.ood:from_request")
