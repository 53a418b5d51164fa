"""Full-reference image quality on images in [0, 1] (NumPy/SciPy, no torch): PSNR, SSIM and MS-SSIM,
over the whole image or inside a mask (e.g. the lung fields).

SSIM follows Wang et al. 2004 (Gaussian window sigma 1.5, 11 taps, K1 0.01, K2 0.03, data range 1), averaged
away from the 5-px border the window does not fit, as scikit-image does; MS-SSIM Wang et al. 2003 (5 scales,
2x2 mean downsampling, their exponents).
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

C1, C2 = 0.01 ** 2, 0.03 ** 2
BORDER = 5  # half the 11-tap window
MS_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _inner(values: np.ndarray) -> np.ndarray:
    return values[BORDER:-BORDER, BORDER:-BORDER] if min(values.shape) > 2 * BORDER else values


def _mean_in(values: np.ndarray, mask: np.ndarray | None) -> float:
    if mask is None:
        return float(values.mean())
    inside = mask.astype(bool)
    if not inside.any():
        raise ValueError("the mask is empty")
    return float(values[inside].mean())


def psnr(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    mse = _mean_in((pred.astype(np.float64) - ref.astype(np.float64)) ** 2, mask)
    return float("inf") if mse == 0 else float(10 * np.log10(1.0 / mse))


def _ssim_maps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The luminance and contrast-structure maps."""
    blur = lambda x: ndimage.gaussian_filter(x, 1.5, truncate=3.5, mode="reflect")  # noqa: E731
    a, b = a.astype(np.float64), b.astype(np.float64)
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    luminance = (2 * mu_a * mu_b + C1) / (mu_a ** 2 + mu_b ** 2 + C1)
    contrast_structure = (2 * cov + C2) / (var_a + var_b + C2)
    return luminance, contrast_structure


def ssim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    luminance, cs = _ssim_maps(pred, ref)
    return _mean_in(_inner(luminance * cs), None if mask is None else _inner(mask))


def _half(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    return x[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))


def ms_ssim(pred: np.ndarray, ref: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Five scales from 176 px a side; smaller images use the scales that fit (each at least 11 px), with the
    exponents rescaled to sum to 1. A mask is averaged down with the image (inside: > 0.5)."""
    levels = min(len(MS_WEIGHTS), int(np.log2(min(pred.shape) / 11)) + 1)
    if levels < 1:
        raise ValueError("MS-SSIM needs images of at least 11 px a side")
    weights = np.asarray(MS_WEIGHTS[:levels]) / sum(MS_WEIGHTS[:levels])
    a, b = pred.astype(np.float64), ref.astype(np.float64)
    m = None if mask is None else mask.astype(np.float64)
    score = 1.0
    for level, weight in enumerate(weights):
        inside = None if m is None else m > 0.5
        luminance, cs = _ssim_maps(a, b)
        last = level == levels - 1
        value = _mean_in(_inner(luminance * cs if last else cs), None if inside is None else _inner(inside))
        score *= max(value, 0.0) ** weight
        a, b = _half(a), _half(b)
        m = None if m is None else _half(m)
    return float(score)
