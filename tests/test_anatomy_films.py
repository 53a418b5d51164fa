"""Bad anatomy input gets a reason, never a wrong number, with the shipped anatomy model on real films (needs
../shared/data; skipped without it): a lateral, a film with one lung whited out, a young child's film and a film
rotated by 90 degrees."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

from radsight.core import Radiograph  # noqa: E402
from radsight.evaluate.overlap import read_mask  # noqa: E402
from radsight.heads.anatomy import LungModel  # noqa: E402
from radsight.io import load_image  # noqa: E402
from radsight.models.store import ANATOMY_MODEL, LUNG_UNET_MODEL  # noqa: E402

from conftest import make_dicom, shared

pytestmark = pytest.mark.shared_data
JSRT_TEST_FILM = "JPCNN017.png"  # a test-split film without a nodule


@pytest.fixture(scope="module", params=[ANATOMY_MODEL, LUNG_UNET_MODEL])
def model(request):
    return LungModel(request.param)


def _no_number_without_reason(anatomy) -> None:
    """Either the anatomy is implausible (with its reason) or the CTR is withheld (with its reason) or absent."""
    if not anatomy.plausible:
        assert anatomy.reason and anatomy.ctr is None
    else:
        assert anatomy.ctr is None or (anatomy.ctr.value is None and anatomy.ctr.reason), anatomy.ctr


def test_an_ordinary_film_gets_its_ctr(model):
    film = load_image(shared("jsrt-scr", "images") / JSRT_TEST_FILM)
    anatomy = model.segment(film).anatomy
    assert anatomy.plausible and anatomy.ctr is not None and 0.3 < anatomy.ctr.value < 0.6


def test_a_lateral_film_gets_a_reason(model):
    lateral = load_image(shared("multiview", "images") / "nejmoa2001191_f1-L.png")
    _no_number_without_reason(model.segment(lateral).anatomy)


def test_a_film_rotated_by_90_degrees_gets_a_reason(model):
    film = load_image(shared("jsrt-scr", "images") / JSRT_TEST_FILM)
    rotated = Radiograph(np.ascontiguousarray(np.rot90(film.pixels)), "rotated", film.meta)
    _no_number_without_reason(model.segment(rotated).anatomy)


def test_a_whited_out_hemithorax_gets_a_reason(model):
    root = shared("jsrt-scr")
    film = load_image(root / "images" / JSRT_TEST_FILM)
    left = read_mask(root / "masks" / "left_lung" / JSRT_TEST_FILM, film.height, film.width) > 0.5
    from scipy import ndimage
    soft = np.clip(ndimage.gaussian_filter(left.astype(np.float32), 12) * 1.5, 0, 1)  # no sharp border
    pixels = (film.pixels + (0.85 - film.pixels) * soft * (film.pixels < 0.85)).astype(np.float32)
    _no_number_without_reason(model.segment(Radiograph(pixels, "whited-out", film.meta)).anatomy)


def test_a_young_childs_pa_film_is_not_graded(model, tmp_path):
    child = load_image(shared("lung-masks-public", "images") / "crd_viral_pneumonia_00103.jpg")
    path = make_dicom(tmp_path / "child.dcm", child.pixels, view="PA")
    ds = pydicom.dcmread(path)
    ds.PatientAge = "002Y"
    ds.save_as(path)
    anatomy = model.segment(load_image(path)).anatomy
    if anatomy.plausible and anatomy.ctr is not None and anatomy.ctr.value is not None:
        assert anatomy.ctr.enlarged is None and "child" in anatomy.ctr.not_graded
    else:
        _no_number_without_reason(anatomy)
