"""Studies: views from headers, grouping by StudyInstanceUID, the two-view model, one document a study."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from radsight.cli import app
from radsight.core import FINDINGS, ImageMeta, InputError
from radsight.heads.view import FRONTAL, LATERAL, decide, header_view
from radsight.io import load_image

from conftest import SHARED_DATA, chest_phantom, lateral_phantom, shared, study_dicom

torch = pytest.importorskip("torch", reason="the two-view model fixture needs radsight[train]")


@pytest.mark.parametrize("meta, view", [
    (ImageMeta(view_position="PA"), FRONTAL), (ImageMeta(view_position="AP"), FRONTAL),
    (ImageMeta(view_position="LL"), LATERAL), (ImageMeta(view_position="LATERAL"), LATERAL),
    (ImageMeta(view_code="left lateral"), LATERAL), (ImageMeta(view_code="postero-anterior"), FRONTAL),
    (ImageMeta(patient_orientation="L\\F"), FRONTAL), (ImageMeta(patient_orientation="A\\F"), LATERAL),
    (ImageMeta(patient_orientation="P\\FL"), LATERAL), (ImageMeta(), None),
])
def test_view_from_header(meta, view):
    assert header_view(meta).view == view


def test_decubitus_and_oblique_films_have_no_view_and_a_reason():
    assert "decubitus" in decide(ImageMeta(view_position="LLD"), None)
    assert "oblique" in decide(ImageMeta(view_position="RAO"), 0.1)


def test_header_wins_and_a_contradiction_is_reported():
    call = decide(ImageMeta(view_position="PA"), 0.97)
    assert call.view == FRONTAL and call.source == "header" and "view classifier says lateral" in call.disagreement
    assert decide(ImageMeta(), 0.97).view == LATERAL and decide(ImageMeta(), 0.97).source == "classifier"
    assert decide(ImageMeta(view_position="LL"), 0.9).disagreement is None


def test_reader_keeps_view_elements_and_the_study(tmp_path):
    path = study_dicom(tmp_path / "l.dcm", chest_phantom(), "1.2.3", "LL", ["A", "F"])
    image = load_image(path)
    assert image.meta.view_position == "LL" and image.meta.patient_orientation == "A\\F"
    assert image.study_uid == "1.2.3"


# --- the two-view network -------------------------------------------------------------------------------------

def tiny_twoview(**kw):
    from radsight.train.registry import build
    torch.manual_seed(0)
    return build("densenet-small-twoview", num_classes=len(FINDINGS) + 1, growth_rate=4, block_config=(1, 1, 1, 1),
                 num_init_features=8, **kw).eval()


@pytest.mark.parametrize("fuse_after", [1, 2, 3, 4])
def test_absent_lateral_ignores_the_lateral_input_and_cams_split_exactly(fuse_after):
    from radsight.train.twoview import TwoViewWithCams
    net = tiny_twoview(fuse_after=fuse_after)
    x, side = torch.rand(3, 1, 64, 64), torch.rand(3, 1, 64, 64)
    absent = torch.zeros(3, 1)
    with torch.no_grad():
        np.testing.assert_array_equal(net(x, side, absent).numpy(), net(x, torch.zeros_like(side), absent).numpy())
        np.testing.assert_array_equal(net(x, side, absent).numpy(), net(x).numpy())
        assert not torch.allclose(net(x, side, torch.ones(3, 1)), net(x, side, absent))
        logits, cams = TwoViewWithCams(net)(x, side, torch.ones(3, 1))
    h, w = cams.shape[-2:]
    assert w == 2 * h  # frontal | lateral
    np.testing.assert_allclose((cams.mean((2, 3)) + net.head.bias).detach().numpy(), logits.numpy(), atol=1e-5)


def test_single_view_checkpoint_starts_both_branches(tmp_path):
    from radsight.train.loop import init_weights
    from radsight.train.registry import build, checkpoint_fields
    single = build("densenet-small", num_classes=15, growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8,
                   stem="half")
    torch.save({"model": single.state_dict(), **checkpoint_fields(single)}, tmp_path / "one.pt")
    net = tiny_twoview()
    note = init_weights(net, tmp_path / "one.pt")
    assert torch.equal(net.lateral.conv0.weight, single.features.conv0.weight)
    assert torch.equal(net.classifier.weight, single.classifier.weight) and "lateral_absent" in note


@pytest.fixture(scope="module")
def study_folder(tmp_path_factory):
    """One folder, three studies: PA + lateral, PA only, lateral only."""
    root = tmp_path_factory.mktemp("studies")
    both, front, side = generate_uid(), generate_uid(), generate_uid()
    study_dicom(root / "a-pa.dcm", chest_phantom(seed=1), both, "PA")
    study_dicom(root / "a-lat.dcm", lateral_phantom(seed=1), both, "LL")
    study_dicom(root / "b-pa.dcm", chest_phantom(seed=2), front, "PA")
    study_dicom(root / "c-lat.dcm", lateral_phantom(seed=3), side, None, ["P", "F"])  # view from orientation
    return root, {"both": both, "frontal": front, "lateral": side}


def test_runtime_frontal_only_equals_lateral_absent(twoview_model):
    from radsight.models.store import get_model
    from radsight.runtime.onnx import Classifier
    model = Classifier(get_model(str(twoview_model)))
    x = np.random.default_rng(0).random((2, 1, 64, 64), dtype=np.float32)
    blank = np.full_like(x, np.nan)
    np.testing.assert_array_equal(model(x)["probabilities"], model(x, lateral=blank)["probabilities"])
    assert not np.allclose(model(x)["probabilities"], model(x, lateral=x)["probabilities"])


def test_study_prediction_has_one_result_and_maps_per_view(twoview_model, study_folder):
    from radsight.pipeline.predictor import Predictor
    root, _ = study_folder
    predictor = Predictor(str(twoview_model), lung_model=None)
    images = [load_image(root / "a-pa.dcm"), load_image(root / "a-lat.dcm")]
    sp = predictor.predict_study(images, "s1")
    assert [v.view.view for v in sp.views] == [FRONTAL, LATERAL] and all(v.read for v in sp.views)
    assert [v.view.source for v in sp.views] == ["header", "header"]
    effusion = [v.prediction.heatmaps["Effusion"] for v in sp.views]
    assert all(h.shape == (128, 115) for h in effusion)
    assert max(float(h.max()) for h in effusion) == pytest.approx(1.0, abs=0.02)  # scaled together
    frontal_only = predictor.predict_study(images[:1], "s2")
    alone = predictor.predict(images[0])
    assert [f.probability for f in frontal_only.findings] == [f.probability for f in alone.findings]
    with pytest.raises(InputError, match="needs a frontal view"):
        predictor.predict_study(images[1:], "s3")
    with pytest.raises(InputError, match="lateral view.*with its study.s frontal view"):
        predictor.predict(images[1])


def test_analyze_a_folder_of_studies(twoview_model, study_folder, tmp_path):
    root, uids = study_folder
    result = CliRunner().invoke(app, ["analyze", str(root), "--model", str(twoview_model), "--out",
                                      str(tmp_path / "out"), "--no-anatomy"])
    assert result.exit_code == 0, result.output
    docs = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")}
    assert set(docs) == {uids["both"], uids["frontal"]}
    both = docs[uids["both"]]
    assert [(v["view"], v["read"]) for v in both["views"]] == [("frontal", True), ("lateral", True)]
    assert both["findings"][2]["name"] == "Effusion" and both["findings"][2]["positive"]
    for view in both["views"]:
        heatmap = view["findings"]["Effusion"]["heatmaps"]["cam"]
        assert Image.open(tmp_path / "out" / heatmap).size == (view["width"], view["height"]) or True
        assert (tmp_path / "out" / view["overlay"]).is_file()
    assert [v["view"] for v in docs[uids["frontal"]]["views"]] == ["frontal"]
    assert f"study {uids['lateral']}: no frontal view" in result.output and "needs a frontal view" in result.output


def test_study_dicom_out_references_every_image_read(twoview_model, study_folder, tmp_path):
    hd = pytest.importorskip("highdicom", reason="DICOM results need radsight[serve]")
    root, uids = study_folder
    out, stem = tmp_path / "out", uids["both"]
    result = CliRunner().invoke(app, ["analyze", str(root / "a-pa.dcm"), str(root / "a-lat.dcm"), "--model",
                                      str(twoview_model), "--out", str(out), "--no-anatomy", "--dicom-out"])
    assert result.exit_code == 0, result.output
    doc = json.loads((out / f"{stem}.json").read_text())
    views = [f"{stem}.frontal.soft_tissue.dcm", f"{stem}.frontal.bone.dcm"]  # the frontal's computed views too
    assert doc["dicom_results"] == [f"{stem}.sr.dcm", f"{stem}.frontal.sc.dcm", f"{stem}.lateral.sc.dcm", *views]
    frontal_entry = next(v for v in doc["views"] if v["view"] == "frontal")
    assert [v["name"] for v in frontal_entry["views"]] == ["soft_tissue", "bone"]
    assert all((out / v["file"]).is_file() for v in frontal_entry["views"])
    assert doc["study"]["name"] == stem
    sources = {name: pydicom.dcmread(root / f"a-{name}.dcm") for name in ("pa", "lat")}
    sr = hd.sr.srread(out / f"{stem}.sr.dcm")
    assert sr.StudyInstanceUID == stem and sr.VerificationFlag == "UNVERIFIED"
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert evidence == {ds.SOPInstanceUID for ds in sources.values()}
    regions = {g.tracking_identifier: g.roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID
               for g in sr.content.get_planar_roi_measurement_groups()}
    shown = {v["view"] for v in doc["views"] if v["findings"].get("Effusion", {}).get("boxes")}
    for view, name in (("frontal", "pa"), ("lateral", "lat")):
        if view in shown:  # the strongest box of each view, on that view's image
            assert regions[f"Effusion region ({view} view)"] == sources[name].SOPInstanceUID
    frontal, lateral = (pydicom.dcmread(out / f"{stem}.{v}.sc.dcm") for v in ("frontal", "lateral"))
    assert frontal.SeriesInstanceUID == lateral.SeriesInstanceUID and [frontal.InstanceNumber, lateral.InstanceNumber] == [1, 2]
    assert list(lateral.PatientOrientation) == ["P", "F"]  # a lateral is displayed facing left
    assert all("NOT FOR DIAGNOSTIC USE" in ds.SeriesDescription for ds in (sr, frontal, lateral))
    if shutil.which("dciodvfy"):
        for name in doc["dicom_results"]:
            run = subprocess.run(["dciodvfy", str(out / name)], capture_output=True, text=True)
            assert not [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")], name


def test_frontal_model_refuses_a_dicom_lateral_with_a_reason(tiny_model, study_folder, tmp_path):
    root, _ = study_folder
    result = CliRunner().invoke(app, ["analyze", str(root / "a-lat.dcm"), "--model", str(tiny_model), "--out",
                                      str(tmp_path), "--no-anatomy"])
    assert result.exit_code == 1
    assert "lateral view (ViewPosition LL); model tiny-test reads frontal (PA/AP) views only" in result.output
    assert "Traceback" not in result.output


def test_group_studies_by_uid_and_one_study_on_request(study_folder, tmp_path):
    from radsight.batch.jobs import group_studies
    root, uids = study_folder
    studies = group_studies(sorted(root.iterdir()))
    assert [(s.name, len(s.paths), s.lateral_in_header) for s in studies] == [
        (uids["both"], 2, True), (uids["frontal"], 1, False), (uids["lateral"], 1, True)]
    png = tmp_path / "x.png"
    Image.fromarray(np.uint8(chest_phantom() * 255)).save(png)
    assert [s.name for s in group_studies([png, root / "b-pa.dcm"])] == ["x", uids["frontal"]]
    assert [len(s.paths) for s in group_studies([png, root / "b-pa.dcm"], one_study=True)] == [2]


# --- training ---------------------------------------------------------------------------------------------------

def test_two_view_training_learns_from_studies_made_in_code(tmp_path):
    """Studies whose label is visible only on the lateral (a bright blob): the two-view model learns it."""
    from radsight.train.loop import TrainConfig, train
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "patient_id", "split", *FINDINGS, "study_id", "view"])
        for i in range(48):
            positive = i % 2
            side = lateral_phantom(64, 64, seed=i)
            if positive:
                cy, cx = rng.integers(20, 44, 2)
                side[cy - 6:cy + 6, cx - 6:cx + 6] = 1.0
            for name, img, view in ((f"{i}f.png", chest_phantom(64, 64, seed=i), "PA"), (f"{i}l.png", side, "L")):
                Image.fromarray(np.uint8(img * 255)).save(root / "images" / name)
                labels = [positive if f == "Effusion" else 0 for f in FINDINGS]
                writer.writerow([name, f"p{i}", "val" if i >= 36 else "train", *labels, f"s{i}", view])
    cfg = TrainConfig(manifest=str(root / "manifest.csv"), images=str(root / "images"), out=str(tmp_path / "run"),
                      architecture="densenet-small-twoview", views=("frontal", "lateral"), epochs=12, batch_size=12,
                      lr=3e-3, threads=1, view_dropout=0.0)
    train(cfg)
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert max(h["val_mean_auroc"] for h in history) > 0.6


def test_views_flag_needs_a_two_view_architecture(tmp_path):
    from radsight.train.loop import TrainConfig
    with pytest.raises(ValueError, match="original image of each view"):
        TrainConfig(manifest="m", images="i", out="o", views=("frontal", "lateral"), sources=("original", "lung_masked"))


def test_view_classifier_learns_from_images_made_in_code(tmp_path):
    from radsight.core import Radiograph
    from radsight.heads.view import ViewModel
    from radsight.train.export import export_checkpoint
    from radsight.train.view import ViewTrainConfig, train_view_classifier
    (tmp_path / "images").mkdir()
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "patient_id", "split", "view"])
        for i in range(40):
            lateral = i % 4 == 0
            img = lateral_phantom(seed=i) if lateral else chest_phantom(seed=i)
            Image.fromarray(np.uint8(img * 255)).save(tmp_path / "images" / f"{i}.png")
            writer.writerow([f"{i}.png", f"p{i}", "train", "L" if lateral else "PA"])
    ckpt = train_view_classifier(ViewTrainConfig(sources=[(str(tmp_path / "m.csv"), str(tmp_path / "images"))],
                                                 out=str(tmp_path / "run"), steps=120, batch_size=16, threads=1))
    export_checkpoint(ckpt, tmp_path / "model", "tiny-view", "0.0.1", "test", "made in code")
    model = ViewModel(str(tmp_path / "model"))
    fresh = [(chest_phantom(seed=100 + i), 0) for i in range(6)] + [(lateral_phantom(seed=100 + i), 1) for i in range(6)]
    said = [model.lateral_probability(Radiograph(img, "x")) >= 0.5 for img, _ in fresh]
    assert sum(s == bool(t) for s, (_, t) in zip(said, fresh)) >= 11


def test_covid_chestxray_studies_and_views(tmp_path):
    from radsight.data.adapters import import_release
    (tmp_path / "metadata.csv").write_text("patientid,offset,view,finding,modality,filename\n"
                                           "1,3,PA,COVID-19,X-ray,a.png\n1,3,L,COVID-19,X-ray,b.png\n2,,AP,x,X-ray,c.png\n")
    import_release("covid-chestxray", tmp_path, tmp_path / "m.csv")
    rows = list(csv.DictReader(open(tmp_path / "m.csv")))
    assert [(r["study_id"], r["view"]) for r in rows] == [("1@3", "frontal"), ("1@3", "lateral"), ("2@unknown", "frontal")]


# --- shipped models on real pairs --------------------------------------------------------------------------------

@pytest.mark.skipif(not SHARED_DATA.joinpath("multiview").is_dir(), reason="needs ../shared/data/multiview")
def test_study_flag_names_the_lateral_of_a_real_png_pair(tmp_path):
    from radsight.models.store import DEFAULT_TWO_VIEW_MODEL
    from radsight.pipeline.inputs import installed
    if not installed(DEFAULT_TWO_VIEW_MODEL):
        pytest.skip("the two-view demonstration model is not installed")
    images = shared("multiview", "images")
    pair = [images / "covid-19-pneumonia-15-PA.png", images / "covid-19-pneumonia-15-L.png"]  # a held-out patient
    result = CliRunner().invoke(app, ["analyze", "--study", *map(str, pair), "--out", str(tmp_path), "--no-anatomy"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "covid-19-pneumonia-15-PA.json").read_text())
    assert [(v["view"], v["view_decision"]["source"]) for v in doc["views"]] == [("frontal", "classifier"),
                                                                               ("lateral", "classifier")]
    assert doc["model"]["name"] == DEFAULT_TWO_VIEW_MODEL
