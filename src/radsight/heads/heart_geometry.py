"""The heart and clavicles from their probability maps, and the cardiothoracic ratio as radiologists measure it.

CTR = (MRD + MLD) / ID: the heart's furthest extents to the patient's right and left of the midline (the middle of
the widest chest row, a proxy for the spine) over the maximal internal thoracic diameter (the widest row between
the lung fields' outer borders, at the inner rib margins). Where the heart's outline is not one a heart can have,
the ratio is read from the lungs' inner borders instead (``lung_geometry``), with every guard of that method.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from radsight.core import CardiothoracicRatio, Structure
from radsight.heads.lung_geometry import fill_holes, outline, thoracic_line, thorax_width


@dataclass(frozen=True)
class HeartLimits:
    """A heart's outline on a frontal film: its share of the lungs' bounding box, and where it lies."""

    min_share: float = 0.04
    max_share: float = 0.45
    max_centre_offset: float = 0.25  # its centre's distance from the midline, as a share of the thoracic width


def largest_region(prob: np.ndarray) -> np.ndarray:
    """The largest connected region of ``prob >= 0.5``, its holes filled (empty when there is none)."""
    binary = prob >= 0.5
    regions, count = ndimage.label(binary)
    if count == 0:
        return binary
    sizes = ndimage.sum_labels(binary, regions, np.arange(1, count + 1))
    k = int(np.argmax(sizes)) + 1
    return fill_holes(regions == k, ndimage.find_objects(regions)[k - 1])


def structure(name: str, mask: np.ndarray, height: int, width: int, spacing_mm: tuple[float, float] | None,
              reason: str | None) -> Structure:
    """A structure's outline and area in original pixels; implausible (with ``reason``) when ``reason`` is set."""
    sy, sx = height / mask.shape[0], width / mask.shape[1]
    if not mask.any():
        return Structure(name, [], 0.0, False, reason or f"no {name} found")
    area = float(mask.sum() * sx * sy)
    cm2 = area * spacing_mm[0] * spacing_mm[1] / 100.0 if spacing_mm else None
    return Structure(name, outline(mask, sx, sy), area, reason is None, reason, cm2)


def heart_doubt(heart: np.ndarray, lungs: np.ndarray, limits: HeartLimits = HeartLimits()) -> str | None:
    """Why this heart outline is not one to measure from (None: it is): none found, a size no heart has beside
    these lungs, or a place away from the midline between them."""
    if not heart.any():
        return "no heart outline found"
    rows, cols = np.flatnonzero(lungs.any(axis=1)), np.flatnonzero(lungs.any(axis=0))
    box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
    share = heart.sum() / box
    if not limits.min_share <= share <= limits.max_share:
        return (f"the heart outline covers {share:.0%} of the lungs' box (plausible: "
                f"{limits.min_share:.0%}-{limits.max_share:.0%})")
    centre = np.argwhere(heart)[:, 1].mean()
    middle, span = (cols[0] + cols[-1]) / 2, cols[-1] - cols[0] + 1
    if abs(centre - middle) > limits.max_centre_offset * span:
        return "the heart outline lies away from the middle of the chest"
    return None


def heart_ratio(heart: np.ndarray, labels: np.ndarray, height: int, width: int,
                view: str | None) -> CardiothoracicRatio | None:
    """The CTR from the heart's outline and the lungs' outer borders (both on one grid); None when the lungs share
    fewer than 3 rows."""
    t = thorax_width(labels)
    if t is None:
        return None
    cols = np.arange(labels.shape[1])
    rows = np.flatnonzero(heart.any(axis=1))
    h_right = np.where(heart[rows], cols, labels.shape[1]).min(axis=1)  # the image's left: the patient's right
    h_left = np.where(heart[rows], cols, -1).max(axis=1) + 1
    mrd, mld = max(0.0, float(t.midline - h_right.min())), max(0.0, float(h_left.max() - t.midline))
    r_row, l_row = rows[int(np.argmin(h_right))], rows[int(np.argmax(h_left))]
    sy, sx = height / labels.shape[0], width / labels.shape[1]
    thoracic, cardiac = t.width * sx, (mrd + mld) * sx
    y_c = float(((r_row + l_row) / 2 + 0.5) * sy)
    value = cardiac / thoracic
    return CardiothoracicRatio(
        value=value, cardiac_px=cardiac, thoracic_px=thoracic,
        cardiac_line=((float(t.midline - mrd) * sx, y_c), (float(t.midline + mld) * sx, y_c)),
        thoracic_line=thoracic_line(t, sx, sy), enlarged=(value > 0.5) if (view or "").upper() == "PA" else None,
        method="heart")


def clavicle_doubt(mask: np.ndarray, lungs: np.ndarray, side: str) -> str | None:
    """A clavicle lies across the top of its side's lung field."""
    if not mask.any():
        return f"no {side} clavicle found"
    rows = np.flatnonzero(lungs.any(axis=1))
    centre = np.argwhere(mask).mean(axis=0)
    if centre[0] > rows[0] + 0.5 * (rows[-1] - rows[0]):
        return f"the {side} clavicle outline lies in the lower half of the lungs"
    return None
