"""int8 variants: quantized, measured against float32, registered only within their bounds."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import chest_phantom

pytest.importorskip("onnx", reason="quantizing needs radsight[train]")

from radsight.convert.quantize import QuantizationRefused, compare, refusal, register  # noqa: E402
from radsight.models.config import ModelConfig  # noqa: E402


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.stack([(chest_phantom(64, 64, seed=seed + i)[None] - 0.5) / 0.25 for i in range(n)]).astype(np.float32)


def test_register_measures_and_stores_the_int8_model(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    cfg = ModelConfig.load(tiny_model)
    y = (np.random.default_rng(0).random((24, len(cfg.labels))) < 0.5).astype(float)
    out = register(cfg, _inputs(32, 0), "phantoms", _inputs(24, 100), y, [f"p{i}" for i in range(24)], "phantoms",
                   max_delta=0.5)
    assert out.name == "tiny-test-int8" and (out.directory / "model.onnx").is_file()
    saved = json.loads((out.directory / "config.json").read_text())
    q = saved["quantization"]
    assert q["source"] == "tiny-test" and q["source_sha256"] == cfg.sha256 and q["images"] == 32
    assert q["check"]["images"] == 24 and q["check"]["max_abs_dp"] <= 0.5 and q["check"]["cam_correlation"] > 0.9
    assert saved["labels"] == cfg.labels and saved["thresholds"] == cfg.thresholds
    import onnx
    ops = {n.op_type for n in onnx.load(str(out.directory / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    from radsight.core import Radiograph
    from radsight.pipeline.predictor import Predictor
    p = Predictor(out.name, lung_model=None, method="gradcam++")  # the outputs every method reads are kept
    assert p.predict(Radiograph(chest_phantom(), "x.png")).heatmaps


def test_a_model_moved_past_its_bound_is_refused_and_not_registered(tiny_model, tmp_path, monkeypatch):
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    cfg = ModelConfig.load(tiny_model)
    y = np.zeros((8, len(cfg.labels)))
    with pytest.raises(QuantizationRefused, match=r"max \|Δp\| .* > 1e-09"):
        register(cfg, _inputs(16, 0), "phantoms", _inputs(8, 50), y, [str(i) for i in range(8)], "phantoms",
                 max_delta=1e-9)
    assert not (tmp_path / "store" / "models").exists() or not any((tmp_path / "store" / "models").iterdir())


def test_refusal_reads_the_paired_auroc_interval():
    base = {"max_abs_dp": 0.01, "delta_mean_auroc": -0.02}
    assert refusal({**base, "delta_mean_auroc_ci": [-0.03, 0.01]}, 0.02) is None
    assert "excludes 0" in refusal({**base, "delta_mean_auroc_ci": [-0.03, -0.01]}, 0.02)


def test_a_two_view_model_is_refused_before_any_image_is_read(twoview_model, tmp_path):
    from typer.testing import CliRunner

    from radsight.cli import app
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,split\nmissing.png,train\n")
    result = CliRunner().invoke(app, ["models", "quantize", str(twoview_model), "--manifest", str(manifest),
                                      "--images", str(tmp_path), "--check-manifest", str(manifest),
                                      "--check-images", str(tmp_path)])
    assert result.exit_code != 0 and "single-view classifiers only" in result.output
    assert "Traceback" not in result.output


def test_compare_of_a_model_with_itself_is_exact(tiny_model):
    cfg = ModelConfig.load(tiny_model)
    y = (np.random.default_rng(1).random((10, len(cfg.labels))) < 0.5).astype(float)
    check = compare(cfg, cfg, _inputs(10, 7), y, [str(i) for i in range(10)], n_boot=50)
    assert check["max_abs_dp"] == 0 and check["delta_mean_auroc"] == 0 and check["cam_correlation"] == pytest.approx(1)


def test_cli_refuses_benchmark_calibration_images(tiny_model, tmp_path):
    import csv

    from PIL import Image
    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.core import FINDINGS
    (tmp_path / "img").mkdir()
    with open(tmp_path / "m.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "patient_id", "split", *FINDINGS])
        for i in range(20):
            Image.fromarray((chest_phantom(64, 64, seed=i) * 255).astype(np.uint8)).save(tmp_path / "img" / f"{i}.png")
            w.writerow([f"{i}.png", i, "benchmark" if i < 10 else "train", *[i % 2] * 14])
    args = ["models", "quantize", str(tiny_model), "--manifest", str(tmp_path / "m.csv"), "--images",
            str(tmp_path / "img"), "--check-manifest", str(tmp_path / "m.csv"), "--check-images", str(tmp_path / "img"),
            "--cache-dir", str(tmp_path / "store"), "--limit", "16"]
    bad = CliRunner().invoke(app, [*args, "--split", "benchmark"])
    assert bad.exit_code == 2 and "benchmark" in bad.output
    ok = CliRunner().invoke(app, [*args, "--check-split", "benchmark", "--max-delta", "1"])
    assert ok.exit_code == 0, ok.output
    assert "tiny-test-int8 ->" in ok.output and "mean AUROC" in ok.output
    refused = CliRunner().invoke(app, [*args, "--check-split", "benchmark", "--max-delta", "1e-9", "--name", "x"])
    assert refused.exit_code == 1 and "x refused: max |Δp|" in refused.output


def test_execution_providers_follow_the_device(monkeypatch):
    import onnxruntime as ort

    from radsight.runtime.onnx import execution_providers
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert execution_providers() == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="pip install onnxruntime-gpu"):
        execution_providers("cuda")
    monkeypatch.setattr(ort, "get_available_providers",
                        lambda: ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"])
    assert execution_providers("auto") == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    assert execution_providers("cpu") == ["CPUExecutionProvider"]
    with pytest.raises(ValueError, match="choose one of auto, cpu, cuda"):
        execution_providers("tpu")


def test_the_device_is_an_argument_of_every_session(tiny_model, monkeypatch):
    from radsight.pipeline.options import PredictorOptions
    monkeypatch.setenv("RADSIGHT_DEVICE", "cuda")  # the environment decides nothing: the options do
    predictor = PredictorOptions(model=str(tiny_model), device="cpu").predictor()
    sessions = [predictor.model, predictor.inputs.lungs.segmenter, *([predictor.views.session] if predictor.views else [])]
    assert all(s.session.get_providers() == ["CPUExecutionProvider"] for s in sessions)


def test_cli_device_cuda_without_a_gpu_is_a_clear_error(tiny_model, tmp_path, monkeypatch):
    import onnxruntime as ort
    from PIL import Image
    from typer.testing import CliRunner

    from radsight.cli import app
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    Image.fromarray((chest_phantom() * 255).astype(np.uint8)).save(tmp_path / "x.png")
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "x.png"), "--model", str(tiny_model), "--device",
                                      "cuda", "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "no GPU provider" in result.output


def _lung_check_set(root, count: int = 6):
    """Phantom films, a manifest (train and val rows) and as reference masks the float lung model's own lungs."""
    from PIL import Image

    from radsight.heads.anatomy import LungModel
    from radsight.inputs.preprocess import resize
    from radsight.io import load_image
    from radsight.models.store import DEFAULT_LUNG_MODEL
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    lungs, rows = LungModel(DEFAULT_LUNG_MODEL), ["image,split"]
    for i in range(count):
        name = f"film{i}.png"
        Image.fromarray((chest_phantom(256, 224, seed=i) * 255).astype(np.uint8)).save(root / "images" / name)
        image = load_image(root / "images" / name)
        mask = resize((lungs.segment(image).labels > 0).astype(np.float32), image.height, image.width) > 0.5
        Image.fromarray(mask.astype(np.uint8) * 255).save(root / "masks" / name)
        rows.append(f"{name},{'train' if i < count // 2 else 'val'}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


def test_a_lung_model_is_quantized_checked_by_dice_and_used_with_int8(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.models.store import DEFAULT_LUNG_MODEL, DEFAULT_VIEW_MODEL
    from radsight.pipeline.options import PredictorOptions
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    data = _lung_check_set(tmp_path / "set")
    args = ["models", "quantize", DEFAULT_LUNG_MODEL, "--manifest", str(data / "manifest.csv"), "--images",
            str(data / "images"), "--split", "train", "--limit", "16", "--check-manifest", str(data / "manifest.csv"),
            "--check-images", str(data / "images"), "--check-split", "val", "--name", "phantom-lungs-int8"]
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code == 2 and "--check-masks" in missing.output
    refused = CliRunner().invoke(app, [*args, "--check-masks", str(data / "masks"), "--max-dice-drop", "-1"])
    assert refused.exit_code == 1 and "refused" in refused.output and "Dice falls" in refused.output
    assert not (tmp_path / "store" / "models" / "phantom-lungs-int8").exists()
    done = CliRunner().invoke(app, [*args, "--check-masks", str(data / "masks"), "--max-dice-drop", "0.5"])
    assert done.exit_code == 0, done.output
    saved = json.loads((tmp_path / "store" / "models" / "phantom-lungs-int8" / "config.json").read_text())
    assert saved["quantization"]["check"]["dice_float"]["lungs"] > 0.9 and saved["quantization"]["images"] == 3
    with_int8 = PredictorOptions(int8=True).predictor()  # the shipped variant; a model without one stays
    assert with_int8.lungs.cfg.name == f"{DEFAULT_LUNG_MODEL}-int8" and with_int8.views.cfg.name == DEFAULT_VIEW_MODEL
    assert PredictorOptions().predictor().lungs.cfg.name == DEFAULT_LUNG_MODEL


def test_the_age_sex_check_of_a_model_against_itself_moves_nothing_and_other_tasks_are_refused(tmp_path):
    from dataclasses import replace

    from radsight.convert.quantize_helpers import Bounds, check_age_sex, register_helper
    from radsight.core import Radiograph
    from radsight.inputs.preprocess import prepare
    from radsight.models.config import NODULE_DETECTION
    from radsight.models.store import get_model
    cfg = get_model("radsight-age-sex-demo")
    x = np.stack([prepare(Radiograph(chest_phantom(256, 224, seed=i), f"{i}.png"), cfg.input)[0] for i in range(3)])
    figures, reason = check_age_sex(cfg, cfg, x, Bounds())
    assert reason is None and figures["max_abs_age_years"] == 0 and figures["max_abs_dp_female"] == 0
    with pytest.raises(ValueError, match="int8 variants with a check"):
        register_helper(replace(cfg, task=NODULE_DETECTION), x, "phantoms", lambda f, q: ({}, None), "phantoms")


def test_the_bone_check_reads_psnr_against_the_targets_and_refuses_past_its_bound(tmp_path):
    from PIL import Image

    from radsight.convert.quantize_helpers import Bounds, check_bone
    from radsight.data.pairs import Pair
    from radsight.models.store import DEFAULT_BONE_MODEL, get_model
    pairs = []
    for i in range(2):
        film = (chest_phantom(128, 128, seed=i) * 255).astype(np.uint8)
        Image.fromarray(film).save(tmp_path / f"{i}.png")
        Image.fromarray(np.clip(film.astype(int) - 8, 0, 255).astype(np.uint8)).save(tmp_path / f"{i}.soft.png")
        pairs.append(Pair(tmp_path / f"{i}.png", tmp_path / f"{i}.soft.png", str(i), "val"))
    cfg = get_model(DEFAULT_BONE_MODEL)
    figures, reason = check_bone(cfg, cfg, pairs, Bounds())
    assert reason is None and figures["images"] == 2 and figures["psnr_drop_db"] == 0 and figures["psnr_float_db"] > 20
    assert "mean PSNR falls" in check_bone(cfg, cfg, pairs, Bounds(max_psnr_drop=-1))[1]


def test_a_view_model_is_quantized_and_checked_by_its_decisions(tmp_path, monkeypatch):
    from PIL import Image
    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.models.store import DEFAULT_VIEW_MODEL
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    (tmp_path / "images").mkdir()
    rows = ["image,view,split"]
    for i in range(20):
        Image.fromarray((chest_phantom(96, 96, seed=i) * 255).astype(np.uint8)).save(tmp_path / "images" / f"{i}.png")
        rows.append(f"{i}.png,{'L' if i % 5 == 1 else 'PA'},{'train' if i < 16 else 'val'}")
    (tmp_path / "views.csv").write_text("\n".join(rows) + "\n")
    args = ["models", "quantize", DEFAULT_VIEW_MODEL, "--manifest", str(tmp_path / "views.csv"), "--images",
            str(tmp_path / "images"), "--limit", "16", "--check-manifest", str(tmp_path / "views.csv"),
            "--check-images", str(tmp_path / "images"), "--check-split", "val"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    check = json.loads((tmp_path / "store" / "models" / f"{DEFAULT_VIEW_MODEL}-int8" / "config.json").read_text())[
        "quantization"]["check"]
    assert check["images"] == 4 and check["laterals"] == 1 and check["decisions_changed"] == 0
    assert "max |ΔP(lateral)|" in CliRunner().invoke(app, ["models", "list"]).output


def test_int8_bone_views_come_from_the_shipped_variant_unless_a_channel_needs_the_float_model():
    from radsight.models.store import DEFAULT_BONE_MODEL
    from radsight.pipeline.options import PredictorOptions
    assert PredictorOptions(bone_views=True, int8=True).predictor().bone.cfg.name == f"{DEFAULT_BONE_MODEL}-int8"
    assert PredictorOptions(bone_views=True).predictor().bone.cfg.name == DEFAULT_BONE_MODEL
