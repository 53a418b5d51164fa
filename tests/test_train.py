"""Training, resume, export and CAM parity (needs radsight[train])."""
import csv

import numpy as np
import pytest
from PIL import Image

from conftest import chest_phantom
from radsight.core import FINDINGS

torch = pytest.importorskip("torch", reason="needs radsight[train]")
ort = pytest.importorskip("onnxruntime")

from radsight.train.export import export_checkpoint, load_checkpoint  # noqa: E402
from radsight.train.loop import TrainConfig, masked_bce, train  # noqa: E402


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("set")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "patient_id", "split", *FINDINGS])
        for i in range(24):
            img = chest_phantom(64, 64, seed=i)
            Image.fromarray(np.round(img * 255).astype(np.uint8)).save(root / "images" / f"{i:03d}.png")
            labels = [int(v) for v in rng.random(len(FINDINGS)) < 0.3]
            labels[1] = "" if i == 3 else labels[1]  # an unknown label
            writer.writerow([f"{i:03d}.png", f"p{i // 2}", "val" if i >= 18 else "train", *labels])
    return root


def config(tiny_set, out, **kw):
    return TrainConfig(manifest=str(tiny_set / "manifest.csv"), images=str(tiny_set / "images"), out=str(out),
                       epochs=2, batch_size=8, threads=1, **kw)


def test_resumed_run_equals_uninterrupted_run(tiny_set, tmp_path):
    train(config(tiny_set, tmp_path / "straight"))
    train(config(tiny_set, tmp_path / "resumed", stop_after=1))
    assert torch.load(tmp_path / "resumed" / "last.pt", weights_only=False)["epoch"] == 0
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
    logits, cams = ort.InferenceSession(str(cfg.weights_path)).run(None, {"image": x})
    expected = net(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-5)
    assert cams.shape == (5, len(cfg.labels), 8, 8)
    bias = net.classifier.bias.detach().numpy()
    np.testing.assert_allclose(cams.mean(axis=(2, 3)) + bias, logits, atol=1e-5)
