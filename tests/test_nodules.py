"""The nodule head: peaks of its centre map become points with a radius, duplicates merge, nothing is searched
for outside the lungs' region, and a film without lungs gets no detections and a reason."""
from __future__ import annotations

import numpy as np
import pytest

from radsight.core import ImageMeta, Radiograph
from radsight.heads.nodules import NO_LUNGS, decode, location, read_nodules
from radsight.inputs.preprocess import InputSpec
from radsight.models.config import NODULE_DETECTION, ModelConfig


def _maps(size: int, blobs: list[tuple[float, float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Centre logits with a Gaussian bump of peak probability ``p`` at each (x, y, radius, p), and the log radius."""
    yy, xx = np.mgrid[:size, :size]
    prob = np.full((size, size), 1e-4)
    log_radius = np.zeros((size, size))
    for x, y, r, p in blobs:
        bump = p * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * max(1.0, r / 3) ** 2))
        log_radius = np.where(bump > prob, np.log(r), log_radius)
        prob = np.maximum(prob, bump)
    return np.log(prob / (1 - prob)), log_radius


def test_planted_blobs_are_found_at_their_places_best_first_with_their_radius():
    logits, log_radius = _maps(64, [(20, 30, 4, 0.9), (45, 12, 6, 0.6)])
    found = decode(logits, log_radius)
    assert [(x, y) for x, y, _, _ in found[:2]] == [(20.0, 30.0), (45.0, 12.0)]
    assert found[0][2] == pytest.approx(4.0) and found[0][3] == pytest.approx(0.9, abs=1e-6)
    assert all(s < 0.6 for *_, s in found[2:])


def test_duplicates_within_a_radius_merge_into_the_best():
    logits, log_radius = _maps(64, [(20, 30, 6, 0.9), (24, 30, 6, 0.8)])  # two peaks 4 px apart, radius 6
    found = decode(logits, log_radius, min_score=0.5)
    assert len(found) == 1 and found[0][:2] == (20.0, 30.0)


def test_nothing_is_searched_for_outside_the_region():
    logits, log_radius = _maps(64, [(20, 30, 4, 0.9), (60, 60, 4, 0.9)])
    region = np.zeros((128, 128), bool)
    region[40:80, 20:60] = True  # holds (20, 30) on the 64 grid, not (60, 60)
    assert [(x, y) for x, y, _, _ in decode(logits, log_radius, region, min_score=0.5)] == [(20.0, 30.0)]


def test_locations_name_the_lung_behind_the_heart_and_below_the_dome():
    labels = np.zeros((100, 100), np.uint8)
    labels[20:70, 10:40], labels[20:70, 60:90] = 1, 2
    assert location(labels, 20, 40) == "right lung" and location(labels, 70, 40) == "left lung"
    assert location(labels, 50, 40) == "retrocardiac" and location(labels, 20, 80) == "subdiaphragmatic"


def _cfg() -> ModelConfig:
    return ModelConfig(name="nod", version="0", architecture="unet", labels=["nodule"],
                       input=InputSpec(size=64, mean=0.5, std=0.25, channels=1), task=NODULE_DETECTION,
                       outputs=["nodule_maps"], fitted={"threshold": 0.5})


def test_a_film_without_lungs_gets_no_detections_and_a_reason():
    logits, log_radius = _maps(64, [(20, 30, 4, 0.9)])
    outputs = {"nodule_maps": np.stack([logits, log_radius])[None]}
    film = Radiograph(np.zeros((128, 128), np.float32), "x.png")
    found = read_nodules(_cfg(), outputs, film, lungs=None)
    assert found.detections == [] and found.reason == NO_LUNGS


def test_detections_come_in_the_images_pixels_with_mm_where_the_spacing_is_known():
    logits, log_radius = _maps(64, [(20, 30, 4, 0.9), (40, 30, 4, 0.3)])
    outputs = {"nodule_maps": np.stack([logits, log_radius])[None]}
    lungs = np.zeros((256, 256), np.uint8)
    lungs[40:200, 30:110], lungs[40:200, 146:226] = 1, 2
    film = Radiograph(np.zeros((256, 256), np.float32), "x.dcm", ImageMeta(pixel_spacing_mm=(0.5, 0.5)))
    found = read_nodules(_cfg(), outputs, film, lungs=lungs)
    assert len(found.detections) == 1  # the 0.3 peak is below the operating point
    d = found.detections[0]
    assert (d.x, d.y, d.radius_px, d.diameter_mm, d.location) == (80.0, 120.0, 16.0, 16.0, "right lung")


def test_the_sr_holds_each_nodule_as_a_circle_with_its_score_and_diameter(tmp_path):
    pytest.importorskip("highdicom")
    import pydicom

    from radsight.core import Detection, Detections, ModelRef, Prediction, Triage
    from radsight.results.dicom import structured_report

    from conftest import chest_phantom, make_dicom
    ref = ModelRef("nod", "0")
    source = pydicom.dcmread(make_dicom(tmp_path / "a.dcm", chest_phantom()))
    p = Prediction(source="a.dcm", width=288, height=320, model=ref, triage=Triage(0.1, 0.5, "routine"), findings=[],
                   sections={"nodules": Detections(ref, 0.5, [Detection(100.0, 120.0, 8.0, 3.2, 0.8, "right lung")])})
    sr = structured_report(source, p)
    texts = []

    def walk(items):
        for item in items:
            texts.append(str(item.get("TextValue", "")))
            walk(item.get("ContentSequence", []))
    walk(sr.ContentSequence)
    assert "Nodule 1 (right lung)" in texts
    assert "CIRCLE" in str(sr.ContentSequence) and "Diameter" in str(sr.ContentSequence)


def test_the_detector_learns_to_find_planted_nodules(tmp_path):
    """A small U-Net trained on phantoms, half with a planted nodule and half with nodules simulated at every draw,
    finds a nodule planted in a new phantom at its place, with little else scoring near it."""
    torch = pytest.importorskip("torch", reason="needs radsight[train]")
    from radsight.train.fit import Plan, fit
    from radsight.train.nodule_sim import Nodule, nodule_profile
    from radsight.train.nodules import Films, NoduleConfig, NoduleTask
    from radsight.train.registry import build

    from conftest import chest_phantom
    size, spacing, rng = 64, 1.0, np.random.default_rng(0)
    region = np.zeros((size, size), bool)
    region[12:52, 8:56] = True

    def planted(seed: int) -> tuple[np.ndarray, list]:
        film = chest_phantom(size, size, seed=seed)
        y, x = rng.integers(16, 48, 2)
        n = Nodule(float(x), float(y), 9.0, 0.35)
        return np.clip(film + nodule_profile(film.shape, n, spacing, rng), 0, 1), [(n.x, n.y, n.diameter_mm)]
    real = [planted(i) for i in range(12)]
    clear = [chest_phantom(size, size, seed=100 + i) for i in range(12)]
    train = Films(np.stack([f for f, _ in real] + clear), [n for _, n in real] + [[] for _ in clear],
                  [region] * 24, spacing, [str(i) for i in range(24)])
    val_films = [planted(200 + i) for i in range(4)]
    val = Films(np.stack([f for f, _ in val_films]), [n for _, n in val_films], [region] * 4, spacing,
                ["v0", "v1", "v2", "v3"])
    cfg = NoduleConfig(manifest="", images="", out=str(tmp_path), input_size=size, iterations=200,
                       checkpoint_every=50, batch_size=8, lr=3e-3, seed=0)
    torch.manual_seed(0)
    net = build("unet", in_chans=1, num_classes=2, base=8, depth=3)
    with torch.no_grad():
        net.head.bias[0] = float(np.log(0.01 / 0.99))
    task = NoduleTask(cfg, train, val, np.array([0.35]), net)
    fit(task, net, Plan(4, 200, 3e-3), tmp_path)
    hits = 0
    for case in task.cases(val):
        (x, y, _), best = case.lesions[0], case.detections[0]
        hits += int(np.hypot(best[0] - x, best[1] - y) <= 4)
    assert hits >= 3, [(c.lesions, c.detections[:2]) for c in task.cases(val)]
