"""The multi-structure anatomy model learns from partial labels: a set with every structure and a set with the
lungs alone (made in code); a lungs-only sample never teaches that the heart is background."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch", reason="needs radsight[train]")

from radsight.train.anatomy import (  # noqa: E402
    LUNGS,
    STRUCTURES,
    AnatomyTrainConfig,
    MaskSet,
    partial_loss,
    planes,
    read_samples,
    train_anatomy,
)
from radsight.train.unet import unet_from_onnx  # noqa: E402


def _ellipse(size: int, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] / size
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1


def _film(size: int, rng) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Dark lungs, a bright heart between them and bright clavicles across their tops, jittered."""
    dx, dy = rng.uniform(-0.03, 0.03, 2)
    parts = {"right_lung": _ellipse(size, 0.3 + dx, 0.5 + dy, 0.14, 0.3),
             "left_lung": _ellipse(size, 0.7 + dx, 0.5 + dy, 0.14, 0.3),
             "heart": _ellipse(size, 0.55 + dx, 0.68 + dy, 0.14, 0.12),
             "right_clavicle": _ellipse(size, 0.3 + dx, 0.2 + dy, 0.16, 0.06),
             "left_clavicle": _ellipse(size, 0.7 + dx, 0.2 + dy, 0.16, 0.06)}
    image = np.full((size, size), 0.6)
    image[parts["right_lung"] | parts["left_lung"]] = 0.2
    image[parts["heart"]] = 0.75
    image[parts["right_clavicle"] | parts["left_clavicle"]] = 0.9
    image += rng.normal(0, 0.03, image.shape)
    parts["right_lung"] &= ~parts["heart"]
    parts["left_lung"] &= ~parts["heart"]
    return np.clip(image, 0, 1), parts


def make_sets(root: Path, size: int = 64) -> list[MaskSet]:
    rng = np.random.default_rng(0)
    sets = []
    for name, count, full in (("full", 16, True), ("lungs", 24, False)):
        folder = root / name
        (folder / "images").mkdir(parents=True)
        rows = [["image", "split"]]
        for i in range(count):
            image, parts = _film(size, rng)
            file = f"{i}.png"
            Image.fromarray(np.uint8(image * 255)).save(folder / "images" / file)
            if full:
                for s in STRUCTURES:
                    (folder / "masks" / s).mkdir(parents=True, exist_ok=True)
                    Image.fromarray(np.uint8(parts[s] * 255)).save(folder / "masks" / s / file)
            else:
                (folder / "masks").mkdir(exist_ok=True)
                lungs = parts["right_lung"] | parts["left_lung"]
                Image.fromarray(np.uint8(lungs * 255)).save(folder / "masks" / file)
            rows.append([file, "val" if i % 4 == 0 else "train"])
        with open(folder / "manifest.csv", "w", newline="") as fh:
            csv.writer(fh).writerows(rows)
        sets.append(MaskSet(str(folder / "manifest.csv"), str(folder / "images"), str(folder / "masks")))
    return sets


def test_a_lungs_only_label_supervises_the_union_and_nothing_else():
    logits = torch.zeros(1, 5, 8, 8, requires_grad=True)
    target = torch.zeros(1, 6, 8, 8)
    target[0, LUNGS, :, :4] = 1
    known = torch.tensor([[False] * LUNGS + [True]])
    partial_loss(logits, target, known).backward()
    grad = logits.grad[0].abs().sum((-2, -1))
    assert grad[0] > 0 and grad[1] > 0 and (grad[2:] == 0).all()  # heart and clavicles untouched


def test_partial_labels_train_every_structure(tmp_path):
    sets = make_sets(tmp_path)
    train = read_samples(sets, "train", 64)
    assert len(train.names) == 30 and int(train.known[:, :LUNGS].all(1).sum()) == 12
    assert planes(train.labels)[:, LUNGS].sum() > 0 and not train.known[12:, 2].any()  # lungs-only: heart unknown
    cfg = AnatomyTrainConfig(sets=sets, out=str(tmp_path / "run"), input_size=64, base_width=6, iterations=240,
                             checkpoint_every=60, lr=1e-2)
    best = train_anatomy(cfg)
    history = torch.load(best, weights_only=False)["history"]
    final = max(history, key=lambda e: e["score"])["val_dice"]
    assert final["heart"] > 0.8 and final["right_lung"] > 0.8 and final["left_lung"] > 0.8, final
    assert final["right_clavicle"] > 0.5 and final["left_clavicle"] > 0.5 and final["lungs"] > 0.85, final


def test_a_lung_unets_onnx_weights_start_the_anatomy_model(tmp_path):
    from radsight.train.export import export_checkpoint
    from radsight.train.registry import build
    from radsight.train.seg import SegTrainConfig, train_segmentation
    lungs = make_sets(tmp_path)[1]
    lung = train_segmentation(SegTrainConfig(manifest=lungs.manifest, images=lungs.images, masks=lungs.masks,
                                             out=str(tmp_path / "seg"), input_size=64, base_width=4, iterations=20,
                                             checkpoint_every=20))
    model = export_checkpoint(lung, tmp_path / "lungs", "lungs", "0", "test", "phantoms")
    net = build("unet", in_chans=1, num_classes=5, base=4)
    assert "convolutions taken" in unet_from_onnx(net, model.weights_path)
    import onnxruntime as ort
    x = np.random.default_rng(0).standard_normal((1, 1, 64, 64)).astype(np.float32)
    (lung_logits,) = ort.InferenceSession(str(model.weights_path)).run(None, {"image": x})
    ours = net.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(ours[:, :2], np.repeat(lung_logits, 2, axis=1), atol=1e-3)  # both lungs start as it


def test_the_anatomy_model_trains_under_torchrun(tmp_path):
    """Two CPU processes (gloo) each draw their share of every batch; the main one writes the checkpoints."""
    from conftest import torchrun_train
    sets = make_sets(tmp_path / "sets")
    args = [a for s in sets for a in ("--manifest", s.manifest, "--images", s.images, "--masks", s.masks)]
    run = torchrun_train(2, "--task", "anatomy", *args, "--out", str(tmp_path / "ddp"), "--iterations", "20",
                         "--checkpoint-every", "10", "--batch-size", "4", "--input-size", "64")
    assert run.returncode == 0, run.stderr[-2000:]
    best = torch.load(tmp_path / "ddp" / "best.pt", map_location="cpu", weights_only=False)
    assert len(best["history"]) in (1, 2) and best["labels"] == list(STRUCTURES)
    assert set(best["history"][-1]["val_dice"]) >= {"heart", "lungs"}
