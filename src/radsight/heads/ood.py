"""The out-of-distribution gate: how far an image lies from the frontal chest radiographs a model was fitted on.

An image is seen three ways, each a vector scored by its Mahalanobis distance (Ledoit-Wolf covariance) to the
fitting images:
- ``classifier``: the classifier's pooled features (its ``features`` output);
- ``thumbnail``: the image at 16x16, the layout of a frontal chest film (within its leading principal components),
  standardised to zero mean and unit spread (a site's brightness and contrast are not its layout);
- ``image``: grey-level and gradient histograms at 256 px and left-right symmetry (drawings, noise and photographs
  have other textures and histograms than radiographs).
Both model-free parts read the film's content: uniform bands at its edges (black or white padding, which some sites
add and others do not) are trimmed first. Gates fitted before this (no ``framed`` flag in their file) read the whole
image and an unstandardised thumbnail, as they were fitted.

Each distance is put on one scale with held-out chest radiographs (their median is 0, their 99th percentile 1);
the score is the largest of the three, and the threshold is the score that ``refuse_rate`` of the held-out
radiographs exceed. Fitted on several sources (hospitals, datasets), each held-out radiograph is scaled by its
distance to a fit without its own source: the threshold then admits a site the gate has never seen, not only
another film of the sites it knows. Fitting needs scikit-learn; scoring needs NumPy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsight.core import OodCheck, Radiograph
from radsight.heads.base import Head
from radsight.inputs.preprocess import Crop, InputSpec, prepare
from radsight.io.atomic import atomic_write
from radsight.models.config import ModelConfig
from radsight.models.store import DEFAULT_MODEL, ChecksumMismatch, ModelNotFound, sha256_file

PARTS = ("classifier", "thumbnail", "image")
# The thumbnail is measured within its 64 leading principal components: the full 256-cell covariance refused 8% of
# a new site's films (JSRT, left out of the fit) for their burned-in boxes and markers (the model card's table).
COMPONENTS = {"thumbnail": 64}
THUMBNAIL = 16
STATS_SIZE = 256
GRADIENT_EDGES = np.r_[0.0, np.geomspace(1e-3, 1.0, 15)]
FLAT_BAND = 0.008  # a row or column whose grey levels spread less than this is padding, not film
MIN_CONTENT = 0.5  # what is kept spans at least half of each dimension, else nothing is trimmed


def content_box(image: Radiograph, x: np.ndarray) -> Crop | None:
    """The image's content without the uniform bands at its edges, in its own pixels (None: no band), judged on
    ``x``, the image at STATS_SIZE. Rows are judged within the columns kept and columns within the rows kept,
    twice, so that bands on all four sides are trimmed (not where bands of two colours meet at a corner)."""
    def span(spread: np.ndarray) -> tuple[int, int]:
        inside = np.flatnonzero(spread > FLAT_BAND)
        if len(inside) == 0 or inside[-1] + 1 - inside[0] < MIN_CONTENT * len(spread):
            return 0, len(spread)
        start, stop = int(inside[0]), int(inside[-1]) + 1
        # a trimmed side's first kept cell blends band and film: start one cell further in
        return start + (start > 0), stop - (stop < len(spread))
    (top, bottom), (left, right) = (0, x.shape[0]), (0, x.shape[1])
    for _ in range(2):
        top, bottom = span(x[:, left:right].std(axis=1))
        left, right = span(x[top:bottom].std(axis=0))
    if (bottom - top, right - left) == x.shape:
        return None
    sy, sx = image.height / x.shape[0], image.width / x.shape[1]
    y0, x0 = int(np.ceil(top * sy)), int(np.ceil(left * sx))
    return x0, y0, max(1, int(right * sx) - x0), max(1, int(bottom * sy) - y0)


def describe(image: Radiograph, framed: bool = True) -> dict[str, np.ndarray]:
    """The model-free parts of an image: its thumbnail and its image statistics; ``framed``: of its content
    (edge bands trimmed), the thumbnail standardised (as gates fitted since read them)."""
    x = prepare(image, InputSpec(size=STATS_SIZE), normalised=False)[0][0]
    box = content_box(image, x) if framed else None
    if box is not None:
        x = prepare(image, InputSpec(size=STATS_SIZE, region="thorax"), box, normalised=False)[0][0]
    step = STATS_SIZE // THUMBNAIL
    thumb = x.reshape(THUMBNAIL, step, THUMBNAIL, step).mean(axis=(1, 3))
    grey = np.histogram(x, bins=16, range=(0.0, 1.0))[0] / x.size
    gradient = np.hypot(np.diff(x, axis=0)[:, :-1], np.diff(x, axis=1)[:-1, :])
    edges = np.histogram(gradient, bins=GRADIENT_EDGES)[0] / gradient.size
    spread = float(thumb.std())
    symmetry = float(np.corrcoef(thumb.ravel(), thumb[:, ::-1].ravel())[0, 1]) if spread > 1e-6 else 0.0
    if framed:
        thumb = (thumb - thumb.mean()) / max(spread, 1e-6)
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
    framed: bool = True  # reads ``describe(image, framed=True)``; gates saved without the flag read False

    def scores(self, vectors: dict[str, np.ndarray]) -> np.ndarray:
        """(N,) scores: the largest scaled distance over the parts."""
        return np.max([part.scaled(vectors[name]) for name, part in self.parts.items()], axis=0)

    def check(self, vectors: dict[str, np.ndarray]) -> OodCheck:
        score = float(self.scores(vectors)[0])
        return OodCheck(score=score, threshold=self.threshold, in_distribution=score <= self.threshold)

    def save(self, path: Path) -> None:
        arrays = {"threshold": np.asarray(self.threshold), "framed": np.asarray(self.framed)}
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
            return cls(parts, float(data["threshold"]), bool(data["framed"]) if "framed" in data else False)


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


def _part(vectors: np.ndarray, components: int | None = None) -> Part:
    """Ledoit-Wolf Mahalanobis; with ``components``, within the leading principal components only (a rank-k
    precision), so that a few odd cells (a burned-in box, a ring marker) do not dominate the distance."""
    vectors = vectors.astype(np.float64)
    if components is None or components >= min(vectors.shape):
        from sklearn.covariance import LedoitWolf
        covariance = LedoitWolf().fit(vectors)
        return Part(covariance.location_, covariance.precision_, 0.0, 1.0)
    mean = vectors.mean(axis=0)
    _, singular, axes = np.linalg.svd(vectors - mean, full_matrices=False)
    variance = singular[:components] ** 2 / (len(vectors) - 1)
    return Part(mean, (axes[:components].T / variance) @ axes[:components], 0.0, 1.0)


def fit_gate(fit: dict[str, np.ndarray], held: dict[str, np.ndarray], refuse_rate: float,
             fit_sources: np.ndarray | None = None, held_sources: np.ndarray | None = None
             ) -> tuple[OodGate, np.ndarray]:
    """A gate from the fitting images' vectors and the held-out radiographs' vectors (name -> (N, K)); also the
    held-out scores. With each row's source (``fit_sources``, ``held_sources``; two or more fitted), a held-out
    radiograph's distances, which set the scale and the threshold, are to a fit without its source."""
    cross = fit_sources is not None and held_sources is not None and len(set(fit_sources)) > 1
    parts, distances = {}, {}
    for name in PARTS:
        part = parts[name] = _part(fit[name], COMPONENTS.get(name))
        distances[name] = part.distance(held[name])
        for source in set(held_sources) if cross else ():
            rows, others = held_sources == source, fit_sources != source
            if others.any() and rows.any():
                distances[name][rows] = _part(fit[name][others], COMPONENTS.get(name)).distance(held[name][rows])
        part.median, part.q99 = float(np.median(distances[name])), float(np.quantile(distances[name], 0.99))
    gate = OodGate(parts, 0.0)
    scores = np.max([(distances[n] - p.median) / max(p.q99 - p.median, 1e-9) for n, p in parts.items()], axis=0)
    gate.threshold = float(np.quantile(scores, 1.0 - refuse_rate))
    return gate, scores


HEAD = Head(task="ood", summary="the out-of-distribution gate: how unlike the model's frontal radiographs a film is "
            "(fitted onto a classifier by radsight fit-ood)", model_tasks=("classification",),
            default_model=DEFAULT_MODEL, read=OodGate.check,
            section="ood", evaluate="radsight.evaluate.ood:from_request")
