"""PSNR, SSIM and MS-SSIM: known values, scikit-image's SSIM, and masks."""
import numpy as np
import pytest

from radsight.evaluate.image_quality import ms_ssim, psnr, ssim


def _pair(seed=0, size=200, noise=0.05):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    ref = (0.5 + 0.3 * np.sin(8 * xx) * np.cos(5 * yy)).astype(np.float32)
    return np.clip(ref + rng.normal(0, noise, ref.shape), 0, 1).astype(np.float32), ref


def test_identical_images_score_perfectly_and_noise_lowers_every_score():
    _, ref = _pair()
    assert psnr(ref, ref) == float("inf") and ssim(ref, ref) == pytest.approx(1) and ms_ssim(ref, ref) == pytest.approx(1)
    little, _ = _pair(noise=0.01)
    more, _ = _pair(noise=0.05)
    assert psnr(little, ref) > psnr(more, ref) and ssim(little, ref) > ssim(more, ref)
    assert ms_ssim(little, ref) > ms_ssim(more, ref)


def test_psnr_of_a_constant_offset():
    ref = np.full((32, 32), 0.5, np.float32)
    assert psnr(ref + 0.01, ref) == pytest.approx(40.0, abs=1e-3)


def test_ssim_equals_scikit_image_gaussian_ssim():
    metrics = pytest.importorskip("skimage.metrics", reason="needs scikit-image (radsight[parity])")
    pred, ref = _pair(seed=3)
    expected = metrics.structural_similarity(pred, ref, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                             data_range=1.0)
    assert ssim(pred, ref) == pytest.approx(expected, abs=1e-5)


def test_masked_scores_read_only_inside_the_mask():
    pred, ref = _pair(seed=1, noise=0.0)
    mask = np.zeros(ref.shape, bool)
    mask[50:150, 50:150] = True
    damaged = pred.copy()
    damaged[~mask] = 0  # outside the mask only
    inner = np.zeros(ref.shape, bool)
    inner[55:145, 55:145] = True  # SSIM windows (11 px) centred here lie inside the mask
    assert psnr(damaged, ref, mask) == float("inf") and ssim(damaged, ref, inner) == pytest.approx(1, abs=1e-6)
    assert ssim(damaged, ref) < 0.5
    with pytest.raises(ValueError, match="empty"):
        psnr(pred, ref, np.zeros(ref.shape, bool))
