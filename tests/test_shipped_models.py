"""The shipped models still measure what their model cards say (needs ../shared/data; skipped without it)."""
import pytest

from conftest import shared

pytestmark = pytest.mark.shared_data


def test_default_classifier_benchmark_auroc_matches_its_card():
    import numpy as np

    from radsight.data.manifest import read_manifest
    from radsight.evaluate.calibration import label_matrix
    from radsight.evaluate.metrics import mean_auroc
    from radsight.pipeline.predictor import Predictor, score_manifest
    bench = shared("nih-cxr14", "benchmark")
    manifest = read_manifest(bench / "manifest.csv", bench / "images")
    predictor = Predictor(lung_model=None)
    scores, errors = score_manifest(predictor, manifest)
    assert not errors
    findings = predictor.cfg.findings
    y = label_matrix(manifest, findings)
    assert mean_auroc(y, scores[:, : len(findings)]) == pytest.approx(0.584, abs=5e-4)  # MODEL_CARD.md
    assert not np.isnan(scores).any()


@pytest.mark.parametrize("model, card_dice", [("radsight-lung-unet", 0.9352), ("radsight-lung-unet-int8", 0.9353)])
def test_lung_model_dice_on_the_older_pairs_matches_its_card(tmp_path, model, card_dice):
    """The float lung model and its int8 variant, each against its own MODEL_CARD.md."""
    from radsight.evaluate.lungs import run_segmentation_evaluation
    root = shared("lung-masks")
    m = run_segmentation_evaluation(root / "manifest.csv", root / "images", root / "masks", tmp_path, model, None)
    assert m["images"] == 14 and m["mean"]["dice"] == pytest.approx(card_dice, abs=5e-4)
    assert all(v["plausible"] for v in m["per_image"].values())


@pytest.mark.parametrize("model, card_psnr", [("radsight-bone-gan", 41.633), ("radsight-bone-gan-int8", 41.513)])
def test_bone_model_beats_the_identity_on_held_out_bse_jsrt_cases(tmp_path, model, card_psnr):
    from radsight.evaluate.bone import run_bone_evaluation
    root = shared("bone-suppression")
    m = run_bone_evaluation(root / "manifest.csv", root / "images", None, tmp_path, model,
                            "radsight-lung-unet", "test", bootstrap=200)
    psnr = m["summary"]["bse-jsrt"]["psnr_image"]
    assert psnr["model"]["mean"] == pytest.approx(card_psnr, abs=5e-3)  # MODEL_CARD.md
    assert psnr["identity"]["mean"] == pytest.approx(37.441, abs=5e-3)
    assert psnr["difference"]["ci"][0] > 0


def test_view_classifier_on_held_out_images_matches_its_card(tmp_path):
    from radsight.data.adapters import import_release
    from radsight.data.view_manifest import view_rows
    from radsight.evaluate.view import ViewModel, evaluate_views
    import_release("covid-chestxray", shared("multiview"), tmp_path / "mv.csv")
    t64 = shared("nih-cxr14", "train64")
    rows = [r for r in view_rows([(str(tmp_path / "mv.csv"), str(shared("multiview")))])
            if r.patient in ("20", "33", "77")]
    rows += [r for r in view_rows([(str(t64 / "manifest.csv"), str(t64 / "images"))]) if r.split == "val"]
    m = evaluate_views(ViewModel("radsight-view-cnn"), rows, tmp_path / "eval")["overall"]
    assert (m["laterals"], m["frontals"], m["accuracy"]) == (3, 139, 1.0)  # MODEL_CARD.md
    assert m["lateral_probabilities"] == pytest.approx([0.9997, 0.8185, 0.9568], abs=2e-4)


def test_age_sex_model_on_jsrt_test_films_matches_its_card(tmp_path):
    from radsight.data.demographics import read_demographics
    from radsight.evaluate.age_sex import evaluate_age_sex
    from radsight.models.store import get_model
    root = shared("jsrt-scr")
    rows = read_demographics(root / "manifest.csv", root / "images").split("test")
    m = evaluate_age_sex(get_model("radsight-age-sex-demo"), rows, tmp_path, bootstrap=50)
    assert m["age"]["films"] == 16 and m["age"]["mae"] == pytest.approx(8.343, abs=5e-3)  # MODEL_CARD.md
    assert m["age"]["uncorrected_mae"] == pytest.approx(7.478, abs=5e-3) and m["sex"]["auroc"] == pytest.approx(0.967, abs=5e-3)


def test_held_out_two_view_studies_get_fewer_than_half_of_their_findings(tmp_path):
    """The two-view model on patients 20, 33 and 77 (never trained on): 13, 14 and 13 of 14 findings were positive
    with a lateral before its thresholds were fitted for studies read with one (MODEL_CARD.md)."""
    import csv

    from radsight.data.adapters import import_release
    from radsight.evaluate.calibration import study_pairs
    from radsight.io import load_image
    from radsight.pipeline.predictor import Predictor
    root = shared("multiview")
    import_release("covid-chestxray", root, tmp_path / "all.csv")
    rows = list(csv.DictReader(open(tmp_path / "all.csv", newline="")))
    for r in rows:
        r["split"] = "test" if r["patient_id"] in ("20", "33", "77") else "train"
    with open(tmp_path / "mv.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    predictor = Predictor("radsight-twoview-demo", lung_model=None)
    pairs = study_pairs(tmp_path / "mv.csv", root, "test")
    counts = [sum(f.positive for f in predictor.predict_study([load_image(a), load_image(b)], a.name).findings)
              for a, b in pairs]
    assert len(pairs) == 3 and counts == [2, 4, 1]


def test_triage_model_benchmark_auroc_matches_its_card():
    """radsight-triage-256's triage AUROC on the NIH benchmark (never trained, tuned or calibrated on)."""
    from radsight.data.manifest import read_manifest
    from radsight.evaluate.metrics import auroc
    from radsight.pipeline.predictor import Predictor, score_manifest
    bench = shared("nih-cxr14", "benchmark")
    manifest = read_manifest(bench / "manifest.csv", bench / "images")
    scores, errors = score_manifest(Predictor("radsight-triage-256"), manifest)
    assert not errors
    assert auroc(manifest.abnormal(), scores[:, 0]) == pytest.approx(0.7330, abs=5e-4)  # MODEL_CARD.md
