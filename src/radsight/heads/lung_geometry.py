"""Lung fields and the cardiothoracic ratio (CTR) from a lung probability map.

The map comes from a lung segmentation model on any grid with the image's aspect. Post-processing
keeps the two largest regions, fills their holes and names them by side (on a frontal film the image's
left is the patient's right). When the result is not two plausible lungs, it says why and gives no CTR.
CTR = (MRD + MLD) / ID: the greatest distances of the right and left heart borders (the lungs' medial
borders below the hila) from the midline (the middle of the widest chest row, a proxy for the spine),
over the greatest width between the lungs' outer borders.
"""
from __future__ import annotations

from dataclasses import dataclass

import contourpy
import numpy as np
from scipy import ndimage

from radsight.core import CardiothoracicRatio, LungField
from radsight.inputs.preprocess import resize

RIGHT, LEFT = 1, 2


@dataclass(frozen=True)
class LungLimits:
    min_share: float = 0.03  # one lung's share of the image
    max_share: float = 0.40
    min_height: float = 0.25  # one lung's height as a share of the image height
    heart_from: float = 0.35  # heart rows lie between these shares of the lungs' joint height
    heart_to: float = 0.80  # (below it the diaphragm, not the heart, bounds the lungs' medial borders). Chosen on
    # train64 (970 NIH films, 66 with Cardiomegaly): the CTR's AUROC for Cardiomegaly is 0.81 there (0.68 at the
    # former 0.88), and its mean, 0.44, that of adult chests


def label_lungs(prob: np.ndarray, limits: LungLimits = LungLimits()) -> tuple[np.ndarray, str | None]:
    """(grid labels: 0 none, 1 right lung, 2 left lung; reason it is implausible, or None)."""
    binary = prob >= 0.5
    regions, count = ndimage.label(binary)
    out = np.zeros(prob.shape, np.uint8)
    if count < 2:
        return out, f"{'no lung field' if count == 0 else 'only one lung field'} found"
    sizes = ndimage.sum_labels(binary, regions, np.arange(1, count + 1))
    two = np.argsort(sizes)[::-1][:2] + 1
    windows = ndimage.find_objects(regions)
    masks = [fill_holes(regions == k, windows[k - 1]) for k in two]
    centres = [float(np.argwhere(m)[:, 1].mean()) for m in masks]
    if centres[0] > centres[1]:  # image-left first: the patient's right lung
        masks, centres = masks[::-1], centres[::-1]
    out[masks[0]], out[masks[1]] = RIGHT, LEFT
    width = prob.shape[1]
    for side, mask in zip(("right", "left"), masks):
        share = mask.mean()
        rows = np.flatnonzero(mask.any(axis=1))
        if not limits.min_share <= share <= limits.max_share:
            return out, (f"{side} lung covers {share:.1%} of the image "
                         f"(plausible: {limits.min_share:.0%}-{limits.max_share:.0%})")
        if (rows[-1] - rows[0] + 1) / prob.shape[0] < limits.min_height:
            return out, f"{side} lung is only {(rows[-1] - rows[0] + 1) / prob.shape[0]:.0%} of the image high"
    if not centres[0] < width / 2 < centres[1]:
        return out, "the two regions do not lie on either side of the midline"
    return out, None


def fill_holes(mask: np.ndarray, window: tuple[slice, slice]) -> np.ndarray:
    """``ndimage.binary_fill_holes(mask)`` for a mask lying inside ``window``: only the window is searched.

    Around the window everything is background, so background touching the window's edge is outside; the
    rest of the window's background is holes.
    """
    background, _ = ndimage.label(~np.pad(mask[window], 1))
    outside = np.unique(np.concatenate([background[0], background[-1], background[:, 0], background[:, -1]]))
    filled = mask.copy()
    filled[window] = ~np.isin(background[1:-1, 1:-1], outside)
    return filled


def lung_fields(labels: np.ndarray, height: int, width: int,
                spacing_mm: tuple[float, float] | None) -> list[LungField]:
    """Outlines and areas of the labelled lungs, in original image pixels (and cm² when spacing is known)."""
    sy, sx = height / labels.shape[0], width / labels.shape[1]
    fields = []
    for side, value in (("right", RIGHT), ("left", LEFT)):
        mask = labels == value
        if not mask.any():
            continue
        area = float(mask.sum() * sx * sy)
        cm2 = area * spacing_mm[0] * spacing_mm[1] / 100.0 if spacing_mm else None
        fields.append(LungField(side=side, polygon=outline(mask, sx, sy), area_px=area, area_cm2=cm2))
    return fields


def outline(mask: np.ndarray, sx: float, sy: float, max_points: int = 200) -> list[tuple[float, float]]:
    """The longest contour of ``mask``, at most about ``max_points`` points, scaled by (``sx``, ``sy``). Traced in
    the mask's bounding box only: the same points, sooner."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    top, left = int(rows[0]), int(cols[0])
    window = mask[top:rows[-1] + 1, left:cols[-1] + 1]
    padded = np.pad(window.astype(np.float64), 1)  # closes contours that touch the border
    lines = contourpy.contour_generator(z=padded).lines(0.5)
    line = max(lines, key=len)
    line = line[:: max(1, len(line) // max_points)]
    return [(round((x + left - 0.5) * sx, 1), round((y + top - 0.5) * sy, 1)) for x, y in line]


@dataclass(frozen=True)
class BorderLimits:
    """When lung fields cannot be trusted to trace the heart borders. Each bar lets through 99.5% of the
    reference masks of lung-masks-public's train split (4,585 two-lung outlines; the 0.5th or 99.5th percentile)."""

    min_area_ratio: float = 0.44  # the smaller lung's area over the larger's
    min_solidity_right: float = 0.78  # a lung's area over its convex hull's: lower means a bite out of the field
    min_solidity_left: float = 0.63  # (the left field's cardiac notch makes it less convex)
    max_base_step: float = 0.33  # the difference of the lungs' lowest rows, as a share of their joint height


def border_shapes(labels: np.ndarray) -> dict[str, float]:
    """The measurements :class:`BorderLimits` bounds, for two labelled lungs. (A bite out of a field beside the
    heart is not one of them: an enlarged heart makes the same bite.)"""
    right, left = labels == RIGHT, labels == LEFT
    areas = [float(right.sum()), float(left.sum())]
    rows = [np.flatnonzero(m.any(axis=1)) for m in (right, left)]
    span = max(r[-1] for r in rows) - min(r[0] for r in rows) + 1
    out = {"area_ratio": min(areas) / max(areas), "base_step": abs(int(rows[0][-1]) - int(rows[1][-1])) / span}
    for side, mask in (("right", right), ("left", left)):
        out[f"solidity_{side}"] = float(mask.sum() / max(1, convex_hull(mask).sum()))
    return out


def convex_hull(mask: np.ndarray) -> np.ndarray:
    """The filled convex hull of a mask's pixels."""
    from PIL import Image, ImageDraw
    from scipy.spatial import ConvexHull, QhullError
    points = row_ends(mask)
    try:
        vertices = points[ConvexHull(points).vertices]
    except (QhullError, ValueError):
        return mask.copy()
    canvas = Image.new("1", (mask.shape[1], mask.shape[0]), 0)
    ImageDraw.Draw(canvas).polygon([(int(c), int(r)) for r, c in vertices], fill=1, outline=1)
    return np.asarray(canvas, bool) | mask


def row_ends(mask: np.ndarray) -> np.ndarray:
    """(row, column) of each row's first and last pixel: every other pixel lies between two of them, so they span
    the same convex hull as all of the mask's pixels, a few hundred points instead of tens of thousands."""
    rows = np.flatnonzero(mask.any(axis=1))
    first = mask[rows].argmax(axis=1)
    last = mask.shape[1] - 1 - mask[rows, ::-1].argmax(axis=1)
    return np.concatenate([np.stack([rows, first], axis=1), np.stack([rows, last], axis=1)])


def border_doubt(labels: np.ndarray, limits: BorderLimits = BorderLimits()) -> str | None:
    """Why the heart borders cannot be read off these lung fields, or None when they can: a lung much smaller
    than the other, a field with a bite out of it, or one base far above the other (an opacity next to the heart
    or the diaphragm that the mask left out)."""
    shape = border_shapes(labels)
    if shape["area_ratio"] < limits.min_area_ratio:
        return (f"one lung field is {shape['area_ratio']:.0%} the size of the other (below "
                f"{limits.min_area_ratio:.0%}): part of a lung, or an opacity, is probably left out")
    for side in ("right", "left"):
        bar = getattr(limits, f"min_solidity_{side}")
        if shape[f"solidity_{side}"] < bar:
            return (f"the {side} lung field is not the convex shape of a lung (solidity "
                    f"{shape[f'solidity_{side}']:.2f} < {bar:.2f}): an opacity may be left out")
    if shape["base_step"] > limits.max_base_step:
        return (f"one lung base ends {shape['base_step']:.0%} of the lungs' height above the other (more than "
                f"{limits.max_base_step:.0%}): an opacity next to the heart may be left out")
    return None


ADULT_AGE = 16  # below it (a stated PatientAge) the 0.5 bar does not apply: a young child's normal CTR reaches 0.6


def grade(ratio: CardiothoracicRatio, view: str | None, age_years: float | None = None) -> CardiothoracicRatio:
    """``enlarged`` (CTR > 0.5) on an adult's PA film; otherwise None, and ``not_graded`` says why."""
    if ratio.value is None:
        return ratio
    if (view or "").upper() != "PA":
        ratio.enlarged, ratio.not_graded = None, "view unknown" if not view else f"view {view}, not PA"
    elif age_years is not None and age_years < ADULT_AGE:
        ratio.enlarged, ratio.not_graded = None, f"a child's film (stated age under {ADULT_AGE})"
    else:
        ratio.enlarged, ratio.not_graded = ratio.value > 0.5, None
    return ratio


def opacity_doubt(pixels: np.ndarray, labels: np.ndarray, margin: float = 0.1) -> str | None:
    """Why no heart border can be seen (None: it can): a lung field as dense as the mediastinum beside it, as a
    whited-out hemithorax (effusion, collapse, pneumonectomy) is. ``pixels``: the film on the labels' grid."""
    middle = heart_region(labels, dilate=0.0) & ~(labels > 0)
    if not middle.any():
        return None
    mediastinum = float(np.median(pixels[middle]))
    for side, value in (("right", RIGHT), ("left", LEFT)):
        inside = labels == value
        if inside.any() and float(np.median(pixels[inside])) >= mediastinum - margin:
            return (f"the {side} lung field is as dense as the mediastinum (a whited-out hemithorax): the heart "
                    f"border beside it cannot be seen")
    return None


@dataclass(frozen=True)
class Thorax:
    """The chest's widest row between the lung fields' outer borders, on the labels' grid."""

    rows: np.ndarray  # the rows both lungs share
    r_outer: np.ndarray  # each row's right lung's outer (image-left) border
    l_outer: np.ndarray  # each row's left lung's outer (image-right) border
    row: int  # the widest row
    width: float  # its width, in grid pixels
    midline: float  # its middle: a proxy for the spine


def thorax_width(labels: np.ndarray) -> Thorax | None:
    """The maximal internal thoracic diameter of two labelled lungs; None when they share fewer than 3 rows."""
    right, left = labels == RIGHT, labels == LEFT
    both = np.flatnonzero(right.any(axis=1) & left.any(axis=1))
    if len(both) < 3:
        return None
    cols = np.arange(labels.shape[1])
    r_outer = np.where(right, cols, labels.shape[1]).min(axis=1)
    l_outer = np.where(left, cols, -1).max(axis=1)
    widths = l_outer[both] - r_outer[both] + 1
    row = int(both[int(np.argmax(widths))])
    return Thorax(both, r_outer, l_outer, row, float(widths.max()), (r_outer[row] + l_outer[row] + 1) / 2)


def thoracic_line(t: Thorax, sx: float, sy: float) -> tuple[tuple[float, float], tuple[float, float]]:
    y = float((t.row + 0.5) * sy)
    return (float(t.r_outer[t.row]) * sx, y), (float(t.l_outer[t.row] + 1) * sx, y)


def cardiothoracic_ratio(labels: np.ndarray, height: int, width: int, view: str | None,
                         limits: LungLimits = LungLimits()) -> CardiothoracicRatio | None:
    """The CTR of two plausible lung fields; withheld, with the reason, when they cannot be trusted to trace the
    heart borders (:func:`border_doubt`); None when the lungs share fewer than 3 rows."""
    right, left = labels == RIGHT, labels == LEFT
    t = thorax_width(labels)
    if t is None:
        return None
    doubt = border_doubt(labels)
    if doubt is not None:
        return CardiothoracicRatio(None, None, None, None, None, None, reason=doubt)
    cols = np.arange(labels.shape[1])
    r_inner = np.where(right, cols, -1).max(axis=1)
    l_inner = np.where(left, cols, labels.shape[1]).min(axis=1)
    both, span = t.rows, t.rows[-1] - t.rows[0]
    heart = both[(both >= both[0] + limits.heart_from * span) & (both <= both[0] + limits.heart_to * span)]
    mrd_rows, mld_rows = t.midline - (r_inner[heart] + 1), l_inner[heart] - t.midline
    r_row, l_row = heart[int(np.argmax(mrd_rows))], heart[int(np.argmax(mld_rows))]
    mrd, mld = max(0.0, float(mrd_rows.max())), max(0.0, float(mld_rows.max()))
    sy, sx = height / labels.shape[0], width / labels.shape[1]
    thoracic, cardiac = t.width * sx, (mrd + mld) * sx
    y_c = float(((r_row + l_row) / 2 + 0.5) * sy)
    value = cardiac / thoracic
    return CardiothoracicRatio(
        value=value, cardiac_px=cardiac, thoracic_px=thoracic,
        cardiac_line=((float(t.midline - mrd) * sx, y_c), (float(t.midline + mld) * sx, y_c)),
        thoracic_line=thoracic_line(t, sx, sy), enlarged=(value > 0.5) if (view or "").upper() == "PA" else None)


def thorax_region(labels: np.ndarray, dilate: float = 0.03) -> np.ndarray:
    """Lungs, the mediastinum and heart between them (each row filled between the lungs' outer borders),
    dilated by ``dilate`` of the grid's longest side: where a chest finding's evidence should lie."""
    lungs = labels > 0
    cols = np.arange(labels.shape[1])
    left_edge = np.where(lungs, cols, labels.shape[1]).min(axis=1)
    right_edge = np.where(lungs, cols, -1).max(axis=1)
    region = (cols[None, :] >= left_edge[:, None]) & (cols[None, :] <= right_edge[:, None])
    radius = round(dilate * max(labels.shape))
    return ndimage.binary_dilation(region, iterations=radius) if radius > 0 else region


def nodule_region(labels: np.ndarray, below: float = 0.1) -> np.ndarray:
    """Where lung lies on a frontal film, for a search for nodules: the convex hull of both lung fields (so the
    lung behind the heart, between them, is inside) and, below it, a band of ``below`` of the lungs' height (the
    lung behind the diaphragm's dome, below the fields' visible bases). Empty without lungs."""
    lungs = labels > 0
    if not lungs.any():
        return lungs
    hull = convex_hull(lungs)
    rows = np.flatnonzero(lungs.any(axis=1))
    band = round(below * (rows[-1] - rows[0] + 1))
    shifted = hull.copy()
    for step in range(1, band + 1):
        shifted[step:] |= hull[:-step]
    return shifted


def heart_region(labels: np.ndarray, limits: LungLimits = LungLimits(), dilate: float = 0.03) -> np.ndarray:
    """Between the lungs from the heart's top row (``heart_from`` of their joint height) to their bases, dilated
    by ``dilate`` of the grid's longest side: where the heart and its borders lie on a frontal film."""
    lungs = labels > 0
    rows = np.flatnonzero(lungs.any(axis=1))
    if rows.size == 0:
        return np.zeros(labels.shape, bool)
    gap = thorax_region(labels, dilate=0.0) & ~lungs
    gap[: rows[0] + int(limits.heart_from * (rows[-1] - rows[0]))] = False
    radius = max(1, round(dilate * max(labels.shape)))
    return ndimage.binary_dilation(gap, iterations=radius)


# Where a finding's evidence must lie for a box to be drawn: the heart for Cardiomegaly, else the thorax.
EVIDENCE_REGIONS = {"Cardiomegaly": "heart"}


class EvidenceRegions:
    """Each finding's region on a heatmap grid, from plausible lung labels; each region is made once."""

    def __init__(self, labels: np.ndarray, grid: tuple[int, int]):
        self.labels, self.grid, self._made = labels, grid, {}

    def __call__(self, finding: str) -> np.ndarray:
        name = EVIDENCE_REGIONS.get(finding, "thorax")
        if name not in self._made:
            region = heart_region(self.labels) if name == "heart" else thorax_region(self.labels)
            self._made[name] = on_grid(region, self.grid)
        return self._made[name]


def on_grid(mask: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """A mask resampled to another grid."""
    return resize(mask.astype(np.float32), *grid) > 0.5


def energy_inside(heat: np.ndarray, region: np.ndarray) -> float:
    """Share of a heatmap's total that lies inside ``region`` (same grid)."""
    total = float(heat.sum())
    return float(heat[region].sum()) / total if total > 0 else float("nan")


def thorax_box(labels: np.ndarray, height: int, width: int, margin: float = 0.05) -> tuple[int, int, int, int]:
    """The lungs' bounding box widened by ``margin`` of the image on each side, in original pixels (x, y, w, h)."""
    rows, cols = np.flatnonzero(labels.any(axis=1)), np.flatnonzero(labels.any(axis=0))
    sy, sx = height / labels.shape[0], width / labels.shape[1]
    x0 = max(0, int((cols[0] * sx) - margin * width))
    y0 = max(0, int((rows[0] * sy) - margin * height))
    x1 = min(width, int(np.ceil((cols[-1] + 1) * sx + margin * width)))
    y1 = min(height, int(np.ceil((rows[-1] + 1) * sy + margin * height)))
    return x0, y0, x1 - x0, y1 - y0
