import numpy as np
import pytest

from radsight.inputs.preprocess import resize_skimage

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


def _image(h=40, w=60):
    from radsight.core import Radiograph
    pixels = np.linspace(0, 1, h * w, dtype=np.float32).reshape(h, w)
    return Radiograph(pixels=pixels, source="test")


def test_prepare_normalises_per_channel_and_repeats_one_source():
    from radsight.inputs.preprocess import InputSpec, prepare
    image = _image(32, 32)
    x, crop = prepare(image, InputSpec(size=32, mean=(0.5, 0.25, 0.0), std=(0.25, 0.5, 1.0), channels=3))
    assert crop is None and x.shape == (3, 32, 32) and x.dtype == np.float32
    for c, (m, s) in enumerate([(0.5, 0.25), (0.25, 0.5), (0.0, 1.0)]):
        np.testing.assert_allclose(x[c], (image.pixels - m) / s, atol=1e-6)
    raw, _ = prepare(image, InputSpec(size=16), normalised=False)
    assert raw.shape == (1, 16, 16) and 0 <= raw.min() and raw.max() <= 1


def test_prepare_centre_square_and_thorax_box():
    from radsight.inputs.preprocess import InputSpec, prepare
    image = _image(40, 60)
    x, crop = prepare(image, InputSpec(size=40, mean=0.0, std=1.0, crop="center"))
    assert crop == (10, 0, 40, 40)
    np.testing.assert_allclose(x[0], image.pixels[:, 10:50], atol=1e-6)
    x, crop = prepare(image, InputSpec(size=8, mean=0.0, std=1.0, region="thorax"), box=(5, 6, 8, 8))
    assert crop == (5, 6, 8, 8)
    np.testing.assert_allclose(x[0], image.pixels[6:14, 5:13], atol=1e-6)
    assert prepare(image, InputSpec(size=8, region="thorax"), box=None)[1] is None  # lungs not found: whole image


def test_prepare_reads_each_source_on_its_own_channel_and_never_invents_one():
    from radsight.inputs.preprocess import InputSpec, prepare
    image = _image(32, 32)
    spec = InputSpec(size=32, mean=0.0, std=1.0, channels=3, sources=("original", "lung_masked", "bone_suppressed"))
    views = {"lung_masked": np.zeros((32, 32), np.float32), "bone_suppressed": np.full((32, 32), 0.25, np.float32)}
    x, _ = prepare(image, spec, views=views)
    np.testing.assert_allclose(x[0], image.pixels, atol=1e-6)
    assert x[1].max() == 0 and np.allclose(x[2], 0.25)
    with pytest.raises(ValueError, match="bone_suppressed view"):
        prepare(image, spec, views={"lung_masked": views["lung_masked"]})
    with pytest.raises(ValueError, match="sources"):
        InputSpec(size=8, channels=2, sources=("original", "bone"))
