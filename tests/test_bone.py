"""Bone suppression: the GAN learns on synthetic pairs, exports, runs in the pipeline without torch, is evaluated
against the identity baseline; Gusarev-format weights import with parity to their own forward pass."""
import csv
import json

import numpy as np
import pytest
from PIL import Image

from radsight.evaluate.image_quality import ssim

from conftest import bone_pair, chest_phantom, make_dicom

torch = pytest.importorskip("torch", reason="needs radsight[train]")

from radsight.train.bone import BoneTrainConfig, load_pairs, suppress, train_bone_suppression  # noqa: E402
from radsight.train.export import export_checkpoint, load_checkpoint  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def pair_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("pairs")
    (root / "images").mkdir()
    (root / "targets").mkdir()
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "target", "patient_id", "split", "kind"])
        for i in range(28):
            image, soft = bone_pair(SIZE, seed=i)
            name = f"{i:02d}.png"
            for folder, pixels in (("images", image), ("targets", soft)):
                Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(root / folder / name)
            split = "train" if i < 20 else "val" if i < 24 else "test"
            writer.writerow([name, name, f"p{i}", split, "synthetic"])
    return root


@pytest.fixture(scope="module")
def trained(pair_set, tmp_path_factory):
    out = tmp_path_factory.mktemp("bone-run")
    cfg = BoneTrainConfig(manifest=str(pair_set / "manifest.csv"), images=str(pair_set / "images"), out=str(out),
                          stages="32:60,64:200", crop=64, base_width=8, disc_width=8, threads=2,
                          checkpoint_every=50, lr_g=2e-3, lr_d=2e-3)
    return cfg, train_bone_suppression(cfg)


def test_training_lowers_l1_and_raises_ssim_on_held_out_pairs(pair_set, trained):
    from radsight.data.pairs import read_pairs, select
    cfg, best = trained
    x, y, _ = load_pairs(select(read_pairs(pair_set / "manifest.csv", pair_set / "images"), "test"), SIZE)
    net, _ = load_checkpoint(best)
    soft = suppress(net, x, cfg.spec).numpy()[:, 0]
    identity, target = x.numpy()[:, 0], y.numpy()[:, 0]
    l1_model, l1_identity = np.abs(soft - target).mean(), np.abs(identity - target).mean()
    ssim_model = np.mean([ssim(s, t) for s, t in zip(soft, target)])
    ssim_identity = np.mean([ssim(s, t) for s, t in zip(identity, target)])
    assert l1_model < 0.6 * l1_identity, (l1_model, l1_identity)
    assert ssim_model > ssim_identity, (ssim_model, ssim_identity)


def test_training_resumes_where_it_stopped(pair_set, tmp_path):
    cfg = dict(manifest=str(pair_set / "manifest.csv"), images=str(pair_set / "images"), stages="32:4,64:2",
               crop=64, base_width=4, disc_width=4, threads=1, checkpoint_every=2)
    train_bone_suppression(BoneTrainConfig(**cfg, out=str(tmp_path / "straight")))
    train_bone_suppression(BoneTrainConfig(**cfg, out=str(tmp_path / "resumed"), stop_after=4))
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["step"] == 4
    train_bone_suppression(BoneTrainConfig(**cfg, out=str(tmp_path / "resumed")))
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)
    for key in ("model", "discriminator"):
        for name in a[key]:
            torch.testing.assert_close(a[key][name], b[key][name], rtol=0, atol=0)


@pytest.fixture(scope="module")
def bone_model(trained, tmp_path_factory):
    _, best = trained
    return export_checkpoint(best, tmp_path_factory.mktemp("bone-model") / "synthetic-bone", "synthetic-bone", "0",
                             "test", "synthetic pairs")


def test_export_runs_without_torch_and_matches_it(bone_model, trained):
    from radsight.core import Radiograph
    from radsight.heads.bone import BoneModel
    cfg, best = trained
    image, _ = bone_pair(SIZE, seed=99)
    views = BoneModel(bone_model).views(Radiograph(pixels=image, source="x"))
    net, _ = load_checkpoint(best)
    expected = suppress(net, torch.from_numpy(image)[None, None], cfg.spec).numpy()[0, 0]
    assert np.abs(np.clip(expected, 0, 1) - views.soft_tissue).max() < 1e-4
    assert views.bone.shape == image.shape and 0 <= views.bone.min() and views.bone.max() <= 1


def test_analyze_writes_soft_tissue_and_bone_views_at_the_input_size(bone_model, tiny_model, tmp_path):
    from typer.testing import CliRunner

    from radsight.cli import app
    dicom = make_dicom(tmp_path / "study.dcm", chest_phantom(300, 260))
    result = CliRunner().invoke(app, ["analyze", str(dicom), "--model", str(tiny_model), "--bone-model",
                                      str(bone_model.directory), "--out", str(tmp_path / "out"), "--no-anatomy"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "study.json").read_text())
    assert [v["name"] for v in doc["views"]] == ["soft_tissue", "bone"]
    assert doc["views"][0]["model"]["name"] == "synthetic-bone"
    for view in doc["views"]:
        with Image.open(tmp_path / "out" / view["file"]) as im:
            assert im.size == (260, 300) and im.mode == "L"
    result = CliRunner().invoke(app, ["analyze", str(dicom), "--model", str(tiny_model), "--bone-model",
                                      str(bone_model.directory), "--no-bone-views", "--out", str(tmp_path / "o2"),
                                      "--no-anatomy"])
    assert json.loads((tmp_path / "o2" / "study.json").read_text())["views"] == []


def test_evaluate_bone_pairs_reports_model_and_identity_with_cis(bone_model, pair_set, tmp_path):
    from radsight.evaluate.bone import run_bone_evaluation
    from radsight.models.store import DEFAULT_LUNG_MODEL
    m = run_bone_evaluation(pair_set / "manifest.csv", pair_set / "images", None, tmp_path / "ev",
                            str(bone_model.directory), DEFAULT_LUNG_MODEL, "test", bootstrap=200)
    summary = m["summary"]["synthetic"]
    assert summary["images"] == 4
    d = summary["psnr_image"]["difference"]
    assert d["mean"] > 0 and d["ci"][0] <= d["mean"] <= d["ci"][1]
    assert summary["psnr_image"]["identity"]["mean"] == pytest.approx(
        np.mean([r["identity_psnr_image"] for r in m["per_image"]]))
    assert (tmp_path / "ev" / "report.md").is_file() and (tmp_path / "ev" / m["per_image"][0]["side_by_side"]).is_file()


def test_bone_evaluation_measures_psnr_inside_the_clavicles_in_and_outside_the_lungs(bone_model, pair_set, tmp_path):
    from radsight.evaluate.bone import run_bone_evaluation
    from radsight.models.store import DEFAULT_LUNG_MODEL
    yy, xx = np.mgrid[:SIZE, :SIZE] / SIZE
    shapes = {"right_lung": (xx - 0.3) ** 2 / 0.03 + (yy - 0.5) ** 2 / 0.1 < 1,
              "left_lung": (xx - 0.7) ** 2 / 0.03 + (yy - 0.5) ** 2 / 0.1 < 1,
              "right_clavicle": (np.abs(yy - 0.22) < 0.03) & (xx > 0.1) & (xx < 0.45),
              "left_clavicle": (np.abs(yy - 0.22) < 0.03) & (xx > 0.55) & (xx < 0.9)}
    for name, mask in shapes.items():
        (tmp_path / "anatomy" / name).mkdir(parents=True)
        for i in range(24, 28):
            Image.fromarray(np.uint8(mask * 255)).save(tmp_path / "anatomy" / name / f"p{i}.png")
    m = run_bone_evaluation(pair_set / "manifest.csv", pair_set / "images", None, tmp_path / "ev",
                            str(bone_model.directory), DEFAULT_LUNG_MODEL, "test", bootstrap=50,
                            anatomy=tmp_path / "anatomy")
    summary = m["summary"]["synthetic"]
    for region in ("clavicles-in-lungs", "clavicles-outside-lungs"):
        assert np.isfinite(summary[f"psnr_{region}"]["model"]["mean"]) and f"ssim_{region}" not in summary


def test_training_cli_on_pairs(pair_set, tmp_path):
    from typer.testing import CliRunner

    from radsight.cli import app
    result = CliRunner().invoke(app, ["train", "--task", "bone-suppression", "--manifest",
                                      str(pair_set / "manifest.csv"), "--images", str(pair_set / "images"),
                                      "--out", str(tmp_path / "run"), "--stages", "32:2,64:2", "--threads", "1"])
    assert result.exit_code == 0, result.output
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=False)
    assert state["architecture"] == "bone-generator" and state["task"] == "bone-suppression"


def _gusarev_reference(state: dict, x: torch.Tensor) -> torch.Tensor:
    """The publishers' forward pass, written from the paper's description: three 5x5 stride-2 convolutions,
    three transposed ones back, ReLU after every layer, then a sigmoid."""
    import torch.nn.functional as F
    w = {k.removeprefix("module."): v for k, v in state.items()}
    for i in (1, 2, 3):
        x = F.relu(F.conv2d(x, w[f"enc{i}.weight"], w[f"enc{i}.bias"], stride=2, padding=2))
    for i in (3, 2, 1):
        x = F.relu(F.conv_transpose2d(x, w[f"dec{i}.weight"], w[f"dec{i}.bias"], stride=2, padding=2,
                                      output_padding=1))
    return torch.sigmoid(x)


def test_gusarev_state_dict_imports_with_parity(tmp_path, monkeypatch):
    from radsight.convert.pull import import_file
    from radsight.heads.bone import BoneModel
    from radsight.io import load_image
    from radsight.train.bone_nets import GusarevAutoencoder
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "home"))
    torch.manual_seed(3)
    net = GusarevAutoencoder()
    for p in net.parameters():  # random weights that keep the signal alive through the ReLUs
        torch.nn.init.normal_(p, 0.02, 0.08)
    state = {f"module.{k}": v for k, v in net.state_dict().items()}  # saved from DataParallel
    torch.save({"model_state_dict": state, "epoch": 7}, tmp_path / "trained_network.tar")
    cfg = import_file("gusarev-bone", tmp_path / "trained_network.tar", "gusarev-test")
    assert cfg.task == "bone-suppression" and cfg.outputs == ["soft_tissue"]

    image, _ = bone_pair(300, seed=5)
    png = tmp_path / "film.png"
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(png)
    with Image.open(png) as im:  # the publisher's reading: 8-bit PNG, bilinear to 256 px, ToTensor
        x = torch.from_numpy(np.asarray(im.resize((256, 256), Image.Resampling.BILINEAR), np.float32) / 255)
    expected = _gusarev_reference(state, x[None, None])[0, 0].numpy()
    film = load_image(png)
    views = BoneModel(cfg).views(film)
    bone_small = BoneModel(cfg).model(x.numpy()[None, None], x.numpy()[None, None])[0, 0]
    assert np.abs((x.numpy() - bone_small) - expected).max() <= 1e-4
    assert views.soft_tissue.shape == film.pixels.shape


def test_classifier_that_reads_a_missing_bone_model_refuses_to_load(tiny_model, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from radsight.cli import app
    from radsight.models.config import ModelConfig
    from radsight.pipeline.predictor import Predictor
    folder = tmp_path / "enhanced"
    shutil.copytree(tiny_model, folder)
    cfg = ModelConfig.load(folder)
    cfg.input = type(cfg.input)(**{**cfg.input.__dict__, "sources": ("bone_suppressed",)})
    cfg.source_models = {"bone_suppressed": "radsight-bone-missing"}
    cfg.save(folder)
    with pytest.raises(ValueError, match="bone model radsight-bone-missing .* not installed"):
        Predictor(str(folder))
    dicom = make_dicom(tmp_path / "a.dcm")
    result = CliRunner().invoke(app, ["analyze", str(dicom), "--model", str(folder), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "radsight-bone-missing" in result.output
    assert "Traceback" not in result.output


def test_stages_never_go_above_the_films_resolution_and_bad_stages_are_refused():
    cfg = BoneTrainConfig(manifest="m", images="i", out="o", stages="128:3,512:2", native=200)
    assert cfg.schedule == [(128, 3), (192, 2)] and cfg.size == 192
    with pytest.raises(ValueError, match="multiples of 16"):
        BoneTrainConfig(manifest="m", images="i", out="o", stages="100:3").schedule
    with pytest.raises(ValueError, match="size:steps"):
        BoneTrainConfig(manifest="m", images="i", out="o", stages="128-3").schedule


def test_a_config_that_misstates_the_networks_input_is_refused_at_load(tiny_model, tmp_path):
    import shutil

    from radsight.models.config import ModelConfig
    from radsight.pipeline.predictor import Predictor
    folder = tmp_path / "wrong"
    shutil.copytree(tiny_model, folder)
    cfg = ModelConfig.load(folder)
    cfg.input = type(cfg.input)(**{**cfg.input.__dict__, "channels": 2})
    cfg.save(folder)
    with pytest.raises(ValueError, match="the network reads"):
        Predictor(str(folder))


def test_a_classifier_reads_only_the_bone_model_it_was_trained_with(tiny_model, tiny_bone_model, tmp_path):
    import shutil

    from radsight.models.config import ModelConfig
    from radsight.pipeline.predictor import Predictor
    folder = tmp_path / "enhanced"
    shutil.copytree(tiny_model, folder)
    cfg = ModelConfig.load(folder)
    cfg.source_models = {"bone_suppressed": str(tiny_bone_model)}
    cfg.input = type(cfg.input)(**{**cfg.input.__dict__, "sources": ("bone_suppressed",)})
    cfg.save(folder)
    assert Predictor(str(folder), bone_views=True).bone.cfg.name == "tiny-bone"  # not the shipped default
    with pytest.raises(ValueError, match="reads the bone_suppressed view of"):
        Predictor(str(folder), bone_model="radsight-bone-gan")


def test_two_processes_train_the_gan_under_torchrun(pair_set, tmp_path):
    """Data parallel: each rank draws half of every batch; the generator and the discriminator are each averaged;
    rank 0 alone writes and prints."""
    from conftest import torchrun_train
    two = torchrun_train(2, "--task", "bone-suppression", "--manifest", str(pair_set / "manifest.csv"), "--images",
                         str(pair_set / "images"), "--out", str(tmp_path / "gan"), "--stages", "32:4",
                         "--batch-size", "4", "--threads", "1")
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert "2 processes" in two.stdout and two.stdout.count("chosen checkpoint:") == 1
    assert torch.load(tmp_path / "gan" / "last.pt", weights_only=False)["step"] == 4
