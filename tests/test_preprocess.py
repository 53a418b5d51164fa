import numpy as np
import pytest

from radsight.preprocess import resize_skimage

transform = pytest.importorskip("skimage.transform", reason="needs scikit-image (radsight[parity])")


@pytest.mark.parametrize("shape", [(512, 512), (300, 710), (2048, 1663), (100, 150), (224, 224)])
def test_resize_skimage_equals_torchxrayvisions_skimage_call(shape):
    x = np.random.default_rng(0).normal(0, 1024, shape).astype(np.float32)
    expected = transform.resize(x, (224, 224), mode="constant", preserve_range=True)  # as XRayResizer calls it
    got = resize_skimage(x, 224)
    assert got.dtype == np.float32 and got.shape == (224, 224)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-3)  # float32 rounding on values of ~1e3


def test_resize_skimage_pads_with_the_given_value():
    x = np.random.default_rng(1).random((300, 410)).astype(np.float32)
    expected = transform.resize(x, (224, 224), mode="constant", cval=0.5, preserve_range=True)
    np.testing.assert_allclose(resize_skimage(x, 224, pad=0.5), expected, rtol=0, atol=1e-6)
