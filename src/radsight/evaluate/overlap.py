"""Reference masks, and overlap and boundary metrics on binary masks (NumPy/SciPy; no torch)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from scipy.spatial.distance import directed_hausdorff

from radsight.heads.lung_geometry import LEFT, RIGHT, label_lungs
from radsight.inputs.preprocess import resize


def read_mask(path: Path, height: int, width: int) -> np.ndarray:
    """A binary mask (any 8-bit PNG, >127 = inside) as float32 {0, 1}, resized to (height, width)."""
    with Image.open(path) as im:
        mask = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    return (resize(mask, height, width) > 0.5).astype(np.float32)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0


def side_dice(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """Dice of the patient's right lung and of the left one (a frontal view: the right lung on the image's left),
    split at the column between ``truth``'s lungs as :func:`radsight.heads.lung_geometry.label_lungs` names them
    (the image's centre when it finds fewer than two)."""
    labels, _ = label_lungs(truth.astype(np.float32))
    columns = [np.nonzero(labels == side)[1] for side in (RIGHT, LEFT)]
    cut = int(round(sum(c.mean() for c in columns) / 2)) if all(c.size for c in columns) else truth.shape[1] // 2
    return dice(predicted[:, :cut], truth[:, :cut]), dice(predicted[:, cut:], truth[:, cut:])


def iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _boundary(mask: np.ndarray) -> np.ndarray:
    mask = mask.astype(bool)
    return np.argwhere(mask & ~ndimage.binary_erosion(mask))


def surface_distances(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(average symmetric surface distance, Hausdorff distance) between two masks' boundaries, in pixels; inf when
    one is empty."""
    from scipy.spatial import cKDTree
    pa, pb = _boundary(a), _boundary(b)
    if not len(pa) or not len(pb):
        return float("inf"), float("inf")
    da, db = cKDTree(pb).query(pa)[0], cKDTree(pa).query(pb)[0]
    return float((da.sum() + db.sum()) / (len(da) + len(db))), float(max(da.max(), db.max()))


def hausdorff(a: np.ndarray, b: np.ndarray) -> float:
    """Symmetric Hausdorff distance between the masks' boundaries, in pixels (inf if one mask is empty)."""
    pa, pb = _boundary(a), _boundary(b)
    if not len(pa) or not len(pb):
        return float("inf")
    return float(max(directed_hausdorff(pa, pb)[0], directed_hausdorff(pb, pa)[0]))
