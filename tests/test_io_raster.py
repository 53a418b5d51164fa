import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from radsight.core import InputError
from radsight.io import expand_inputs, load_image
from radsight.io.limits import MAX_PIXELS


def save_png(path, array, mode=None):
    Image.fromarray(array, mode=mode).save(path)
    return path


def test_8bit_png(tmp_path, phantom):
    path = save_png(tmp_path / "a.png", np.round(phantom * 255).astype(np.uint8))
    image = load_image(path)
    assert image.meta.bits_stored == 8 and image.pixels.shape == phantom.shape
    np.testing.assert_allclose(image.pixels, np.round(phantom * 255) / 255, atol=1e-6)


def test_16bit_png_of_an_8bit_film_reads_the_same(tmp_path, phantom):
    gray = np.round(phantom * 255).astype(np.uint8)
    eight = load_image(save_png(tmp_path / "a.png", gray))
    sixteen = load_image(save_png(tmp_path / "b.png", gray.astype(np.uint16) * 257))
    assert sixteen.meta.windowing == "full scale of 16 bits" and eight.meta.windowing == "full scale of 8 bits"
    np.testing.assert_allclose(sixteen.pixels, eight.pixels, atol=1e-6)


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_16bit_png_holding_fewer_bits_reads_at_their_full_scale(tmp_path, phantom, bits):
    top = 2 ** bits - 1
    image = load_image(save_png(tmp_path / "b.png", np.round(phantom * top).astype(np.uint16)))
    assert image.meta.bits_stored == bits
    np.testing.assert_allclose(image.pixels, np.round(phantom * top) / top, atol=1e-6)


def test_gray_stored_as_rgb_is_accepted_and_colour_refused(tmp_path, phantom):
    gray = np.round(phantom * 255).astype(np.uint8)
    rgb = load_image(save_png(tmp_path / "g.jpg", np.stack([gray] * 3, axis=2)))
    assert rgb.pixels.shape == phantom.shape
    colour = np.zeros((*gray.shape, 3), np.uint8)
    colour[..., 0], colour[..., 2] = gray, 255 - gray
    with pytest.raises(InputError, match="colour image"):
        load_image(save_png(tmp_path / "c.png", colour))


@pytest.mark.parametrize("shape", [(1, 1), (20, 300), (300, 20)])
def test_tiny_and_odd_shapes(tmp_path, shape):
    path = save_png(tmp_path / "s.png", np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8))
    with pytest.raises(InputError, match="too small|aspect ratio"):
        load_image(path)


def test_constant_image(tmp_path):
    with pytest.raises(InputError, match="no contrast"):
        load_image(save_png(tmp_path / "k.png", np.full((128, 128), 7, np.uint8)))


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(InputError, match="empty file"):
        load_image(tmp_path / "e.png")


def test_non_image_file(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="not a DICOM, PNG or JPEG"):
        load_image(tmp_path / "notes.txt")


def test_truncated_png(tmp_path, phantom):
    path = save_png(tmp_path / "t.png", np.round(phantom * 255).astype(np.uint8))
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(InputError, match="t.png"):
        load_image(path)


def test_huge_dimensions_refused_before_decoding(tmp_path):
    """A small file whose header claims 20000x20000 pixels is refused without decoding it."""
    side = 20_000
    assert side * side > MAX_PIXELS

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0))
    path = tmp_path / "bomb.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + header + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    with pytest.raises(InputError, match="too large|cannot be read"):
        load_image(path)


def test_folders_expand_recursively_and_skip_hidden(tmp_path, phantom):
    (tmp_path / "sub").mkdir()
    (tmp_path / ".hidden").mkdir()
    for p in (tmp_path / "a.png", tmp_path / "sub" / "b.png", tmp_path / ".hidden" / "c.png"):
        save_png(p, np.round(phantom * 255).astype(np.uint8))
    (tmp_path / "readme.md").write_text("x")
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.png", "b.png"]


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="cannot be read"):
        load_image(tmp_path / "absent.dcm")
