"""Imported publishers' models agree with the publishers' own code: their reader, preprocessing and forward.

Each test builds the publisher's model class with random weights (BatchNorm statistics set on real-looking
images and the head scaled, so probabilities are spread out rather than saturated), saves it in the
publisher's file format, imports it with radsight and compares probabilities: max |difference| <= 1e-4.
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import SHARED_DATA, chest_phantom, corpus_file

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision", reason="parity tests need radsight[parity] (torchvision)")
xrv = pytest.importorskip("torchxrayvision", reason="parity tests need radsight[parity] (torchxrayvision)")

from radsight.heads.triage import threshold_scaled  # noqa: E402
from radsight.io import load_image  # noqa: E402
from radsight.models import catalog  # noqa: E402
from radsight.pipeline.predictor import Predictor  # noqa: E402

TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[str]:
    """Images neither model has seen: a non-square phantom PNG, a real CR DICOM and benchmark PNGs if present."""
    folder = tmp_path_factory.mktemp("parity-images")
    phantom = folder / "phantom.png"
    Image.fromarray((chest_phantom(400, 340, seed=3) * 255).astype(np.uint8)).save(phantom)
    paths = [str(phantom), corpus_file("RG1_UNCR.dcm")]
    bench = SHARED_DATA / "nih-cxr14" / "benchmark" / "images"
    if bench.is_dir():
        paths += [str(p) for p in sorted(bench.glob("*.png"))[:6]]
    return paths


def _randomise(net: torch.nn.Module, head: torch.nn.Linear, batch: torch.Tensor) -> None:
    """BatchNorm statistics from ``batch`` and a head scaled to logits of spread ~1.5 around 0."""
    gen = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.2, 0.2, generator=gen)
    net.train()
    with torch.no_grad():
        net(batch)
        net.eval()
        head.bias.zero_()
        logits = net(batch)
        head.weight.mul_(1.5 / float(logits.std()))
        head.bias.copy_(torch.randn(head.out_features, generator=gen) * 0.5)
    net.eval()


def _xrv_input(path: str, size: int) -> torch.Tensor:
    """torchxrayvision's documented pipeline: load_image, XRayCenterCrop, XRayResizer."""
    img = xrv.utils.load_image(path)
    img = xrv.datasets.XRayCenterCrop()(img)
    return torch.from_numpy(xrv.datasets.XRayResizer(size)(img))[None]


def _radsight_probs(model, path: str) -> dict[str, float]:
    prediction = Predictor(model, lung_model=None).predict(load_image(path), explain=())
    return {f.name: f.probability for f in prediction.findings}


def _save_at_publisher_path(cache, entry: catalog.Published, obj):
    """Where the publisher's loader looks for the file, given ``cache_dir``."""
    cache.mkdir(exist_ok=True)
    path = cache / entry.url.rsplit("/", 1)[1]
    torch.save(obj, path)
    return path


def test_torchxrayvision_densenet_matches_its_own_forward(images, tmp_path, monkeypatch):
    from radsight.convert.pull import import_file
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    entry = catalog.CATALOG["xrv-densenet121-res224-nih"]
    net = xrv.models.DenseNet()  # 18 outputs, as the published files
    _randomise(net, net.classifier, torch.cat([_xrv_input(p, 224) for p in images]))
    file = _save_at_publisher_path(tmp_path / "xrv", entry, net)  # a whole pickled model, as published

    publisher = xrv.models.DenseNet(weights="densenet121-res224-nih", cache_dir=str(tmp_path / "xrv"))
    cfg = import_file("xrv-densenet", file, entry.name)
    assert cfg.labels == entry.labels[:14] and cfg.thresholds == entry.operating_points()
    spread = []
    for path in images:
        ours = _radsight_probs(entry.name, path)
        with torch.no_grad():
            scaled = publisher(_xrv_input(path, 224))[0].numpy()  # op_norm: each threshold maps to 0.5
            publisher.op_threshs, publisher.apply_sigmoid = None, True
            probs = publisher(_xrv_input(path, 224))[0].numpy()
            publisher.op_threshs = torch.tensor(entry.thresholds)
        for i, label in enumerate(cfg.labels):
            assert abs(ours[label] - probs[i]) <= TOLERANCE, (path, label, ours[label], probs[i])
            assert abs(threshold_scaled(ours[label], cfg.threshold(label)) - scaled[i]) <= TOLERANCE
        spread.append(probs[:14])
    assert np.std(spread) > 0.05, "random weights gave saturated probabilities: the comparison would be vacuous"


def test_torchxrayvision_resnet_matches_its_own_forward(images, tmp_path, monkeypatch):
    from radsight.convert.pull import import_file
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    entry = catalog.CATALOG["xrv-resnet50-res512-all"]
    net = torchvision.models.resnet50(num_classes=18, weights=None)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    few = images[:3]
    _randomise(net, net.fc, torch.cat([_xrv_input(p, 512) for p in few]))
    file = _save_at_publisher_path(tmp_path / "xrv", entry, net.state_dict())  # published as a state dict
    publisher = xrv.models.ResNet(weights="resnet50-res512-all", cache_dir=str(tmp_path / "xrv"), apply_sigmoid=True)
    publisher.op_threshs = None
    cfg = import_file("xrv-resnet", file, entry.name)
    assert cfg.labels == catalog.XRV_LABELS
    for path in few:
        ours = _radsight_probs(entry.name, path)
        with torch.no_grad():
            probs = publisher(_xrv_input(path, 512))[0].numpy()
        assert max(abs(ours[label] - probs[i]) for i, label in enumerate(cfg.labels)) <= TOLERANCE


def _chexnet_input(path: str) -> torch.Tensor:
    """The CheXNet reproduction's pipeline: PIL RGB, Resize to 224, ToTensor, ImageNet Normalize."""
    t = torchvision.transforms
    pipeline = t.Compose([t.Resize((224, 224)), t.ToTensor(),
                          t.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    return pipeline(Image.open(path).convert("RGB"))[None]


def _old_style(state: dict) -> dict:
    """A DataParallel checkpoint of a wrapped torchvision DenseNet from before PyTorch 0.4's key names."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        for new, old in (("norm1", "norm.1"), ("relu1", "relu.1"), ("conv1", "conv.1"),
                         ("norm2", "norm.2"), ("relu2", "relu.2"), ("conv2", "conv.2")):
            key = key.replace(f".{new}.", f".{old}.")
        out["module.densenet121." + key.replace("classifier.", "classifier.0.")] = value
    return out


def test_chexnet_checkpoint_matches_torchvision(images, tmp_path, monkeypatch):
    from radsight.convert.importers import read_state_dict
    from radsight.convert.pull import import_file
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    pngs = [p for p in images if p.endswith(".png")]  # the reproduction reads PNGs only
    net = torchvision.models.densenet121(num_classes=14, weights=None)
    _randomise(net, net.classifier, torch.cat([_chexnet_input(p) for p in pngs]))
    plain, old = tmp_path / "plain.pth", tmp_path / "model.pth.tar"
    torch.save(net.state_dict(), plain)
    torch.save({"epoch": 3, "state_dict": _old_style(net.state_dict())}, old)
    a, b = read_state_dict(plain), read_state_dict(old)
    assert {k for k in a if not k.endswith("num_batches_tracked")} == set(b)
    assert all(torch.equal(a[k], b[k]) for k in b)
    cfg = import_file("chexnet", old, "chexnet-arnoweng")
    for path in pngs:
        ours = _radsight_probs(cfg.name, path)
        with torch.no_grad():
            probs = torch.sigmoid(net(_chexnet_input(path)))[0].numpy()
        assert max(abs(ours[label] - probs[i]) for i, label in enumerate(cfg.labels)) <= TOLERANCE


@pytest.mark.parametrize("method", ["cam", "gradcam++", "guided-gradcam"])
def test_imported_model_heatmaps_lie_in_its_centre_crop(tmp_path, monkeypatch, method):
    """Every explanation method works on imported models: closed forms from the outputs the import adds,
    gradients through the imported graph."""
    from radsight.convert.pull import import_file
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    net = xrv.models.DenseNet(num_classes=18)
    path = tmp_path / "w.pt"
    torch.save(net, path)
    cfg = import_file("xrv-densenet", path, "any-xrv")
    png = tmp_path / "wide.png"
    Image.fromarray((chest_phantom(300, 420) * 255).astype(np.uint8)).save(png)
    prediction = Predictor(cfg, lung_model=None, method=method).predict(load_image(png),
                                                                         explain=["Effusion", "Lung Opacity"])
    heat = prediction.heatmaps["Lung Opacity"]
    assert {"Effusion", "Lung Opacity"} <= set(prediction.heatmaps) and prediction.explanation == method
    assert prediction.classifier_crop == [60, 0, 300, 300]
    cols = heat.shape[1]
    assert heat[:, : int(cols * 55 / 420)].max() == 0 and heat[:, int(cols * 365 / 420) + 1:].max() == 0
    assert prediction.triage.threshold == 0.5  # no triage output: the scaled maximum over findings


def test_checkpoint_cannot_run_code_while_loading(tmp_path, monkeypatch):
    from radsight.convert.importers import ImportFailed, read_state_dict
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": Evil()}, path)
    with pytest.raises(ImportFailed, match="no weights"):
        read_state_dict(path)
    assert not marker.exists()


def test_wrong_format_is_refused_clearly(tmp_path, monkeypatch):
    from radsight.convert.importers import ImportFailed
    from radsight.convert.pull import import_file
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    path = tmp_path / "r.pt"
    torch.save(torchvision.models.resnet18(num_classes=18).state_dict(), path)
    with pytest.raises(ImportFailed, match="does not fit|no classifier"):
        import_file("xrv-densenet", path, "x")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ImportFailed, match="not a readable PyTorch checkpoint"):
        import_file("chexnet", tmp_path / "junk.pt", "y")
    assert not (tmp_path / "store" / "models" / "x").exists()


def test_torchxrayvision_anatomy_pspnet_matches_the_publishers_network(tmp_path, monkeypatch):
    """The publisher's PSPNet (built directly: its wrapper downloads weights), small stages, random weights and
    batch-norm statistics: radsight's imported model, preprocessing in its graph, gives the publisher's logits
    of the five structures it maps."""
    from torchxrayvision.baseline_models.chestx_det.ptsemseg.pspnet import pspnet

    from radsight.convert.pull import import_file
    from radsight.runtime.onnx import Segmenter
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    torch.manual_seed(0)
    net = pspnet(14, block_config=[1, 1, 1, 1]).eval()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "pspnet.pth")
    cfg = import_file("xrv-pspnet", tmp_path / "pspnet.pth", "xrv-pspnet")
    assert cfg.labels == ["right_lung", "left_lung", "heart", "right_clavicle", "left_clavicle"]
    pixels = torch.rand(1, 1, 512, 512)
    ours = Segmenter(cfg, 0, "cpu")(pixels.numpy())
    xrv_pixels = pixels * 2048 - 1024  # torchxrayvision's range for the same image
    normalise = torchvision.transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
    with torch.no_grad():  # the publisher's PSPNet.forward, less its download: repeat, rescale, normalise, net
        logits = net(normalise((xrv_pixels.repeat(1, 3, 1, 1) + 1024) / 2048))[:, [5, 4, 8, 1, 0]]
    theirs = torch.sigmoid(logits).numpy()  # the Segmenter gives probabilities
    assert np.abs(ours - theirs).max() <= 1e-4
    assert logits.std() > 1e-3  # the maps vary: the comparison is not vacuous


class _AgeContract(torch.nn.Module):
    """A network of the RIKEN age model's contract: (N, 3, 320, 320) ImageNet-normalised in, one age out."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 7, stride=4, padding=3)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean((2, 3))) * 100 + 50


def test_riken_age_model_matches_the_publishers_wrapper(images, tmp_path, monkeypatch):
    """torchxrayvision's AgeModel (its constructor finds the TorchScript file where it would have downloaded it)
    around a scripted network of the same contract with random weights: radsight's imported model, from the
    image file through its pixel contract and the ONNX graph, gives the publisher's age to 1e-4."""
    from torchxrayvision.baseline_models.riken import AgeModel

    from radsight.convert.pull import import_file
    from radsight.heads.age_sex import read_age_sex
    from radsight.inputs.preprocess import prepare
    from radsight.runtime.onnx import OnnxModel
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path / "store"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    torch.manual_seed(0)
    scripted = torch.jit.script(_AgeContract().eval())
    entry = catalog.CATALOG["xrv-riken-age"]
    where = tmp_path / "home" / ".torchxrayvision" / "models_data"
    where.mkdir(parents=True)
    scripted.save(str(where / entry.url.rsplit("/", 1)[1]))
    publisher = AgeModel().eval()
    cfg = import_file("xrv-riken-age", where / entry.url.rsplit("/", 1)[1], entry.name)
    assert cfg.task == "age-sex" and cfg.outputs == ["age"] and cfg.fitted == {}
    session, ages = OnnxModel(cfg), []
    for path in images:
        image = load_image(path)
        ours = session.run(prepare(image, cfg.input)[0][None])
        with torch.no_grad():
            theirs = float(publisher(_xrv_input(path, 320))[0, 0])
        assert abs(float(ours["age"][0, 0]) - theirs) <= TOLERANCE, (path, ours["age"], theirs)
        sections = read_age_sex(cfg, ours, image)
        assert sections["age"].estimate == pytest.approx(theirs, abs=TOLERANCE)  # no correction fitted
        assert sections["sex"].probability_female is None and "no sex" in sections["sex"].reason
        ages.append(theirs)
    assert np.std(ages) > 0.5, "the ages hardly vary: the comparison would be vacuous"
