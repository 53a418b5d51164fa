"""The triage model beside the findings model: its score gives the priority; the shortcut audit and the paired
triage evaluation run on it; the manifests that state a radiologist's normal/abnormal read."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from conftest import chest_phantom


@pytest.fixture(scope="module")
def tiny_triage(tmp_path_factory):
    """A random-weight densenet-small-256-like triage model (Abnormal only) reading the thorax; threshold 0."""
    torch = pytest.importorskip("torch", reason="model fixtures need radsight[train]")
    from radsight.inputs.preprocess import InputSpec
    from radsight.models.config import TRIAGE_LABEL, ModelConfig
    from radsight.models.store import sha256_file
    from radsight.train.export import CLASSIFIER_OUTPUTS, export_onnx
    from radsight.train.registry import build
    torch.manual_seed(0)
    net = build("densenet-small-256", num_classes=1, growth_rate=4, block_config=(1, 1, 1), num_init_features=8)
    out = tmp_path_factory.mktemp("tiny_triage")
    spec = InputSpec(size=64, region="thorax")
    export_onnx(net, spec, out / "model.onnx")
    ModelConfig(name="tiny-triage", version="0.0.1", architecture="densenet-small-256", labels=[TRIAGE_LABEL],
                input=spec, thresholds={TRIAGE_LABEL: 0.0}, sha256=sha256_file(out / "model.onnx"), license="test",
                outputs=CLASSIFIER_OUTPUTS).save(out)
    return out


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory):
    """12 phantoms from two sources, normal and abnormal in each, with ages; the abnormal column alone labels them."""
    from radsight.core import FINDINGS
    root = tmp_path_factory.mktemp("sources")
    (root / "images").mkdir()
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "patient_id", "split", *FINDINGS, "abnormal", "source", "age"])
        for i in range(12):
            pixels = chest_phantom(128, 128, seed=i) * (0.8 if i % 2 else 1.0)
            Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
            writer.writerow([f"{i}.png", f"p{i}", "test", *[""] * len(FINDINGS), int(i % 3 == 0), f"s{i % 2}",
                             10 + 6 * i])
    return root


def test_the_triage_model_scores_the_priority_and_the_map(tiny_model, tiny_triage):
    from radsight.io import load_image
    from radsight.pipeline.predictor import Predictor
    Image.fromarray((chest_phantom() * 255).astype(np.uint8)).save(tiny_triage / "film.png")
    image = load_image(tiny_triage / "film.png")
    alone = Predictor(tiny_model, triage_model=None).predict(image)
    both = Predictor(tiny_model, triage_model=str(tiny_triage)).predict(image, explain=["Abnormal"])
    assert alone.triage.model is None and both.triage.model.name == "tiny-triage"
    assert both.triage.threshold == 0.0 and both.triage.priority == "high"
    assert both.triage.urgent == alone.triage.urgent  # the urgent checks stay the findings model's
    assert both.heatmaps["Abnormal"].shape == both.heatmaps["Abnormal"].shape and both.heatmaps["Abnormal"].max() > 0
    assert both.to_dict()["triage"]["model"] == {"name": "tiny-triage", "version": "0.0.1"}


def test_a_manifest_states_the_triage_where_findings_are_unknown(two_sources):
    from radsight.data.manifest import read_manifest
    m = read_manifest(two_sources / "manifest.csv", two_sources / "images")
    assert m.abnormal().tolist() == [float(i % 3 == 0) for i in range(12)] and m.sources[:2] == ["s0", "s1"]
    assert m.select("test").sources == m.sources


def test_shortcut_audit_and_paired_triage_evaluation_write_their_figures(tiny_model, tiny_triage, two_sources,
                                                                         tmp_path):
    pytest.importorskip("sklearn", reason="the source probe needs scikit-learn")
    from radsight.evaluate.shortcuts import run_shortcut_audit
    from radsight.evaluate.triage import run_triage_evaluation
    from radsight.models.store import DEFAULT_LUNG_MODEL
    audit = run_shortcut_audit(two_sources / "manifest.csv", two_sources / "images", tmp_path / "a",
                               str(tiny_triage), None, DEFAULT_LUNG_MODEL)["shortcuts"]
    assert 0 <= audit["source_probe_accuracy"] <= 1 and audit["source_probe"]["majority_share"] == 0.5
    assert set(audit["auroc_by_source"]) == {"s0", "s1"} and 0 <= audit["cam_energy_in_lungs"] <= 1
    assert audit["age"]["children"] == 2 and audit["age"]["films_with_age"] == 12
    saved = json.loads((tmp_path / "a" / "metrics.json").read_text())["shortcuts"]
    assert saved["source_probe_accuracy"] == audit["source_probe_accuracy"]
    m = run_triage_evaluation(two_sources / "manifest.csv", two_sources / "images", tmp_path / "t", str(tiny_triage),
                              str(tiny_model), None, None, 50, DEFAULT_LUNG_MODEL)
    reference = m["triage"]["reference"]
    assert m["triage"]["n"] == 12 and len(reference["difference_ci"]) == 2
    assert m["adopt"] == (reference["difference_ci"][0] > 0)


def test_the_triage_evaluation_pairs_against_the_model_named(tiny_model, tiny_triage, two_sources, tmp_path):
    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.models.config import ModelConfig
    result = CliRunner().invoke(app, ["evaluate", "--task", "abnormal", "--model", str(tiny_triage), "--compare-with",
                                      str(tiny_model), "--manifest", str(two_sources / "manifest.csv"), "--images",
                                      str(two_sources / "images"), "--bootstrap", "20", "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    m = json.loads((tmp_path / "t" / "metrics.json").read_text())
    assert m["source"]["compared_with"] == ModelConfig.load(tiny_model).name and "reference" in m["triage"]
    refused = CliRunner().invoke(app, ["evaluate", "--task", "findings", "--model", str(tiny_model), "--compare-with",
                                       str(tiny_triage), "--manifest", str(two_sources / "manifest.csv"), "--images",
                                       str(two_sources / "images"), "--out", str(tmp_path / "f")])
    assert refused.exit_code != 0 and "--compare-with" in refused.output
