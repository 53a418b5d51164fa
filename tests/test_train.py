"""Training, resume, export and CAM parity (needs radsight[train])."""
import numpy as np
import pytest
from PIL import Image

from conftest import chest_phantom, torchrun_train

torch = pytest.importorskip("torch", reason="needs radsight[train]")
ort = pytest.importorskip("onnxruntime")

from radsight.train.export import export_checkpoint, load_checkpoint  # noqa: E402
from radsight.train.loop import TrainConfig, masked_bce, train  # noqa: E402


def config(tiny_set, out, **kw):
    return TrainConfig(**{"manifest": str(tiny_set / "manifest.csv"), "images": str(tiny_set / "images"),
                          "out": str(out), "epochs": 2, "batch_size": 8, "threads": 1, **kw})


def test_resumed_run_equals_uninterrupted_run(tiny_set, tmp_path):
    train(config(tiny_set, tmp_path / "straight"))
    train(config(tiny_set, tmp_path / "resumed", stop_after=1))
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["round"] == 0
    train(config(tiny_set, tmp_path / "resumed"))
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_masked_bce_ignores_unknown_labels():
    logits = torch.tensor([[0.0, 5.0]])
    assert masked_bce(logits, torch.tensor([[1.0, float("nan")]])).item() == pytest.approx(np.log(2))


def test_export_matches_torch_and_cams_reproduce_logits(tiny_set, tmp_path):
    best = train(config(tiny_set, tmp_path / "run"))
    cfg = export_checkpoint(best, tmp_path / "model", "t", "0", "test", "synthetic")
    net, _ = load_checkpoint(best)
    x = np.random.default_rng(1).standard_normal((5, 1, 64, 64)).astype(np.float32)
    out = dict(zip(cfg.outputs, ort.InferenceSession(str(cfg.weights_path)).run(cfg.outputs, {"image": x})))
    logits, cams, features = out["logits"], out["cams"], out["features"]
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert cams.shape == (5, len(cfg.labels), 8, 8)
    bias = net.classifier.bias.detach().numpy()
    np.testing.assert_allclose(cams.mean(axis=(2, 3)) + bias, logits, atol=1e-5)
    # ``features`` are what the head reads: the out-of-distribution gate's view of the network
    np.testing.assert_allclose(features @ net.classifier.weight.detach().numpy().T + bias, logits, atol=1e-4)
    # the closed-form explanations' inputs: the feature map and the head's rows
    np.testing.assert_allclose(out["feature_map"].mean(axis=(2, 3)), features, atol=1e-6)
    np.testing.assert_allclose(out["head_weight"], net.classifier.weight.detach().numpy(), atol=0)


@pytest.fixture(scope="module")
def mask_set(tmp_path_factory):
    """Phantom radiographs with their two lung ellipses as masks."""
    root = tmp_path_factory.mktemp("masks")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    names = []
    for i in range(5):
        img = chest_phantom(96, 96, seed=i)
        Image.fromarray(np.round(img * 255).astype(np.uint8)).save(root / "images" / f"{i}.png")
        Image.fromarray(((img < 0.45) * 255).astype(np.uint8)).save(root / "masks" / f"{i}.png")
        names.append(f"{i}.png")
    (root / "manifest.csv").write_text("image,source\n" + "".join(f"{n},phantom\n" for n in names))
    return root


def test_segmentation_trains_resumes_and_exports(mask_set, tmp_path):
    from radsight.train.seg import SegTrainConfig, train_segmentation
    from radsight.train.unet import UNet
    cfg = dict(manifest=str(mask_set / "manifest.csv"), images=str(mask_set / "images"), masks=str(mask_set / "masks"),
               out=str(tmp_path / "seg"), holdout=["4.png"], input_size=64, base_width=4, iterations=4, batch_size=2,
               threads=1, checkpoint_every=2)
    train_segmentation(SegTrainConfig(**cfg, val=["3.png"], stop_after=2))
    assert torch.load(tmp_path / "seg" / "last.pt", weights_only=False)["history"][-1]["iteration"] == 2
    last = train_segmentation(SegTrainConfig(**cfg, val=["3.png"]))
    assert last.name == "best.pt"
    assert (tmp_path / "seg" / "holdout_dice.json").is_file()
    model = export_checkpoint(last, tmp_path / "model", "lungs", "0", "test", "phantoms")
    assert model.task == "lung-segmentation" and model.outputs == ["mask_logits"]
    state = torch.load(last, weights_only=False)
    net = UNet(base=4)
    net.load_state_dict(state["model"])
    x = np.random.default_rng(0).standard_normal((2, 1, 64, 64)).astype(np.float32)
    (logits,) = ort.InferenceSession(str(model.weights_path)).run(None, {"image": x})
    np.testing.assert_allclose(logits, net.eval()(torch.from_numpy(x)).detach().numpy(), atol=1e-4)

    from typer.testing import CliRunner

    from radsight.cli import app
    result = CliRunner().invoke(app, ["evaluate", "--masks", str(mask_set / "masks"), "--manifest",
                                      str(mask_set / "manifest.csv"), "--images", str(mask_set / "images"),
                                      "--lung-model", str(tmp_path / "model"), "--subset", "4.png",
                                      "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    import json
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert list(metrics["per_image"]) == ["4.png"] and 0 <= metrics["mean"]["dice"] <= 1
    assert (tmp_path / "ev" / "4.seg.png").is_file()


def test_segmentation_reads_mask_names_and_splits_from_the_manifest(mask_set, tmp_path):
    """Masks named in a ``mask`` column (not the image's name); splits choose what trains and what measures."""
    import shutil

    from radsight.train.seg import SegTrainConfig, mask_rows, train_segmentation
    masks = tmp_path / "renamed"
    masks.mkdir()
    splits = ["train", "train", "train", "val", "test"]
    for i in range(5):
        shutil.copy(mask_set / "masks" / f"{i}.png", masks / f"mask-{i}.png")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("image,mask,source,split\n" + "".join(f"{i}.png,mask-{i}.png,phantom,{s}\n"
                                                               for i, s in enumerate(splits)))
    cfg = SegTrainConfig(manifest=str(manifest), images=str(mask_set / "images"), masks=str(masks),
                         out=str(tmp_path / "seg"), input_size=64, base_width=4, iterations=2, batch_size=2,
                         threads=1, checkpoint_every=2)
    rows = mask_rows(cfg)
    assert (rows.train, rows.val, rows.holdout) == (["0.png", "1.png", "2.png"], ["3.png"], [])
    assert rows.mask_of["4.png"] == "mask-4.png"
    best = train_segmentation(cfg)
    model = export_checkpoint(best, tmp_path / "model", "lungs", "0", "test", "phantoms")
    from typer.testing import CliRunner

    from radsight.cli import app
    result = CliRunner().invoke(app, ["evaluate", "--masks", str(masks), "--manifest", str(manifest), "--images",
                                      str(mask_set / "images"), "--lung-model", str(model.directory), "--split", "test",
                                      "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    import json
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert list(metrics["per_image"]) == ["4.png"] and metrics["by_source"]["phantom"]["images"] == 1


def test_enhanced_inputs_train_export_and_predict(tiny_set, tiny_bone_model, tmp_path):
    from radsight.io import load_image
    from radsight.pipeline.predictor import Predictor
    sources = ("original", "lung_masked", "bone_suppressed")
    cfg = config(tiny_set, tmp_path / "run", sources=sources, bone_model=str(tiny_bone_model), epochs=1)
    best = train(cfg)
    assert (tmp_path / "run" / "inputs-train.pt").is_file()  # views built once, then cached
    x = torch.load(tmp_path / "run" / "inputs-train.pt", weights_only=True)["x"]
    assert x.shape[1:] == (3, 64, 64) and not torch.equal(x[:, 0], x[:, 2])
    assert (x[:, 1] <= x[:, 0] + 1e-6).all() and (x[:, 1] == 0).any()  # lung-masked: black outside the lungs
    model = export_checkpoint(best, tmp_path / "model", "enhanced", "0", "test", "synthetic")
    assert model.input.sources == sources and model.input.channels == 3
    assert model.source_models == {"lung_masked": "radsight-lung-unet", "bone_suppressed": str(tiny_bone_model)}
    p = Predictor(str(tmp_path / "model")).predict(load_image(tiny_set / "images" / "000.png"))
    assert len(p.findings) == 14 and set(p.views) == {"soft_tissue", "bone"}


def test_binary_pretraining_then_findings_from_it(tiny_set, tmp_path):
    from radsight.models.config import TRIAGE_LABEL
    from radsight.train.loop import init_weights
    from radsight.train.registry import build
    best = train(config(tiny_set, tmp_path / "abnormal", task="abnormal", epochs=1))
    state = torch.load(best, weights_only=False)
    assert state["labels"] == [TRIAGE_LABEL] and state["model"]["classifier.weight"].shape[0] == 1
    net = build("densenet-small", num_classes=15, in_chans=1)
    report = init_weights(net, best)
    assert "left at their initial values (classifier.bias, classifier.weight)" in report
    torch.testing.assert_close(net.state_dict()["features.conv0.weight"], state["model"]["features.conv0.weight"])
    findings = train(config(tiny_set, tmp_path / "findings", init_from=str(best), epochs=1))
    assert torch.load(findings, weights_only=False)["labels"][-1] == TRIAGE_LABEL


def test_training_errors_are_one_line(tiny_set, tmp_path):
    from typer.testing import CliRunner

    from radsight.cli import app
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    common = ["train", "--manifest", str(tiny_set / "manifest.csv"), "--images", str(tiny_set / "images"),
              "--out", str(tmp_path / "run"), "--epochs", "1"]
    for extra, says in ((["--init-from", str(garbage)], "not a readable checkpoint"),
                        (["--sources", "original,bones"], "sources must be"),
                        (["--architecture", "densenet-huge"], "unknown architecture")):
        result = CliRunner().invoke(app, common + extra)
        assert result.exit_code == 2 and says in result.output and "Traceback" not in result.output, result.output


def test_two_processes_under_torchrun_train_checkpoint_once_and_resume_on_one(tiny_set, tmp_path):
    """Data parallel on CPU (gloo): each process takes half of every batch; rank 0 alone writes; the checkpoint
    resumes in one process; the curve follows the one-process run's within noise."""
    from typer.testing import CliRunner

    from radsight.cli import app
    args = ["--manifest", str(tiny_set / "manifest.csv"), "--images", str(tiny_set / "images"), "--batch-size", "8",
            "--threads", "1"]
    two = torchrun_train(2, *args, "--out", str(tmp_path / "ddp"), "--epochs", "3", "--stop-after", "2")
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert two.stdout.count("best checkpoint:") == 1 and "2 processes" in two.stdout
    state = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)
    assert state["round"] == 1 and len(state["history"]) == 2
    resumed = CliRunner().invoke(app, ["train", *args, "--out", str(tmp_path / "ddp"), "--epochs", "3"])
    assert resumed.exit_code == 0 and "resuming after epoch 2 of 3" in resumed.output, resumed.output
    one = train(config(tiny_set, tmp_path / "one", epochs=3))
    ddp_history = torch.load(tmp_path / "ddp" / "last.pt", weights_only=False)["history"]
    one_history = torch.load(one.parent / "last.pt", weights_only=False)["history"]
    assert len(ddp_history) == 3
    for a, b in zip(ddp_history, one_history):
        assert abs(a["loss"] - b["loss"]) < 0.05  # the same global batches; only the augmentation streams differ


def test_mixed_precision_and_channels_last_train_on_a_cpu(tiny_set, tmp_path):
    """bf16 autocast and the NHWC layout (what GPUs train with) run here too; fp16 asks for a GPU."""
    train(config(tiny_set, tmp_path / "bf16", precision="bf16", channels_last=True, epochs=1))
    state = torch.load(tmp_path / "bf16" / "last.pt", weights_only=False)
    assert np.isfinite(state["history"][0]["loss"]) and all(v.dtype == torch.float32 for v in state["model"].values()
                                                           if v.is_floating_point())
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        train(config(tiny_set, tmp_path / "fp16", precision="fp16", device="cpu"))
    with pytest.raises(ValueError, match="--device tpu"):
        train(config(tiny_set, tmp_path / "tpu", device="tpu"))


def test_the_lung_segmenter_trains_data_parallel_under_torchrun(mask_set, tmp_path):
    """The lung task through the shared loop on two processes: each draws its half of every batch; one writes."""
    two = torchrun_train(2, "--task", "lung-segmentation", "--manifest", str(mask_set / "manifest.csv"), "--images",
                         str(mask_set / "images"), "--masks", str(mask_set / "masks"), "--out", str(tmp_path / "seg"),
                         "--input-size", "64", "--iterations", "4", "--batch-size", "2", "--checkpoint-every", "2",
                         "--val", "3.png", "--threads", "1")
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert "2 processes" in two.stdout and two.stdout.count("chosen checkpoint:") == 1
    state = torch.load(tmp_path / "seg" / "last.pt", weights_only=False)
    assert state["round"] == 1 and [h["iteration"] for h in state["history"]] == [2, 4]
