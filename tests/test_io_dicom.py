import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from radsight.core import InputError
from radsight.io import load_image

from conftest import corpus_file, make_dicom


def test_monochrome1_is_inverted_to_monochrome2(tmp_path, phantom):
    m2 = load_image(make_dicom(tmp_path / "m2.dcm", phantom, photometric="MONOCHROME2"))
    m1 = load_image(make_dicom(tmp_path / "m1.dcm", phantom, photometric="MONOCHROME1"))
    np.testing.assert_allclose(m1.pixels, m2.pixels, atol=1e-6)
    assert m1.meta.photometric == "MONOCHROME1"
    assert m2.pixels.dtype == np.float32 and 0 <= m2.pixels.min() and m2.pixels.max() <= 1


@pytest.mark.parametrize("bits", [8, 10, 12, 14, 16])
def test_bit_depths_map_to_the_same_image(tmp_path, phantom, bits):
    image = load_image(make_dicom(tmp_path / f"b{bits}.dcm", phantom, bits=bits))
    assert image.meta.bits_stored == bits
    expected = (phantom - phantom.min()) / (phantom.max() - phantom.min())  # min-max without a window
    np.testing.assert_allclose(image.pixels, expected, atol=2.5 / 2 ** bits + 1e-6)


def test_window_center_width_is_applied(tmp_path, phantom):
    image = load_image(make_dicom(tmp_path / "w.dcm", phantom, bits=12, window=(1024, 1024)))
    assert image.meta.windowing.startswith("window 1024/1024")
    stored = np.round(phantom * 4095)
    assert np.all(image.pixels[stored <= 511] == 0) and np.all(image.pixels[stored > 1535] == 1)


def test_voi_lut_sequence_takes_precedence(tmp_path, phantom):
    image = load_image(make_dicom(tmp_path / "lut.dcm", phantom, bits=12, voi_lut=True, window=(10, 2)))
    assert image.meta.windowing == "VOI LUT"
    np.testing.assert_allclose(image.pixels, np.round(phantom * 4095) / 4095, atol=1e-3)


def test_rescale_slope_intercept_do_not_change_the_picture(tmp_path, phantom):
    plain = load_image(make_dicom(tmp_path / "a.dcm", phantom))
    rescaled = load_image(make_dicom(tmp_path / "b.dcm", phantom, rescale=(2.0, -1024.0)))
    np.testing.assert_allclose(plain.pixels, rescaled.pixels, atol=1e-6)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless])
def test_lossless_compression_gives_identical_pixels(tmp_path, phantom, syntax):
    plain = load_image(make_dicom(tmp_path / "a.dcm", phantom, bits=12))
    packed = load_image(make_dicom(tmp_path / "b.dcm", phantom, bits=12, transfer_syntax=syntax))
    assert packed.meta.transfer_syntax == syntax.name
    np.testing.assert_array_equal(plain.pixels, packed.pixels)


def test_real_chest_cr_and_its_jpeg2000_copies():
    uncompressed = load_image(corpus_file("RG1_UNCR.dcm"))
    lossless = load_image(corpus_file("RG1_J2KR.dcm"))
    lossy = load_image(corpus_file("RG1_J2KI.dcm"))
    assert (uncompressed.width, uncompressed.height) == (1841, 1955)
    assert uncompressed.meta.photometric == "MONOCHROME1" and uncompressed.meta.bits_stored == 15
    np.testing.assert_array_equal(uncompressed.pixels, lossless.pixels)
    assert np.abs(uncompressed.pixels - lossy.pixels).mean() < 0.01
    # MONOCHROME1 was inverted: the lungs (centre-left and centre-right) are darker than the mediastinum
    p = uncompressed.pixels
    lungs = (p[900:1100, 400:600].mean() + p[900:1100, 1250:1450].mean()) / 2
    assert lungs < p[900:1100, 850:1000].mean()


def test_zero_pixel_spacing_is_unknown(tmp_path, phantom):
    assert load_image(make_dicom(tmp_path / "s.dcm", phantom, spacing=(0.0, 0.0))).meta.pixel_spacing_mm is None
    assert load_image(make_dicom(tmp_path / "t.dcm", phantom, spacing=(0.15, 0.2))).meta.pixel_spacing_mm == (0.15, 0.2)


def test_metadata_carries_no_patient_identifiers(tmp_path, phantom):
    image = load_image(make_dicom(tmp_path / "a.dcm", phantom))
    assert "SECRET-ID-123" not in repr(image.meta) and "Test^Patient" not in repr(image.meta)


@pytest.mark.parametrize("kwargs, reason", [
    ({"modality": "CT"}, "modality CT is not a radiograph"),
    ({"modality": "MR"}, "modality MR is not a radiograph"),
    ({"body_part": "HAND"}, "body part examined is HAND"),
])
def test_non_chest_dicoms_are_refused(tmp_path, phantom, kwargs, reason):
    with pytest.raises(InputError, match=reason):
        load_image(make_dicom(tmp_path / "x.dcm", phantom, **kwargs))


@pytest.mark.parametrize("name, reason", [
    ("MR2_UNCR.dcm", "modality MR"), ("US1_J2KR.dcm", "modality US"), ("SC_rgb.dcm", "modality OT"),
    ("RG3_UNCR.dcm", "body part examined is EXTREMITY"), ("emri_small_jpeg_2k_lossless_too_short.dcm", "End of file"),
])
def test_pydicom_corpus_non_chest_and_broken_files(name, reason):
    with pytest.raises(InputError, match=reason) as info:
        load_image(corpus_file(name))
    assert "\n" not in str(info.value)


def test_a_lateral_is_read_and_refused_by_the_predictor_of_a_frontal_model(tmp_path, phantom, tiny_model):
    from radsight.pipeline.predictor import Predictor
    image = load_image(make_dicom(tmp_path / "l.dcm", phantom, view="LL"))  # the reader takes every view
    with pytest.raises(InputError, match=r"lateral view \(ViewPosition LL\); model tiny-test reads frontal"):
        Predictor(str(tiny_model), lung_model=None).predict(image)


def test_rgb_dicom_without_modality_is_refused_as_colour(tmp_path):
    ds = pydicom.dcmread(corpus_file("SC_rgb.dcm"))
    del ds.Modality
    ds.save_as(tmp_path / "rgb.dcm")
    with pytest.raises(InputError, match="colour image"):
        load_image(tmp_path / "rgb.dcm")


def test_truncated_pixel_data(tmp_path, phantom):
    path = make_dicom(tmp_path / "t.dcm", phantom)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 5000])
    with pytest.raises(InputError, match="t.dcm"):
        load_image(path)


def test_dicom_without_pixels(tmp_path, phantom):
    path = make_dicom(tmp_path / "n.dcm", phantom)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    ds.save_as(path)
    with pytest.raises(InputError, match="no pixel data"):
        load_image(path)


def test_garbage_with_dcm_suffix(tmp_path):
    path = tmp_path / "junk.dcm"
    path.write_bytes(b"this is not dicom at all" * 20)
    with pytest.raises(InputError, match="junk.dcm"):
        load_image(path)
    text = tmp_path / "notes.dcm"
    text.write_text("a text file renamed .dcm\n" * 10)  # one reason, whatever the name (the service's: .part)
    with pytest.raises(InputError, match="not a DICOM, PNG or JPEG file"):
        load_image(text)
    with pytest.raises(InputError, match="not a DICOM, PNG or JPEG file"):
        load_image(text.rename(tmp_path / "notes.part"))


def _as_chest_dx(name, tmp_path):
    """A corpus file relabelled as a chest DX, to run its transfer syntax through the reader."""
    ds = pydicom.dcmread(corpus_file(name))
    ds.Modality, ds.BodyPartExamined = "DX", "CHEST"
    out = tmp_path / name
    ds.save_as(out)
    return out


@pytest.mark.parametrize("name", ["MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm",
                                  "MR_small_bigendian.dcm"])
def test_signed_16bit_across_transfer_syntaxes(tmp_path, name):
    reference = load_image(_as_chest_dx("MR_small.dcm", tmp_path))
    other = load_image(_as_chest_dx(name, tmp_path))
    np.testing.assert_array_equal(reference.pixels, other.pixels)


def test_jpeg_lossless_process14(tmp_path):
    image = load_image(_as_chest_dx("JPGLosslessP14SV1_1s_1f_8b.dcm", tmp_path))
    assert image.meta.transfer_syntax.startswith("JPEG Lossless") and image.pixels.shape == (768, 1024)


def test_jpeg_baseline_is_nearly_the_uncompressed_image(tmp_path, phantom):
    import io

    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    path = make_dicom(tmp_path / "plain.dcm", phantom, bits=8)
    plain = load_image(path)
    ds = pydicom.dcmread(path)
    buffer = io.BytesIO()
    Image.fromarray(ds.pixel_array).save(buffer, format="JPEG", quality=95)
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(tmp_path / "jpeg.dcm")
    jpeg = load_image(tmp_path / "jpeg.dcm")
    assert jpeg.meta.transfer_syntax.startswith("JPEG Baseline")
    assert np.abs(jpeg.pixels - plain.pixels).mean() < 0.02  # the phantom is noisy; JPEG smooths noise


def test_a_deflated_file_reads_as_its_uncompressed_copy(tmp_path, phantom):
    from pydicom.uid import DeflatedExplicitVRLittleEndian
    plain = make_dicom(tmp_path / "plain.dcm", phantom)
    ds = pydicom.dcmread(plain)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(tmp_path / "deflated.dcm", enforce_file_format=True)
    assert np.array_equal(load_image(tmp_path / "deflated.dcm").pixels, load_image(plain).pixels)


def deflate_bomb(path, phantom, pixel_bytes: int = 1 << 30) -> None:
    """A deflated file of a few MB whose dataset inflates to ``pixel_bytes`` of pixel data (Rows and Columns that
    match it lie inside the deflated stream)."""
    import struct
    import zlib

    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset
    from pydicom.uid import DeflatedExplicitVRLittleEndian
    ds = pydicom.dcmread(make_dicom(path.with_suffix(".seed.dcm"), phantom))
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(path, enforce_file_format=True)
    meta = pydicom.filereader.read_file_meta_info(path)
    head = path.read_bytes()[:132 + 12 + int(meta.FileMetaInformationGroupLength)]
    side = int((pixel_bytes // 2) ** 0.5)
    del ds.PixelData
    ds.Rows = ds.Columns = side
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    with open(path, "wb") as fh:
        fh.write(head + deflate.compress(body.getvalue() + struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0,
                                                                       2 * side * side)))
        zeros = bytes(16 << 20)
        for _ in range(2 * side * side // len(zeros)):
            fh.write(deflate.compress(zeros))
        fh.write(deflate.flush())


def test_a_deflate_bomb_is_refused_while_it_inflates(tmp_path, phantom):
    import subprocess
    import sys
    bomb = tmp_path / "bomb.dcm"
    deflate_bomb(bomb, phantom)
    assert bomb.stat().st_size < 3 << 20
    probe = ("import resource, sys\nfrom radsight.io import load_image\nfrom radsight.core import InputError\n"
             "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
             "try:\n    load_image(sys.argv[1])\nexcept InputError as exc:\n    print(exc)\n"
             "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n")
    run = subprocess.run([sys.executable, "-c", probe, str(bomb)], capture_output=True, text=True, timeout=120)
    reason, grown_mb = run.stdout.strip().splitlines()
    assert "inflates past" in reason and int(grown_mb) < 300, run.stdout + run.stderr
