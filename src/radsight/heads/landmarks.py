"""Outline landmarks placed on a structure's outline: a fixed number of points in a fixed order, as the SCR /
HybridGNet landmark sets have them (right lung 44, left lung 50, heart 26, each clavicle 23).

Each point is first traced at a share of the outline's length from its topmost point, going round in the set's
direction: at equal shares, or at the shares an anatomy model ships in its folder (``landmarks.json``: each point's
mean share on its training films, :func:`fit_positions`). Where the folder also holds a shape model of the set
(``heads.shape_model``, built from observers' landmarks on training films), the traced points are then fitted to
the outline by it, which moves each numbered point along the outline to where observers put it on such a shape.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from radsight.heads.shape_model import ShapeModel

POSITIONS_FILE = "landmarks.json"

COUNTS = {"right_lung": 44, "left_lung": 50, "heart": 26, "right_clavicle": 23, "left_clavicle": 23}
# Each set's order, as in jsrt-scr's reference landmarks (identical in all 130 cases but a few): the direction
# around the outline (the sign of its shoelace area, y pointing down) and where the topmost point falls, as a share
# of the points (lungs and clavicles start at the top; the heart's top is its 9th-10th of 26 points).
ORDER = {"right_lung": (-1, 0.0), "left_lung": (1, 0.0), "heart": (1, 9 / 26), "right_clavicle": (1, 0.0),
         "left_clavicle": (-1, 0.0)}


def signed_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def oriented(polygon, structure: str) -> np.ndarray:
    """A closed outline going round in the set's direction, from its topmost point."""
    points = np.asarray(polygon, dtype=np.float64)
    if np.sign(signed_area(points)) != ORDER[structure][0]:
        points = points[::-1]
    return np.roll(points, -int(np.argmin(points[:, 1])), axis=0)


def _lengths(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    closed = np.vstack([points, points[:1]])
    return closed, np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])


def trace(polygon, structure: str, count: int | None = None,
          shares: list[float] | None = None) -> list[tuple[float, float]]:
    """The set's points around a closed outline: at ``shares`` of its length from the top, else ``count`` (default
    the set's) at equal arc length, placed so the top falls where the set has it."""
    closed, lengths = _lengths(oriented(polygon, structure))
    if shares is not None:
        at = np.asarray(shares) % 1.0 * lengths[-1]
    else:
        count = count or COUNTS[structure]
        at = (np.arange(count) / count - round(ORDER[structure][1] * count) / count) % 1.0 * lengths[-1]
    traced = np.stack([np.interp(at, lengths, closed[:, 0]), np.interp(at, lengths, closed[:, 1])], axis=1)
    return [(round(float(x), 1), round(float(y), 1)) for x, y in traced]


def fit_positions(cases: list[tuple[dict[str, list], dict[str, np.ndarray]]]) -> dict[str, list[float]]:
    """Each point's mean share of the outline from its top (a circular mean), over ``cases`` of (outlines by
    structure, reference points by structure)."""
    from scipy.spatial import cKDTree
    angles: dict[str, list[np.ndarray]] = {}
    for outlines, points in cases:
        for structure, polygon in outlines.items():
            if structure not in points or len(polygon) < 3:
                continue
            ordered = oriented(polygon, structure)
            _, lengths = _lengths(ordered)
            share = lengths[cKDTree(ordered).query(points[structure])[1]] / lengths[-1]
            angles.setdefault(structure, []).append(share * 2 * np.pi)
    return {s: [round(float(v), 5) for v in np.angle(np.exp(1j * np.stack(a)).mean(axis=0)) / (2 * np.pi) % 1.0]
            for s, a in angles.items()}


def densify(polygon, step: float = 0.25) -> np.ndarray:
    """Points every ``step`` pixels along a closed polygon (distance to a point set approximates that to the line)."""
    points = np.asarray(polygon, dtype=np.float64)
    sides = np.diff(np.vstack([points, points[:1]]), axis=0)
    n = np.maximum(1, np.ceil(np.hypot(*sides.T) / step)).astype(int)
    side = np.repeat(np.arange(len(sides)), n)
    along = (np.arange(n.sum()) - np.repeat(np.cumsum(n) - n, n)) / n[side]
    return points[side] + sides[side] * along[:, None]


@dataclass(frozen=True)
class Placement:
    """How an anatomy model places each set's points: fitted shares along the outline, and shape models."""
    shares: dict[str, list[float]] = field(default_factory=dict)
    shapes: dict[str, ShapeModel] = field(default_factory=dict)

    def place(self, polygon, structure: str, count: int | None = None) -> list[tuple[float, float]]:
        """The set's ``count`` (default: all its) points on a closed outline."""
        count = count or COUNTS[structure]
        shares = self.shares.get(structure)
        traced = trace(polygon, structure, count, shares if shares and len(shares) == count else None)
        model = self.shapes.get(structure)
        if model is None or len(model.mean) != count:
            return traced
        fitted = model.fit(np.asarray(traced), densify(polygon, 0.5))
        return [(round(float(x), 1), round(float(y), 1)) for x, y in fitted]


def read_positions(folder: Path | None) -> Placement:
    """The shares and shape models an anatomy model ships (none: equal arc length, no shape model)."""
    path = Path(folder) / POSITIONS_FILE if folder is not None else None
    if path is None or not path.is_file():
        return Placement()
    data = json.loads(path.read_text())
    return Placement({s: v for s, v in data.get("shares", {}).items() if s in COUNTS and len(v) == COUNTS[s]},
                     {s: ShapeModel.from_json(v) for s, v in data.get("shape_models", {}).items() if s in COUNTS})
