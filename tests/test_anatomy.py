import numpy as np
import pytest
from scipy import ndimage

from radsight.evaluate.overlap import dice, hausdorff, iou, side_dice
from radsight.explain.boxes import heatmap_boxes
from radsight.heads.lung_geometry import (
    EvidenceRegions,
    cardiothoracic_ratio,
    energy_inside,
    fill_holes,
    heart_region,
    label_lungs,
    lung_fields,
    outline,
    thorax_region,
)


def two_lungs(heart_right: int = 10, heart_left: int = 20) -> np.ndarray:
    """200x200 map: lungs in columns 20-79 and 120-179, rows 40-169; below row 100 the heart cuts
    ``heart_right`` columns from the right lung's medial side and ``heart_left`` from the left's."""
    prob = np.zeros((200, 200))
    prob[40:170, 20:80] = prob[40:170, 120:180] = 1
    prob[100:170, 80 - heart_right:80] = 0
    prob[100:170, 120:120 + heart_left] = 0
    return prob


def test_ctr_of_a_known_geometry():
    labels, reason = label_lungs(two_lungs())
    assert reason is None
    ctr = cardiothoracic_ratio(labels, 400, 400, "PA")
    # thoracic: columns 20..179 = 160 grid px; midline 100; heart from column 70 to 139: 30 + 40 = 70
    assert ctr.thoracic_px == 320 and ctr.cardiac_px == 140
    assert ctr.value == pytest.approx(140 / 320) and ctr.enlarged is False
    assert ctr.thoracic_line == ((40.0, 81.0), (360.0, 81.0))


def test_enlarged_heart_is_flagged_only_on_pa():
    labels, _ = label_lungs(two_lungs(heart_right=25, heart_left=40))
    assert cardiothoracic_ratio(labels, 200, 200, "PA").enlarged is True
    assert cardiothoracic_ratio(labels, 200, 200, "AP").enlarged is None
    assert cardiothoracic_ratio(labels, 200, 200, None).enlarged is None


def test_sides_areas_and_outlines():
    labels, _ = label_lungs(two_lungs())
    assert (labels[50, 30], labels[50, 150]) == (1, 2)  # image left = patient's right
    right, left = lung_fields(labels, 400, 400, (0.5, 0.5))
    assert (right.side, left.side) == ("right", "left")
    assert right.area_px == pytest.approx(4 * (130 * 60 - 70 * 10))
    assert right.area_cm2 == pytest.approx(right.area_px * 0.25 / 100)
    xs = [x for x, _ in right.polygon]
    assert min(xs) == pytest.approx(40, abs=2) and max(xs) == pytest.approx(160, abs=2)
    assert lung_fields(labels, 400, 400, None)[0].area_cm2 is None


@pytest.mark.parametrize("edit, reason", [
    (lambda p: p.__setitem__((slice(None), slice(100, None)), 0), "only one lung field"),
    (lambda p: p.__setitem__((slice(None), slice(None)), 0), "no lung field"),
    (lambda p: p.__setitem__((slice(40, 170), slice(120, 180)), 0) or p.__setitem__((slice(40, 44), slice(120, 180)), 1),
     "left lung"),
])
def test_implausible_segmentations_give_a_reason_not_a_number(edit, reason):
    prob = two_lungs()
    edit(prob)
    labels, why = label_lungs(prob)
    assert why is not None and reason in why


def test_two_regions_on_one_side_are_implausible():
    prob = np.zeros((200, 200))
    prob[20:90, 10:90] = prob[110:190, 10:90] = 1
    assert "midline" in label_lungs(prob)[1]


def test_holes_are_filled():
    prob = two_lungs()
    prob[60:70, 40:50] = 0
    labels, _ = label_lungs(prob)
    assert labels[65, 45] == 1


def test_thorax_region_and_energy():
    labels, _ = label_lungs(two_lungs())
    region = thorax_region(labels, dilate=0.0)
    assert region[120, 100] and not region[10, 100] and not region[120, 5]
    heat = np.zeros((200, 200))
    heat[120, 100] = heat[5, 5] = 1
    assert energy_inside(heat, region) == 0.5


def test_ctr_is_withheld_with_a_reason_when_the_fields_cannot_trace_the_heart():
    prob = two_lungs()
    prob[120:170, 120:180] = 0  # the left base left out (an opacity the mask missed)
    labels, reason = label_lungs(prob)
    assert reason is None
    ctr = cardiothoracic_ratio(labels, 400, 400, "PA")
    assert ctr.value is None and ctr.enlarged is None and "base ends" in ctr.reason
    small = two_lungs()
    small[40:170, 120:160] = 0  # the left field a third of the right's
    ctr = cardiothoracic_ratio(label_lungs(small)[0], 400, 400, "PA")
    assert ctr.value is None and "size of the other" in ctr.reason


def test_heart_region_lies_between_the_lungs_below_the_hila():
    labels, _ = label_lungs(two_lungs())
    heart = heart_region(labels, dilate=0.0)
    assert heart[150, 100] and not heart[50, 100]  # the heart's rows start 35% down the lungs
    assert not heart[150, 30] and not heart[150, 150] and not heart[10, 100]


def test_heat_outside_the_region_makes_no_box():
    labels, _ = label_lungs(two_lungs())
    regions = EvidenceRegions(labels, (100, 100))
    heat = np.zeros((100, 100), np.float32)
    heat[2:10, 85:98] = 1.0  # a corner marker
    heat[40:60, 20:35] = 0.8  # inside the right lung
    inside = heatmap_boxes(heat, 400, 400, 0.5, region=regions("Effusion"))
    assert len(inside) == 1 and inside[0].x >= 40 and inside[0].y >= 80
    assert len(heatmap_boxes(heat, 400, 400, 0.5)) == 2  # without a region the marker makes a box
    assert heatmap_boxes(heat, 400, 400, 0.5, region=regions("Cardiomegaly")) == []  # not at the heart
    assert regions("Effusion") is regions("Mass")  # made once


def test_overlap_metrics():
    a = np.zeros((20, 20), bool)
    b = np.zeros((20, 20), bool)
    a[0:10, 0:10] = True
    b[0:10, 5:15] = True
    assert dice(a, b) == pytest.approx(0.5) and iou(a, b) == pytest.approx(50 / 150)
    assert hausdorff(a, b) == pytest.approx(5.0)
    assert dice(a, a) == 1 and hausdorff(a, np.zeros_like(a)) == float("inf")


def test_outline_closes_on_the_border():
    mask = np.zeros((10, 10), bool)
    mask[0:5, 0:5] = True
    points = outline(mask, 1.0, 1.0)
    assert min(x for x, _ in points) == pytest.approx(-0.5, abs=0.6)


@pytest.mark.parametrize("kind", ["gradient", "checkerboard"])
def test_shipped_lung_model_calls_non_chest_images_implausible(kind):
    from radsight.core import Radiograph
    from radsight.heads.anatomy import LungModel
    yy, xx = np.mgrid[0:300, 0:300] / 300.0
    pixels = xx * 0.8 + 0.1 if kind == "gradient" else ((np.floor(yy * 6) + np.floor(xx * 6)) % 2) * 0.8 + 0.1
    anatomy = LungModel().segment(Radiograph(pixels=pixels.astype(np.float32), source=kind)).anatomy
    assert not anatomy.plausible and anatomy.reason and anatomy.ctr is None and anatomy.lungs == []


def test_fill_holes_in_a_window_equals_scipy():
    rng = np.random.default_rng(3)
    for trial in range(40):
        mask = ndimage.gaussian_filter(rng.random((60, 75)), 2) > 0.5 if trial % 2 else rng.random((50, 50)) > 0.4
        labels, count = ndimage.label(mask)
        if count == 0:
            continue
        largest = 1 + int(np.argmax(np.bincount(labels.ravel())[1:]))
        region = labels == largest
        filled = fill_holes(region, ndimage.find_objects(labels)[largest - 1])
        assert (filled == ndimage.binary_fill_holes(region)).all()


def test_side_dice_tells_which_lung_differs():
    truth = np.zeros((100, 120), bool)
    truth[20:80, 10:50] = truth[20:80, 75:110] = True  # the patient's right lung on the image's left
    predicted = truth.copy()
    predicted[60:80, 75:110] = False  # the reference draws the left base lower (behind the heart)
    right, left = side_dice(predicted, truth)
    assert right == 1.0 and left == pytest.approx(2 * 40 * 35 / (60 * 35 + 40 * 35))
    assert side_dice(predicted, np.zeros_like(truth))[0] == 0.0  # no reference regions: split at the centre


def test_a_film_with_no_lung_found_has_no_boundary_distance_and_is_counted_apart():
    from radsight.evaluate.lungs import _summary
    film = {"dice": 0.95, "dice_right": 0.95, "dice_left": 0.95, "iou": 0.9, "plausible": True}
    summary = _summary([{**film, "hausdorff_px": 10.0}, {**film, "hausdorff_px": 20.0},
                        {**film, "dice": 0.0, "hausdorff_px": None, "plausible": False}])
    assert summary["hausdorff_px"] == 15.0 and summary["hausdorff_undefined"] == 1
