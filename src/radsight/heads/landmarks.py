"""Outline landmarks traced from a structure's outline: a fixed number of points in a fixed order, as the SCR /
HybridGNet landmark sets have them (right lung 44, left lung 50, heart 26, each clavicle 23)."""
from __future__ import annotations

import numpy as np

COUNTS = {"right_lung": 44, "left_lung": 50, "heart": 26, "right_clavicle": 23, "left_clavicle": 23}
# Each set's order, as in jsrt-scr's reference landmarks (identical in all 130 cases but a few): the direction
# around the outline (the sign of its shoelace area, y pointing down) and where the topmost point falls, as a share
# of the points (lungs and clavicles start at the top; the heart's top is its 9th-10th of 26 points).
ORDER = {"right_lung": (-1, 0.0), "left_lung": (1, 0.0), "heart": (1, 9 / 26), "right_clavicle": (1, 0.0),
         "left_clavicle": (-1, 0.0)}


def signed_area(points: np.ndarray) -> float:
    x, y = points[:, 0], points[:, 1]
    return 0.5 * float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))


def trace(polygon, structure: str, count: int | None = None) -> list[tuple[float, float]]:
    """``count`` points (default the set's) at equal arc length around a closed outline, in the set's order."""
    points = np.asarray(polygon, dtype=np.float64)
    direction, top_share = ORDER[structure]
    count = count or COUNTS[structure]
    if np.sign(signed_area(points)) != direction:
        points = points[::-1]
    points = np.roll(points, -int(np.argmin(points[:, 1])), axis=0)
    closed = np.vstack([points, points[:1]])
    lengths = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    at = np.arange(count) * lengths[-1] / count
    traced = np.stack([np.interp(at, lengths, closed[:, 0]), np.interp(at, lengths, closed[:, 1])], axis=1)
    traced = np.roll(traced, int(round(top_share * count)), axis=0)
    return [(round(float(x), 1), round(float(y), 1)) for x, y in traced]
