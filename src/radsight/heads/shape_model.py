"""A point distribution model of one landmark set (Cootes et al.'s active shape models): the mean shape and its main
modes of variation, after the training shapes are aligned for position, size and rotation (generalised Procrustes).

Fitted to a structure's predicted outline, it moves the traced points along the outline to where the shapes
observers drew put them: each round, the points are explained by the model (the shape's modes limited to three
standard deviations, so the set stays a plausible shape), then each model point goes to the outline point nearest it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

LIMIT_SD = 3.0
ROUNDS = 30


@dataclass(frozen=True)
class Similarity:
    scale: float
    rotation: np.ndarray  # (2, 2)
    shift: np.ndarray  # (2,)

    @classmethod
    def between(cls, source: np.ndarray, target: np.ndarray) -> Similarity:
        """The similarity that takes ``source`` (n, 2) nearest to ``target`` in least squares (Umeyama)."""
        a, b = source - source.mean(0), target - target.mean(0)
        u, sv, vt = np.linalg.svd(a.T @ b)
        flip = np.diag([1.0, np.sign(np.linalg.det(u @ vt))])
        rotation = (u @ flip @ vt).T
        scale = float((sv * np.diag(flip)).sum() / max((a ** 2).sum(), 1e-12))
        return cls(scale, rotation, target.mean(0) - scale * rotation @ source.mean(0))

    def __call__(self, points: np.ndarray) -> np.ndarray:
        return self.scale * points @ self.rotation.T + self.shift

    def undo(self, points: np.ndarray) -> np.ndarray:
        return (points - self.shift) @ self.rotation / self.scale


@dataclass(frozen=True)
class ShapeModel:
    mean: np.ndarray  # (n, 2)
    modes: np.ndarray  # (2n, k), orthonormal columns
    variances: np.ndarray  # (k,)

    @classmethod
    def build(cls, shapes: np.ndarray, kept_variance: float) -> ShapeModel:
        """From training shapes (m, n, 2): aligned to their mean, the fewest modes that explain ``kept_variance``."""
        reference = shapes[0] - shapes[0].mean(0)
        mean = reference
        for _ in range(10):
            aligned = np.stack([Similarity.between(s, mean)(s) for s in shapes])
            mean = aligned.mean(0) - aligned.mean((0, 1))
            mean *= np.linalg.norm(reference) / np.linalg.norm(mean)  # the size stays that of the first shape
        flat = np.stack([Similarity.between(s, mean)(s).ravel() for s in shapes])
        centre = flat.mean(0)
        _, sv, vt = np.linalg.svd(flat - centre, full_matrices=False)
        variances = sv ** 2 / max(len(flat) - 1, 1)
        k = int(np.searchsorted(np.cumsum(variances) / variances.sum(), kept_variance)) + 1
        return cls(centre.reshape(-1, 2), vt[:k].T, variances[:k])

    def fit(self, start: np.ndarray, outline: np.ndarray, rounds: int = ROUNDS) -> np.ndarray:
        """The model's points on ``outline`` (densely sampled, (p, 2)), from ``start`` (n, 2)."""
        tree, points = cKDTree(outline), np.asarray(start, dtype=np.float64)
        bound = LIMIT_SD * np.sqrt(self.variances)
        for _ in range(rounds):
            pose = Similarity.between(self.mean, points)
            if not pose.scale > 0:  # the points fell onto one spot: a degenerate outline, left as traced
                return np.asarray(start, dtype=np.float64)
            b = np.clip(self.modes.T @ (pose.undo(points) - self.mean).ravel(), -bound, bound)
            moved = outline[tree.query(pose(self.mean + (self.modes @ b).reshape(-1, 2)))[1]]
            if np.array_equal(moved, points):
                break
            points = moved
        return points

    def to_json(self) -> dict:
        return {"mean": np.round(self.mean, 4).tolist(), "modes": np.round(self.modes, 6).tolist(),
                "variances": np.round(self.variances, 6).tolist()}

    @classmethod
    def from_json(cls, data: dict) -> ShapeModel:
        return cls(np.asarray(data["mean"], np.float64), np.asarray(data["modes"], np.float64),
                   np.asarray(data["variances"], np.float64))
