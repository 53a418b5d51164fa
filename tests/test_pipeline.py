import json
import math

import numpy as np
import pytest
from PIL import Image

from radsight.batch.run import analyze_files
from radsight.concurrency import ordered_map, threads_per_worker
from radsight.core import FINDINGS, InputError
from radsight.explain.boxes import BoxConfig, heatmap_boxes
from radsight.models.store import ChecksumMismatch, get_model
from radsight.pipeline.predictor import Predictor

from conftest import make_dicom, tampered_copy


@pytest.fixture(scope="module")
def predictor(tiny_model):
    return Predictor(str(tiny_model))


def test_prediction_fields_and_thresholds(predictor, tmp_path, phantom):
    from radsight.io import load_image
    p = predictor.predict(load_image(make_dicom(tmp_path / "a.dcm", phantom)))
    assert [f.name for f in p.findings] == list(FINDINGS)
    assert all(0 <= f.probability <= 1 for f in p.findings)
    effusion = p.finding("Effusion")
    assert effusion.positive and effusion.threshold == 0.0  # the fixture forces it positive
    assert [f.name for f in p.positives] == ["Effusion"]
    assert p.heatmaps["Effusion"].max() <= 1 and p.heatmaps["Effusion"].min() >= 0
    assert p.triage.priority in ("urgent", "high", "routine")
    urgent = p.triage.urgent  # the fixture has no urgent operating point: the flag is withheld, and why
    assert [c.finding for c in urgent] == ["Pneumothorax"] and not urgent[0].flagged and urgent[0].withheld


def test_boxes_lie_inside_the_original_image(predictor, tmp_path):
    from radsight.io import load_image

    from conftest import chest_phantom
    image = load_image(make_dicom(tmp_path / "wide.dcm", chest_phantom(300, 420)))
    p = predictor.predict(image)
    for box in p.finding("Effusion").boxes:
        assert 0 <= box.x and box.x + box.width <= image.width + 1e-6
        assert 0 <= box.y and box.y + box.height <= image.height + 1e-6
        assert 0 < box.score <= 1


def test_heatmap_boxes_find_separate_blobs():
    heat = np.zeros((100, 200), np.float32)
    heat[10:30, 20:60] = 1.0
    heat[60:90, 150:190] = 0.8
    boxes = heatmap_boxes(heat, image_height=1000, image_width=2000, probability=0.5, cfg=BoxConfig(threshold=0.5))
    assert len(boxes) == 2
    first, second = boxes
    assert (first.x, first.y, first.width, first.height) == (200, 100, 400, 200)
    assert math.isclose(first.score, 0.5) and math.isclose(second.score, 0.4, rel_tol=1e-6)


def test_heatmap_boxes_drop_regions_too_small_or_too_wide_to_locate():
    heat = np.zeros((100, 100), np.float32)
    heat[0:2, 0:2] = 1.0  # 0.04% of the image
    heat[10:95, 5:8] = heat[90:95, 5:95] = 0.9  # an L whose box covers most of the image
    assert heatmap_boxes(heat, 100, 100, 1.0) == []


def test_analyze_files_writes_outputs_and_survives_bad_files(predictor, tmp_path, phantom):
    good = make_dicom(tmp_path / "in" / "good.dcm" if (tmp_path / "in").mkdir() is None else None, phantom)
    bad = tmp_path / "in" / "bad.dcm"
    bad.write_bytes(b"garbage" * 50)
    same_name = tmp_path / "in" / "good.png"
    Image.fromarray(np.round(phantom * 255).astype(np.uint8)).save(same_name)
    outcomes = list(analyze_files([good, bad, same_name], tmp_path / "out", predictor))
    assert [o.error is None for o in outcomes] == [True, False, True]
    assert isinstance(outcomes[1].error, InputError) and "bad.dcm" in str(outcomes[1].error)
    assert {o.json for o in outcomes if o.json} == {"good.json", "good-2.json"}
    doc = json.loads((tmp_path / "out" / "good.json").read_text())
    assert set(doc) >= {"source", "width", "height", "model", "triage", "findings", "image", "overlay", "disclaimer"}
    assert doc["model"] == {"name": "tiny-test", "version": "0.0.1"}
    assert set(doc["triage"]) >= {"abnormal_probability", "priority"}
    finding = next(f for f in doc["findings"] if f["name"] == "Effusion")
    assert set(finding) >= {"name", "probability", "threshold", "positive", "boxes"}
    assert all(set(b) == {"x", "y", "width", "height", "score"} for b in finding["boxes"])
    assert (tmp_path / "out" / finding["heatmap"]).is_file()
    overlay = Image.open(tmp_path / "out" / doc["overlay"])
    assert overlay.mode == "RGB" and overlay.height >= 300
    text = json.dumps(doc)
    assert "SECRET-ID-123" not in text and "Test^Patient" not in text


def test_files_analyzed_at_once_give_the_same_outputs_in_order(tiny_model, tmp_path, phantom):
    inputs = []
    for i in range(5):
        (tmp_path / "in" / f"{i}").mkdir(parents=True)
        inputs.append(make_dicom(tmp_path / "in" / f"{i}" / "x.dcm", np.clip(phantom + 0.02 * i, 0, 1)))
    inputs.insert(2, tmp_path / "in" / "broken.dcm")
    inputs[2].write_bytes(b"not a dicom" * 20)
    runs = {}
    for workers in (1, 3):
        predictor = Predictor(str(tiny_model), threads=threads_per_worker(workers))
        runs[workers] = list(analyze_files(inputs, tmp_path / f"out{workers}", predictor, workers))
    names = {w: [o.json for o in runs[w]] for w in runs}
    assert [o.job.paths[0] for o in runs[3]] == inputs
    assert names[1] == names[3] == ["x.json", "x-2.json", None, "x-3.json", "x-4.json", "x-5.json"]
    for one, many in zip(runs[1], runs[3]):
        if one.prediction is not None:
            expected = [f.probability for f in one.prediction.findings]
            assert [f.probability for f in many.prediction.findings] == pytest.approx(expected, abs=1e-6)


def test_concurrent_files_share_the_cores_out(monkeypatch):
    import radsight.concurrency as concurrency
    monkeypatch.setattr(concurrency, "cpu_cores", lambda: 16)
    assert concurrency.default_workers(3) == 3 and concurrency.default_workers(100) == 16
    assert [threads_per_worker(w) for w in (1, 3, 16, 32)] == [0, 5, 1, 1]  # 0: ONNX Runtime takes every core


def test_ordered_map_keeps_order_and_raises_what_a_worker_raised():
    assert list(ordered_map(lambda x: x * x, range(20), workers=3)) == [x * x for x in range(20)]

    def fail_on_7(x):
        if x == 7:
            raise RuntimeError("seven")
        return x
    with pytest.raises(RuntimeError, match="seven"):
        list(ordered_map(fail_on_7, range(20), workers=2))
    started = []
    results = ordered_map(lambda x: started.append(x) or x, range(100), workers=2)
    assert next(results) == 0
    results.close()  # the consumer stops: what was queued but not started is dropped
    assert len(started) < 100


def test_lossless_compression_gives_the_same_prediction(predictor, tmp_path, phantom):
    from pydicom.uid import JPEG2000Lossless

    from radsight.io import load_image
    a = predictor.predict(load_image(make_dicom(tmp_path / "a.dcm", phantom)))
    b = predictor.predict(load_image(make_dicom(tmp_path / "b.dcm", phantom, transfer_syntax=JPEG2000Lossless)))
    assert [f.probability for f in a.findings] == [f.probability for f in b.findings]


def test_a_film_saved_at_8_and_16_bits_gives_the_same_probabilities(predictor, tmp_path, phantom):
    from radsight.io import load_image
    gray = np.round(phantom * 255).astype(np.uint8)
    Image.fromarray(gray).save(tmp_path / "eight.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    a, b = (predictor.predict(load_image(tmp_path / name)) for name in ("eight.png", "sixteen.png"))
    np.testing.assert_allclose([f.probability for f in a.findings], [f.probability for f in b.findings], atol=1e-6)


def test_tampered_weights_are_refused(tiny_model, tmp_path):
    with pytest.raises(ChecksumMismatch):
        Predictor(str(tampered_copy(tiny_model, "model.onnx", tmp_path / "model")))


def test_default_model_is_registered_with_its_metadata():
    cfg = get_model()
    assert cfg.findings == list(FINDINGS)
    assert cfg.sha256 and cfg.license and cfg.training_data
    assert set(cfg.thresholds) == set(cfg.labels)
    assert (cfg.directory / cfg.model_card).is_file()


class StubSegmenter:
    """Returns the same two-lung probability map for any input (lungs at x 20-45% and 55-80%, y 20-80%)."""

    def __call__(self, batch):
        prob = np.zeros((len(batch), 1, 100, 100))
        prob[:, :, 20:80, 20:45] = prob[:, :, 20:80, 55:80] = 1
        return prob


def thorax_predictor(tiny_model, tmp_path, region):
    import shutil

    from radsight.models.config import ModelConfig
    folder = tmp_path / f"model-{region}"
    shutil.copytree(tiny_model, folder)
    cfg = ModelConfig.load(folder)
    cfg.input = type(cfg.input)(**{**cfg.input.__dict__, "region": region})
    cfg.save(folder)
    predictor = Predictor(str(folder))
    predictor.lungs.segmenter = StubSegmenter()
    return predictor


def test_thorax_region_crops_the_input_and_maps_heatmaps_back(tiny_model, tmp_path, phantom):
    from radsight.io import load_image
    image = load_image(make_dicom(tmp_path / "a.dcm", phantom))  # 288 wide, 320 high
    p = thorax_predictor(tiny_model, tmp_path, "thorax").predict(image)
    x, y, w, h = p.classifier_crop
    assert 0.1 * 288 < x < 0.2 * 288 and 0.1 * 320 < y < 0.2 * 320  # the lungs' box, widened by 5% a side
    assert x + w <= 288 and y + h <= 320 and w < 288 and h < 320
    heat = p.heatmaps["Effusion"]
    sy, sx = heat.shape[0] / 320, heat.shape[1] / 288
    assert heat[: int(y * sy) - 1].max() == 0 and heat[:, : int(x * sx) - 1].max() == 0
    assert heat.max() > 0.95
    for box in p.finding("Effusion").boxes:
        assert x - 2 <= box.x and box.x + box.width <= x + w + 2
    assert p.anatomy.plausible and p.anatomy.ctr is not None and len(p.anatomy.lungs) == 2
    doc = p.to_dict()
    assert doc["classifier_crop"] == [x, y, w, h] and doc["anatomy"]["lungs"][0]["side"] == "right"


def test_image_region_reads_the_whole_image_and_still_reports_anatomy(tiny_model, tmp_path, phantom):
    from radsight.io import load_image
    p = thorax_predictor(tiny_model, tmp_path, "image").predict(load_image(make_dicom(tmp_path / "a.dcm", phantom)))
    assert p.classifier_crop is None and p.anatomy.plausible


def test_thorax_models_need_a_lung_model(tiny_model, tmp_path):
    predictor = thorax_predictor(tiny_model, tmp_path, "thorax")
    with pytest.raises(ValueError, match="needs a lung model"):
        Predictor(predictor.cfg, lung_model=None)


def test_lung_mask_png_is_written(tiny_model, tmp_path, phantom):
    predictor = thorax_predictor(tiny_model, tmp_path, "image")
    [outcome] = analyze_files([make_dicom(tmp_path / "a.dcm", phantom)], tmp_path / "out", predictor)
    doc = json.loads((tmp_path / "out" / outcome.json).read_text())
    mask = np.asarray(Image.open(tmp_path / "out" / doc["anatomy"]["mask"]))
    assert mask.shape == (320, 288) and set(np.unique(mask)) == {0, 127, 254}
    assert mask[160, 100] == 127 and mask[160, 190] == 254  # patient's right lung on the image's left


def test_a_sliver_of_heat_along_an_edge_makes_no_box():
    heat = np.zeros((128, 128), np.float32)
    heat[10:12, 10:110] = 1.0  # two rows: 1.6% of the height, though 1.2% of the area
    heat[60:90, 40:70] = 0.9
    boxes = heatmap_boxes(heat, 512, 512, 0.5)
    assert len(boxes) == 1 and boxes[0].height > 100
