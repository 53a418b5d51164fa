"""radsight's PNG encoder: what Pillow (and so any reader) decodes is exactly what was encoded."""
import io

import numpy as np
import pytest
from PIL import Image

from radsight.io.png import encode_png


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (9, 1), (37, 53), (64, 48, 3), (5, 6, 4), (3, 3, 1)])
def test_what_pillow_reads_back_is_what_was_encoded(shape):
    pixels = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(encode_png(pixels))))
    assert np.array_equal(decoded, pixels.reshape(decoded.shape))


def test_a_radiograph_compresses_as_well_as_pillows_own_encoder():
    y, x = np.mgrid[0:256, 0:256]
    noise = np.random.default_rng(0).normal(0, 4, (256, 256))
    pixels = np.clip(128 + 60 * np.sin(x / 40) * np.cos(y / 30) + noise, 0, 255).astype(np.uint8)
    pillow = io.BytesIO()
    Image.fromarray(pixels).save(pillow, format="PNG", compress_level=1)
    assert len(encode_png(pixels)) <= 1.1 * len(pillow.getvalue())


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8), np.zeros((0, 4), np.uint8),
                                 np.zeros(4, np.uint8)])
def test_what_is_not_an_8_bit_image_is_refused(bad):
    with pytest.raises(ValueError):
        encode_png(bad)
