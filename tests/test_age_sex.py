"""The age and sex head: it learns a planted age signal, its bias correction removes a planted bias, export and
torch-free inference agree, the sections carry no stated age or sex, and its occlusion map finds the evidence."""
from __future__ import annotations

import csv
import gzip
import json

import numpy as np
import pytest
from PIL import Image

from radsight.core import AgeEstimate, ImageMeta, ModelRef, Radiograph, SexEstimate
from radsight.data.demographics import read_demographics
from radsight.heads.age_sex import age_gap, age_map, corrected_age, fit_calibration, read_age_sex
from radsight.inputs.preprocess import InputSpec
from radsight.models.config import AGE_SEX, ModelConfig

from conftest import chest_phantom


def _film(age: float, female: bool, seed: int, size: int = 96) -> np.ndarray:
    """A phantom whose upper-middle disc brightens with age and which carries a small bright spot when female."""
    img = chest_phantom(size, size, seed=seed).astype(np.float64)
    yy, xx = np.mgrid[:size, :size] / size
    img += (age / 100) * 0.5 * (((xx - 0.5) ** 2 + (yy - 0.3) ** 2) < 0.015)
    img += 0.4 * female * (((xx - 0.3) ** 2 + (yy - 0.8) ** 2) < 0.004)
    return np.clip(img, 0, 1)


def _set(root, n: int = 160, seed: int = 0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        age, female = float(rng.uniform(20, 85)), bool(rng.random() < 0.5)
        Image.fromarray(np.round(_film(age, female, i) * 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        rows.append({"image": f"{i}.png", "patient_id": f"p{i}", "split": "val" if i % 4 == 0 else "train",
                     "age": f"{age:.0f}", "sex": "F" if female else "M"})
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return root


def _cfg(fitted: dict, outputs=("age", "female_logit")) -> ModelConfig:
    return ModelConfig(name="age-test", version="0", architecture="age-sex-net", labels=["age", "female"],
                       input=InputSpec(size=64, mean=0.5, std=0.25, channels=1), task=AGE_SEX, outputs=list(outputs),
                       fitted=fitted)


def test_the_bias_correction_removes_a_planted_bias():
    """Estimates regressed to the mean (raw = 0.6·age + 20 + noise): the correction fitted on one draw leaves the
    error of another draw flat against age, and the gap's slope too; neither needs the stated age to estimate."""
    rng = np.random.default_rng(0)
    val_age, test_age = rng.uniform(20, 90, 400), rng.uniform(20, 90, 400)
    raw = lambda age: 0.6 * age + 20 + rng.normal(0, 4, len(age))  # noqa: E731
    fitted = fit_calibration(raw(val_age), val_age)
    test_raw = raw(test_age)
    before = np.polyfit(test_age, test_raw - test_age, 1)[0]
    after = np.polyfit(test_age, corrected_age(test_raw, fitted) - test_age, 1)[0]
    gap = np.polyfit(test_age, age_gap(test_raw, test_age, fitted), 1)[0]
    assert before == pytest.approx(-0.4, abs=0.05)
    assert abs(after) < 0.05 and abs(gap) < 0.05
    assert fitted["age_correction"]["slope"] == pytest.approx(0.6, abs=0.05)
    lo, hi = fitted["interval_80"]
    inside = np.mean((corrected_age(test_raw, fitted) - test_age > lo) & (corrected_age(test_raw, fitted) - test_age < hi))
    assert 0.7 < inside < 0.9


def test_the_sex_check_is_set_for_one_percent_false_alarms():
    rng = np.random.default_rng(1)
    female = (rng.random(1000) < 0.5).astype(float)
    p_female = np.clip(female * 0.8 + 0.1 + rng.normal(0, 0.1, 1000), 0, 1)
    age = rng.uniform(20, 80, 1000)
    fitted = fit_calibration(age + rng.normal(0, 5, 1000), age, p_female, female)
    other = np.where(female == 1, 1 - p_female, p_female)
    assert np.mean(other > fitted["sex_mismatch_threshold"]) <= 0.01


def test_sections_say_the_estimate_the_gap_and_a_mismatch_without_copying_the_stated_values():
    fitted = {"age_correction": {"slope": 0.5, "intercept": 25.0}, "gap_correction": {"alpha": 0.0, "beta": 0.0},
              "interval_80": [-8.0, 7.0], "sex_mismatch_threshold": 0.9}
    outputs = {"age": np.array([[70.0]]), "female_logit": np.array([[4.0]])}  # P(female) 0.982
    pixels = np.zeros((32, 32), np.float32)
    stated = Radiograph(pixels, "x.dcm", ImageMeta(modality="DX", stated_age_years=45.0, stated_sex="M"))
    sections = read_age_sex(_cfg(fitted), outputs, stated)
    age, sex = sections["age"], sections["sex"]
    assert age.estimate == pytest.approx(90.0) and age.interval_80 == pytest.approx((82.0, 97.0))
    assert age.gap == pytest.approx(70.0 - 45.0)
    assert sex.probability_female == pytest.approx(0.982, abs=1e-3) and sex.mismatch is True
    written = age.document()
    assert written["estimate"] == "90+" and written["interval_80"] == [82.0, "90+"]
    unstated = read_age_sex(_cfg(fitted), outputs, Radiograph(pixels, "x.png"))
    assert unstated["age"].gap is None and unstated["sex"].mismatch is None
    female = read_age_sex(_cfg(fitted), outputs, Radiograph(pixels, "x.dcm", ImageMeta(stated_sex="F")))
    assert female["sex"].mismatch is False
    oldest = read_age_sex(_cfg(fitted), outputs, Radiograph(pixels, "x.dcm", ImageMeta(stated_age_years=93.0)))
    assert oldest["age"].gap is None  # it would give the exact age back
    ageonly = read_age_sex(_cfg({}, ("age",)), {"age": np.array([[33.0]])}, stated)
    assert ageonly["age"].estimate == 33.0 and ageonly["sex"].probability_female is None


def test_the_document_holds_age_and_sex_and_no_stated_value():
    from radsight.core import Prediction, Triage
    ref = ModelRef("age-test", "0")
    p = Prediction(source="x.dcm", width=8, height=8, model=ref, triage=Triage(0.1, 0.5, "routine"), findings=[],
                   meta=ImageMeta(modality="DX", stated_age_years=93.0, stated_sex="F"),
                   sections={"age": AgeEstimate(ref, 91.2, (85.0, 99.0), -1.8), "sex": SexEstimate(ref, 0.7, False, 0.95)})
    doc = p.to_dict()
    assert doc["age"]["estimate"] == "90+" and doc["age"]["gap"] == -1.8 and doc["sex"]["mismatch"] is False
    text = json.dumps(doc)
    assert "stated" not in text and "93" not in text


class _BrightnessAge:
    """A stand-in age model: its 'age' is 100 x the mean of the input over one square (rows 24-32, cols 40-48)."""

    def __init__(self):
        self.cfg = _cfg({})

    def run(self, batch, names=None):
        return {"age": 100 * batch[:, 0, 24:32, 40:48].mean((1, 2))[:, None]}


def test_the_occlusion_map_finds_where_the_age_evidence_lies():
    pixels = chest_phantom(128, 128).copy()
    pixels[48:64, 80:96] = 1.0  # the square the stand-in reads, at the image's scale
    heat = age_map(_BrightnessAge(), Radiograph(pixels, "x.png"))
    y, x = np.unravel_index(np.argmax(heat), heat.shape)
    h, w = heat.shape
    assert abs(y / h - 0.44) < 0.12 and abs(x / w - 0.69) < 0.12
    assert heat.max() == pytest.approx(1.0) and heat[int(0.85 * h), int(0.15 * w)] < 0.2


def test_ages_and_sexes_come_from_the_manifest_then_the_metadata(tmp_path):
    (tmp_path / "manifest.csv").write_text("image,patient_id,split,age,sex\na.png,1,train,45,F\nb.png,2,val,,\n"
                                           "c.png,3,test,abc,X\n")
    with gzip.open(tmp_path / "meta.csv.gz", "wt") as fh:
        fh.write("Image Index,Patient Age,Patient Gender\na.png,99,M\nb.png,61,M\n")
    rows = read_demographics(tmp_path / "manifest.csv", tmp_path, tmp_path / "meta.csv.gz")
    assert rows.age[:2].tolist() == [45.0, 61.0] and rows.female[:2].tolist() == [1.0, 0.0]
    assert np.isnan(rows.age[2]) and np.isnan(rows.female[2])
    assert rows.split("val").images == ["b.png"]


def test_patient_sex_is_read_as_f_or_m_only():
    from radsight.io.dicom import sex_of
    assert [sex_of(v) for v in ("F", "m ", "O", "", None, "female")] == ["F", "M", None, None, None, None]


def test_the_head_learns_a_planted_age_signal_and_exports_to_onnx(tmp_path):
    """Trained a few epochs on synthetic films: the corrected age beats the training mean by far, the sex is told
    apart, the fitted correction reaches the exported config, and ONNX Runtime agrees with torch to 1e-4."""
    torch = pytest.importorskip("torch", reason="needs radsight[train]")
    from radsight.evaluate.age_sex import evaluate_age_sex
    from radsight.models.store import get_model
    from radsight.train.age_net import AgeSexOutputs
    from radsight.train.age_sex import AgeSexTrainConfig, train_age_sex
    from radsight.train.export import export_checkpoint, load_checkpoint
    data = _set(tmp_path / "set")
    best = train_age_sex(AgeSexTrainConfig(sets=[(str(data / "manifest.csv"), str(data / "images"))],
                                           out=str(tmp_path / "run"), input_size=64, epochs=8, batch_size=16,
                                           lr=3e-3, threads=2))
    cfg = export_checkpoint(best, tmp_path / "model", "age-test", "0.0.1", "test", "synthetic")
    assert cfg.task == AGE_SEX and cfg.outputs == ["age", "female_logit"]
    assert set(cfg.fitted) >= {"age_correction", "gap_correction", "interval_80", "sex_mismatch_threshold",
                               "train_mean_age"}
    net, _ = load_checkpoint(best)
    x = torch.randn(3, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    import onnxruntime as ort
    session = ort.InferenceSession(str(cfg.weights_path), providers=["CPUExecutionProvider"])
    ours = session.run(["age", "female_logit"], {"image": x.numpy()})
    with torch.no_grad():
        theirs = AgeSexOutputs(net.eval())(x)
    for a, b in zip(ours, theirs):
        assert np.abs(a - b.numpy()).max() <= 1e-4
    rows = read_demographics(data / "manifest.csv", data / "images").split("val")
    m = evaluate_age_sex(get_model(str(tmp_path / "model")), rows, tmp_path / "eval", bootstrap=50)
    assert m["age"]["mae"] < 0.6 * m["age"]["baseline_mae"], m["age"]
    assert m["sex"]["auroc"] > 0.9
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    for key in ("mae", "uncorrected_mae", "baseline_mae", "r2", "pearson_r", "bias_slope_before", "bias_slope_after",
                "mae_ci"):
        assert key in written["age"]
    assert (tmp_path / "eval" / "age.png").is_file() and "MAE" in (tmp_path / "eval" / "report.md").read_text()


def test_analyze_gives_every_film_an_apparent_age_and_a_gap_only_where_the_header_states_one(tmp_path):
    """With the shipped age model: a DICOM stating 045Y and F gets a gap and a sex check, a PNG and a DICOM with a
    malformed PatientAge get an estimate and no gap; the JSON copies neither stated value; the SR measures the age."""
    import pydicom
    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.heads.age_sex import DEFAULT_AGE_MODEL
    from radsight.pipeline.inputs import installed

    from conftest import make_dicom
    if installed(DEFAULT_AGE_MODEL) is None:
        pytest.skip(f"{DEFAULT_AGE_MODEL} is not installed")
    folder = tmp_path / "in"
    folder.mkdir()
    for name, age in (("stated", "045Y"), ("malformed", "45 years")):
        path = make_dicom(folder / f"{name}.dcm", chest_phantom(320, 288))
        ds = pydicom.dcmread(path)
        ds.PatientAge, ds.PatientSex = age, "F"
        ds.save_as(path)
    Image.fromarray(np.round(chest_phantom(320, 288) * 255).astype(np.uint8)).save(folder / "plain.png")
    result = CliRunner().invoke(app, ["analyze", str(folder), "--out", str(tmp_path / "out"), "--dicom-out",
                                      "--allow-ood", "--no-bone-views", "--heatmaps-for", "Age"])
    assert result.exit_code == 0, result.output
    docs = {name: json.loads((tmp_path / "out" / f"{name}.json").read_text()) for name in ("stated", "malformed",
                                                                                          "plain")}
    assert isinstance(docs["stated"]["age"]["gap"], float) and docs["stated"]["sex"]["mismatch"] in (True, False)
    for name in ("malformed", "plain"):
        assert docs[name]["age"]["estimate"] is not None and docs[name]["age"]["gap"] is None
    assert docs["plain"]["sex"]["mismatch"] is None
    assert docs["stated"]["age"]["heatmap"] == "stated.heatmap.Age.png"
    assert (tmp_path / "out" / "stated.heatmap.Age.png").is_file()
    assert "045Y" not in json.dumps(docs["stated"]) and "stated_sex" not in json.dumps(docs["stated"])
    sr = pydicom.dcmread(tmp_path / "out" / "stated.sr.dcm")
    assert "Apparent age" in str(sr.ContentSequence)


def test_age_sex_trains_under_torchrun(tmp_path):
    """Two CPU processes (gloo) share each epoch's batches; the main one writes the checkpoint with its fitted
    correction."""
    torch = pytest.importorskip("torch", reason="needs radsight[train]")
    from conftest import torchrun_train
    data = _set(tmp_path / "set", n=48)
    run = torchrun_train(2, "--task", "age-sex", "--manifest", str(data / "manifest.csv"), "--images",
                         str(data / "images"), "--out", str(tmp_path / "ddp"), "--epochs", "2", "--batch-size", "8",
                         "--input-size", "32")
    assert run.returncode == 0, run.stderr[-2000:]
    best = torch.load(tmp_path / "ddp" / "best.pt", map_location="cpu", weights_only=False)
    assert best["round"] in (0, 1) and "train_mean_age" in best["fitted"]
