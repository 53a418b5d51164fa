"""The anatomy head with a multi-structure model: heart and clavicles in the JSON, the CTR read from the heart, the
overlay, and five segments in the DICOM SEG; the lung-border CTR where the heart's outline is implausible."""
from __future__ import annotations

import numpy as np
import pydicom
import pytest

onnx = pytest.importorskip("onnx", reason="the fixed anatomy model is written with onnx (radsight[train])")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from radsight.heads.anatomy import STRUCTURES, LungModel  # noqa: E402
from radsight.inputs.preprocess import InputSpec  # noqa: E402
from radsight.models.config import SEGMENTATION, ModelConfig  # noqa: E402
from radsight.models.store import sha256_file  # noqa: E402

from conftest import chest_phantom, make_dicom

SIZE = 64


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = (np.mgrid[:SIZE, :SIZE] + 0.5) / SIZE
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def fixed_planes(heart=(0.55, 0.65, 0.12, 0.12)) -> np.ndarray:
    """The phantom's anatomy: the lungs of chest_phantom, a heart and two clavicles, (5, SIZE, SIZE) bool."""
    heart_mask = _ellipse(*heart)
    return np.stack([_ellipse(0.3, 0.5, 0.17, 0.33) & ~heart_mask, _ellipse(0.7, 0.5, 0.17, 0.33) & ~heart_mask,
                     heart_mask, _ellipse(0.3, 0.2, 0.15, 0.03), _ellipse(0.7, 0.2, 0.15, 0.03)])


def fixed_anatomy_model(folder, heart=(0.55, 0.65, 0.12, 0.12)):
    """An ONNX "model" whose output is the phantom's anatomy whatever the input, as logits of +-8."""
    logits = (fixed_planes(heart)[None].astype(np.float32) * 16 - 8)
    graph = helper.make_graph(
        [helper.make_node("Mul", ["image", "zero"], ["nothing"]), helper.make_node("Add", ["nothing", "maps"],
                                                                                  ["mask_logits"])],
        "fixed-anatomy", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, SIZE, SIZE])],
        [helper.make_tensor_value_info("mask_logits", TensorProto.FLOAT, ["batch", 5, SIZE, SIZE])],
        [numpy_helper.from_array(np.zeros((1, 1, 1, 1), np.float32), "zero"), numpy_helper.from_array(logits, "maps")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / "model.onnx")
    ModelConfig(name="fixed-anatomy", version="0", architecture="unet", labels=list(STRUCTURES),
                input=InputSpec(size=SIZE, mean=0.5, std=0.25, channels=1), task=SEGMENTATION,
                outputs=["mask_logits"], sha256=sha256_file(folder / "model.onnx"), license="test").save(folder)
    return folder


@pytest.fixture()
def anatomy_model(tmp_path):
    return fixed_anatomy_model(tmp_path / "anatomy")


def test_heart_and_clavicles_are_outlined_and_the_ctr_comes_from_the_heart(anatomy_model, tmp_path):
    from radsight.io import load_image
    image = load_image(make_dicom(tmp_path / "pa.dcm", chest_phantom(640, 576), spacing=(0.2, 0.25)))
    found = LungModel(str(anatomy_model)).segment(image)
    a = found.anatomy
    assert a.plausible and a.heart.plausible and [c.name for c in a.clavicles] == ["right clavicle", "left clavicle"]
    assert all(c.plausible for c in a.clavicles) and a.heart.area_cm2 is not None
    ctr = a.ctr
    assert ctr.method == "heart" and ctr.enlarged is not None
    # heart 0.24 of the width (0.43-0.67), thorax from the right lung's outer border (0.13) to the left's (0.87)
    assert ctr.value == pytest.approx(0.24 / 0.74, abs=0.03)
    assert ctr.cardiac_mm == pytest.approx(ctr.cardiac_px * 0.25) and ctr.thoracic_mm > ctr.cardiac_mm
    assert {k: len(v) for k, v in a.landmarks.items()} == {"right lung": 44, "left lung": 50, "heart": 26,
                                                          "right clavicle": 23, "left clavicle": 23}
    top = min(range(44), key=lambda i: a.landmarks["right lung"][i][1])
    assert top == 0  # the SCR order: the right lung's landmarks start at its apex


def test_an_implausible_heart_falls_back_to_the_lung_borders(tmp_path):
    from radsight.io import load_image
    model = fixed_anatomy_model(tmp_path / "offset", heart=(0.2, 0.85, 0.05, 0.05))  # a small blob in a corner
    found = LungModel(str(model)).segment(load_image(make_dicom(tmp_path / "pa.dcm", chest_phantom())))
    assert found.anatomy.plausible and not found.anatomy.heart.plausible and found.anatomy.heart.reason
    assert found.anatomy.ctr.method == "lung_borders"


def test_json_overlay_seg_and_sr_carry_the_structures(anatomy_model, tiny_model, tmp_path):
    pytest.importorskip("highdicom", reason="DICOM results need radsight[serve]")
    import json

    from radsight.batch.run import analyze_files
    from radsight.pipeline.options import PredictorOptions
    source = make_dicom(tmp_path / "pa.dcm", chest_phantom(640, 576))
    options = PredictorOptions(model=str(tiny_model), lung_model=str(anatomy_model), bone_model=None,
                               allow_ood=True, dicom_out=True)
    outcomes = list(analyze_files([source], tmp_path / "out", options.predictor(), options=options))
    assert all(o.error is None for o in outcomes)
    doc = json.loads((tmp_path / "out" / "pa.json").read_text())
    assert doc["anatomy"]["heart"]["plausible"] and len(doc["anatomy"]["clavicles"]) == 2
    assert doc["anatomy"]["ctr"]["method"] == "heart" and doc["anatomy"]["ctr"]["cardiac_mm"] > 0
    seg = pydicom.dcmread(tmp_path / "out" / "pa.seg.dcm")
    segments = [(s.SegmentLabel, s.SegmentedPropertyTypeCodeSequence[0].CodeValue,
                 s.get("SegmentedPropertyTypeModifierCodeSequence", [None])[0]) for s in seg.SegmentSequence]
    assert [(label, code) for label, code, _ in segments] == [
        ("right lung", "3341006"), ("left lung", "44029006"), ("heart", "80891009"),
        ("right clavicle", "51299004"), ("left clavicle", "51299004")]
    assert [m.CodeValue for _, _, m in segments[3:]] == ["24028007", "7771000"]
    import highdicom as hd
    sr = hd.sr.srread(tmp_path / "out" / "pa.sr.dcm")
    names = [m.name.meaning for g in sr.content.get_image_measurement_groups() for m in g.get_measurements()]
    assert {"Cardiothoracic ratio", "Maximal transverse cardiac diameter", "Maximal internal thoracic diameter"} <= set(names)


def test_evaluate_anatomy_writes_per_structure_metrics_ctr_and_landmarks(anatomy_model, tmp_path):
    """The fixed model against its own anatomy as the reference: Dice near 1, the CTR near the reference's."""
    import csv
    import json

    from PIL import Image
    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.heads.landmarks import trace
    from radsight.heads.lung_geometry import outline
    size = 256
    (tmp_path / "images").mkdir()
    big = {}
    for k, name in enumerate(STRUCTURES):
        plane = np.asarray(Image.fromarray(np.uint8(fixed_planes()[k] * 255)).resize((size, size), Image.NEAREST))
        big[name] = plane > 127
    rows, points = [["image", "split"]], [["image", "structure", "index", "x", "y"]]
    for i in range(3):
        name = f"{i}.png"
        Image.fromarray(np.uint8(chest_phantom(size, size, seed=i) * 255)).save(tmp_path / "images" / name)
        for s, mask in big.items():
            (tmp_path / "masks" / s).mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.uint8(mask * 255)).save(tmp_path / "masks" / s / name)
            for j, (x, y) in enumerate(trace(outline(mask, 1.0, 1.0), s)):
                points.append([name, s.replace("_", " "), j, x, y])
        rows.append([name, "test"])
    for file, table in (("manifest.csv", rows), ("landmarks.csv", points)):
        with open(tmp_path / file, "w", newline="") as fh:
            csv.writer(fh).writerows(table)
    result = CliRunner().invoke(app, [
        "evaluate", "--task", "anatomy", "--masks", str(tmp_path / "masks"), "--manifest", str(tmp_path / "manifest.csv"),
        "--images", str(tmp_path / "images"), "--lung-model", str(anatomy_model), "--landmarks",
        str(tmp_path / "landmarks.csv"), "--pixel-spacing-mm", "1.4", "--bootstrap", "50", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    mean = m["segmentation"]["mean"]
    assert mean["heart"]["dice"] > 0.95 and mean["lungs"]["dice"] > 0.95 and mean["left_clavicle"]["dice"] > 0.8
    assert mean["heart"]["assd_mm"] < 3 and len(mean["heart"]["dice_ci"]) == 2
    assert m["ctr"]["heart"]["mae"] < 0.02 and m["ctr"]["heart"]["measured"] == 3
    assert m["landmarks"]["mean"]["point_to_outline_mm"] < 3 and "point_to_point_mm" in m["landmarks"]["mean"]


@pytest.mark.parametrize("value, years", [("045Y", 45.0), ("018M", 1.5), ("003W", 21 / 365.25), ("002D", 2 / 365.25),
                                          ("", None), (None, None)])
def test_patient_age_strings_are_read(value, years):
    from radsight.io.dicom import age_in_years
    assert age_in_years(value) == (pytest.approx(years) if years is not None else None)


def test_a_malformed_age_is_ignored_with_a_warning_that_quotes_nothing(caplog):
    from radsight.io.dicom import age_in_years
    with caplog.at_level("WARNING"):
        assert age_in_years("45 years") is None
    assert "ignored" in caplog.text and "45" not in caplog.text


def test_a_childs_ctr_is_given_but_not_graded_and_the_age_is_not_written(anatomy_model, tmp_path):
    from radsight.io import load_image
    path = make_dicom(tmp_path / "child.dcm", chest_phantom(640, 576))
    ds = pydicom.dcmread(path)
    ds.PatientAge = "001Y"
    ds.save_as(path)
    image = load_image(path)
    assert image.meta.stated_age_years == 1.0
    ctr = LungModel(str(anatomy_model)).segment(image).anatomy.ctr
    assert ctr.value is not None and ctr.enlarged is None and "child" in ctr.not_graded
    from radsight.core import ModelRef, Prediction, Triage
    doc = Prediction(source="x", width=1, height=1, model=ModelRef("m", "1"),
                     triage=Triage(0.5, 0.5, "routine"), findings=[], meta=image.meta).to_dict()
    assert "stated_age_years" not in doc["image"]


def test_fitted_landmark_positions_are_recovered_and_traced_at():
    from radsight.heads.landmarks import fit_positions, oriented, trace
    angles = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = [(100 + 50 * np.cos(a), 100 + 50 * np.sin(a)) for a in angles]
    shares = np.sort(np.random.default_rng(0).uniform(0, 1, 26))
    ordered = oriented(circle, "heart")
    closed = np.vstack([ordered, ordered[:1]])
    lengths = np.concatenate([[0], np.cumsum(np.hypot(*np.diff(closed, axis=0).T))])
    points = np.stack([np.interp(shares * lengths[-1], lengths, closed[:, 0]),
                       np.interp(shares * lengths[-1], lengths, closed[:, 1])], axis=1)
    fitted = fit_positions([({"heart": circle}, {"heart": points})] * 3)["heart"]
    assert np.abs(np.asarray(fitted) - shares).max() < 0.01
    traced = np.asarray(trace(circle, "heart", shares=fitted))
    assert np.hypot(*(traced - points).T).max() < 2.0


def _oval(a: float, b: float, angles: np.ndarray, centre=(120.0, 110.0)) -> np.ndarray:
    return np.stack([centre[0] + a * np.cos(angles), centre[1] + b * np.sin(angles)], axis=1)


def test_a_shape_model_moves_traced_points_along_the_outline_to_where_the_training_shapes_put_them():
    from radsight.heads.landmarks import Placement, densify
    from radsight.heads.shape_model import ShapeModel, Similarity
    rng = np.random.default_rng(0)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 26))  # each numbered point's place on the shape, unevenly spread
    shapes = []
    for _ in range(40):  # taller and wider, moved, scaled, turned a little
        pose = Similarity(rng.uniform(0.8, 1.2), _rotation(rng.uniform(-0.1, 0.1)), rng.uniform(-20, 20, 2))
        shapes.append(pose(_oval(rng.uniform(40, 60), rng.uniform(60, 90), angles)))
    model = ShapeModel.build(np.stack(shapes), 0.95)
    assert model.modes.shape[1] <= 4 and np.allclose(model.modes.T @ model.modes, np.eye(model.modes.shape[1]))
    again = ShapeModel.from_json(model.to_json())
    assert np.allclose(again.mean, model.mean, atol=1e-4) and np.allclose(again.variances, model.variances, atol=1e-5)

    truth = _oval(55, 70, angles)
    outline = densify(_oval(55, 70, np.linspace(0, 2 * np.pi, 720, endpoint=False)), 0.5)
    start = _oval(55, 70, np.linspace(0, 2 * np.pi, 26, endpoint=False))  # equal angles: each point off its place
    fitted = model.fit(start, outline)
    assert np.hypot(*(fitted - truth).T).mean() < 0.25 * np.hypot(*(start - truth).T).mean()
    assert np.min(np.hypot(*(fitted[:, None] - outline[None]).transpose(2, 0, 1)), axis=1).max() < 0.5  # on it
    from radsight.heads.landmarks import trace
    placed = np.asarray(Placement(shapes={"heart": model}).place(outline[::4], "heart"))  # traced, then fitted
    traced = np.asarray(trace(outline[::4], "heart"))
    assert np.allclose(placed, model.fit(traced, densify(outline[::4], 0.5)), atol=0.05)
    assert not np.allclose(placed, traced, atol=1.0)
    stuck = np.full((26, 2), 50.0)  # a degenerate outline's points, all on one spot, stay as they were
    assert np.array_equal(model.fit(stuck, outline), stuck)


def _rotation(angle: float) -> np.ndarray:
    return np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
