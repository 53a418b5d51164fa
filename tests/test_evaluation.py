import csv

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from radsight.data.manifest import Manifest
from radsight.data.predictions import read_predictions, write_predictions
from radsight.evaluate.calibration import BenchmarkSplitError, check_not_benchmark, choose_thresholds
from radsight.evaluate.metrics import auroc, weighted_auroc, youden_threshold
from radsight.evaluate.scores import Bootstrap, evaluate_scores, operating_point
from radsight.inputs.preprocess import InputSpec
from radsight.models.config import ModelConfig

from conftest import shared


def synthetic(n=300, k=3, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, k)) < 0.3).astype(np.float32)
    s = np.clip(y * 0.3 + rng.random((n, k)) * 0.7, 0, 1)
    return y, s


def test_auroc_agrees_with_sklearn_and_skips_unknown():
    y, s = synthetic()
    assert auroc(y[:, 0], s[:, 0]) == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    y2 = y[:, 0].copy()
    y2[:50] = np.nan
    assert auroc(y2, s[:, 0]) == pytest.approx(roc_auc_score(y[50:, 0], s[50:, 0]))
    assert np.isnan(auroc(np.zeros(10), np.arange(10.0)))


def test_bootstrap_resamples_whole_patients():
    ids = ["a", "a", "b", "c", "c", "c"]
    weights = Bootstrap(ids, n=50, seed=1).weights()
    assert weights.shape == (50, 6)
    assert (weights[:, 0] == weights[:, 1]).all() and (weights[:, 3] == weights[:, 5]).all()
    assert (weights[:, [0, 2, 3]].sum(axis=1) == 3).all()  # three patients drawn per resample


def test_weighted_auroc_equals_sklearn_on_the_resampled_set():
    y, s = synthetic(n=80, k=1)
    s = np.round(s[:, 0], 1)  # ties
    rng = np.random.default_rng(2)
    w = rng.integers(0, 3, (5, 80))
    w[0] = 1
    got = weighted_auroc(y[:, 0], s, w)
    for row, value in zip(w, got):
        idx = np.repeat(np.arange(80), row)
        assert value == pytest.approx(roc_auc_score(y[idx, 0], s[idx]))


def test_evaluate_reports_cis_missing_positives_and_paired_differences():
    y, s = synthetic(k=3)
    y[:, 2] = 0  # a finding with no positives
    ref = np.clip(s + np.random.default_rng(3).normal(0, 0.2, s.shape), 0, 1)
    m = evaluate_scores(["A", "B", "C"], y, s, {"A": 0.5}, Bootstrap([str(i // 2) for i in range(len(y))], n=200),
                        reference=ref)
    a = m["per_label"]["A"]
    assert a["auroc"] == pytest.approx(roc_auc_score(y[:, 0], s[:, 0]))
    assert a["auroc_ci"][0] < a["auroc"] < a["auroc_ci"][1]
    assert m["per_label"]["C"]["auroc"] is None and m["per_label"]["C"]["note"] == "no positives"
    assert m["mean_over"] == ["A", "B"]
    assert a["operating_point"]["tp"] + a["operating_point"]["fn"] == int(y[:, 0].sum())
    assert a["reference"]["difference"] == pytest.approx(a["auroc"] - a["reference"]["auroc"])
    assert m["mean_difference_ci"][0] <= m["mean_difference"] <= m["mean_difference_ci"][1]


def test_operating_point_counts():
    op = operating_point(np.array([1, 1, 0, 0, np.nan]), np.array([0.9, 0.2, 0.6, 0.1, 0.9]), 0.5)
    assert (op["tp"], op["fn"], op["fp"], op["tn"]) == (1, 1, 1, 1)
    assert op["sensitivity"] == op["specificity"] == op["ppv"] == 0.5
    w = np.array([[1, 1, 1, 1, 1], [2, 0, 1, 1, 1]])
    op = operating_point(np.array([1, 1, 0, 0, np.nan]), np.array([0.9, 0.2, 0.6, 0.1, 0.9]), 0.5, w)
    assert op["sensitivity_ci"] == [pytest.approx(0.5 + 0.025 * 0.5), pytest.approx(1 - 0.025 * 0.5)]


def test_thresholds_youden_or_prevalence_fallback():
    y, s = synthetic(k=2)
    y[:, 1] = 0
    y[:2, 1] = 1  # too few positives for Youden's J
    cfg = ModelConfig(name="m", version="1", architecture="x", labels=["A", "B"], input=InputSpec(64))
    thresholds, methods = choose_thresholds(cfg, y, s, prior=np.array([0.3, 0.1]))
    assert thresholds["A"] == pytest.approx(youden_threshold(y[:, 0], s[:, 0]))
    assert methods["A"].startswith("youden") and methods["B"].startswith("prevalence")
    assert np.mean(s[:, 1] >= thresholds["B"]) == pytest.approx(0.1, abs=0.01)


def test_calibration_refuses_benchmark_rows(tmp_path):
    m = Manifest(["a.png"], ["1"], ["benchmark"], np.zeros((1, 14), np.float32), tuple("x" * 14), tmp_path)
    with pytest.raises(BenchmarkSplitError):
        check_not_benchmark(m)


def test_predictions_csv_round_trip(tmp_path):
    probs = np.array([[0.1, 0.2], [0.3, 0.4]])
    write_predictions(tmp_path / "p.csv", ["a.png", "b.png"], ["Mass", "Nodule"], probs)
    back = read_predictions(tmp_path / "p.csv", ["b.png", "a.png", "c.png"], ["Nodule", "Mass"])
    np.testing.assert_allclose(back[:2], [[0.4, 0.3], [0.2, 0.1]])
    assert np.isnan(back[2]).all()


@pytest.mark.shared_data
def test_reference_chexnet_mean_auroc_on_benchmark(tmp_path):
    from radsight.evaluate.findings import run_evaluation
    bench = shared("nih-cxr14", "benchmark")
    ref = shared("nih-cxr14", "reference", "reproduce_chexnet_preds.csv")
    m = run_evaluation(bench / "manifest.csv", bench / "images", tmp_path, None, ref, None, None, 50)
    assert m["mean_auroc"] == pytest.approx(0.780, abs=5e-4)
    assert m["per_label"]["Cardiomegaly"]["auroc"] == pytest.approx(0.936, abs=5e-4)
    assert (tmp_path / "report.md").read_text().count("|") > 50


def test_iou_iobb_and_pointing():
    from radsight.evaluate.localization import iobb, iou, localization_summary, pointing_hit
    truth = (10, 10, 20, 20)
    assert iou(truth, truth) == 1 and iou(truth, (40, 40, 5, 5)) == 0
    assert iou(truth, (20, 10, 20, 20)) == pytest.approx(200 / 600)
    assert iobb(truth, (15, 15, 5, 5)) == 1.0  # predicted box inside the truth
    heat = np.zeros((10, 10))
    heat[2, 2] = 1  # centre at (25, 25) on a 100x100 image
    assert pointing_hit(heat, truth, 100, 100) and not pointing_hit(heat, (50, 50, 10, 10), 100, 100)
    s = localization_summary([{"finding": "Mass", "truth": truth, "predicted": [(12, 12, 20, 20)], "pointing": True},
                              {"finding": "Mass", "truth": truth, "predicted": [], "pointing": False}])
    assert s["Mass"]["boxes"] == 2 and s["Mass"]["iou"]["0.5"] == 0.5 and s["Mass"]["iou"]["0.7"] == 0.0
    assert s["overall"]["pointing_game"] == 0.5


def test_reliability_and_ece():
    from radsight.evaluate.metrics import reliability
    s = np.array([0.05, 0.05, 0.95, 0.95])
    perfect = reliability(np.array([0, 0, 1, 1.0]), s)
    assert perfect["ece"] == pytest.approx(0.05)
    wrong = reliability(np.array([1, 1, 0, 0.0]), s)
    assert wrong["ece"] == pytest.approx(0.95) and sum(wrong["count"]) == 4


def test_manifest_boxes_and_aliases(tmp_path):
    from radsight.core import FINDINGS
    from radsight.data.manifest import read_manifest
    write_csv(tmp_path / "m.csv", [["image", "patient_id", "split", *FINDINGS, "bboxes"],
                                   ["a.png", 1, "val", *[0] * 14, "Infiltrate:1,2,3,4;Mass:5,6,7,8"],
                                   ["b.png", 2, "val", *[""] * 14, ""]])
    m = read_manifest(tmp_path / "m.csv", tmp_path)
    assert m.boxes == [{"Infiltration": [(1, 2, 3, 4)], "Mass": [(5, 6, 7, 8)]}, {}]
    assert np.isnan(m.labels[1]).all() and np.isnan(m.abnormal()[1])


def test_evaluate_command_with_a_model_writes_report_plots_and_localization(tmp_path, tiny_model):
    from PIL import Image
    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.core import FINDINGS

    from conftest import chest_phantom
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    rows = [["image", "patient_id", "split", *FINDINGS, "bboxes"]]
    for i in range(30):
        Image.fromarray(np.round(chest_phantom(128, 128, seed=i) * 255).astype(np.uint8)).save(tmp_path / "img" / f"{i}.png")
        labels = [int(v) for v in rng.random(14) < 0.4]
        rows.append([f"{i}.png", f"p{i // 3}", "test", *labels, "Effusion:10,20,40,50" if i < 3 else ""])
    write_csv(tmp_path / "m.csv", rows)
    result = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_model), "--manifest", str(tmp_path / "m.csv"),
                                      "--images", str(tmp_path / "img"), "--out", str(tmp_path / "ev"),
                                      "--bootstrap", "50"])
    assert result.exit_code == 0, result.output
    assert "scoring: 30 to do" in result.output and "scoring: 30/30 done in" in result.output  # not a terminal
    import json
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["source"]["images"] == 30 and m["localization"]["Effusion"]["boxes"] == 3
    assert "triage" in m and m["per_label"]["Effusion"]["operating_point"]["threshold"] == 0.0
    for name in ("report.md", "roc.png", "reliability.png", "predictions.csv"):
        assert (tmp_path / "ev" / name).stat().st_size > 0


def write_csv(path, rows):
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def test_evaluate_compares_explanation_methods_and_measures_robustness(tmp_path, tiny_model):
    from PIL import Image
    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.core import FINDINGS
    from radsight.evaluate.robustness import PERTURBATIONS
    from radsight.explain import METHODS

    from conftest import chest_phantom
    pytest.importorskip("torch", reason="gradient methods and attacks need radsight[train]")
    rng = np.random.default_rng(1)
    (tmp_path / "img").mkdir()
    rows = [["image", "patient_id", "split", *FINDINGS, "bboxes"]]
    for i in range(12):
        Image.fromarray(np.round(chest_phantom(96, 96, seed=i) * 255).astype(np.uint8)).save(tmp_path / "img" / f"{i}.png")
        rows.append([f"{i}.png", f"p{i}", "test", *[int(v) for v in rng.random(14) < 0.4],
                     "Effusion:10,20,40,50" if i < 2 else ""])
    write_csv(tmp_path / "m.csv", rows)
    result = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_model), "--manifest", str(tmp_path / "m.csv"),
                                      "--images", str(tmp_path / "img"), "--out", str(tmp_path / "ev"),
                                      "--bootstrap", "20", "--explain", "all", "--robustness"])
    assert result.exit_code == 0, result.output
    import json
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    e = m["explanation_methods"]
    assert list(e["methods"]) == list(METHODS) and not e["unavailable"]
    for entry in e["methods"].values():
        assert entry["localization"]["overall"]["boxes"] == 2 and entry["ms_per_map"] > 0
        assert entry["faithfulness"]["maps"] == e["random"]["maps"] > 0
        assert 0 <= entry["faithfulness"]["deletion_auc"] <= 1
    r = m["robustness"]
    assert r["images"] == 12 and set(r["conditions"]) == {
        "clean", *(f"{a} {eps:g}" for eps in (0.5, 1, 2, 4) for a in ("FGSM", "PGD")), *PERTURBATIONS}
    report = (tmp_path / "ev" / "report.md").read_text()
    assert "**Explanation methods.**" in report and "| Grad-CAM++ |" in report and "| PGD ε=4 |" in report
    bad = CliRunner().invoke(app, ["evaluate", "--model", str(tiny_model), "--manifest", str(tmp_path / "m.csv"),
                                   "--images", str(tmp_path / "img"), "--out", str(tmp_path / "ev2"),
                                   "--explain", "cam,nope"])
    assert bad.exit_code == 2 and "unknown explanation method 'nope'" in bad.output
