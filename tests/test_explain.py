"""Explanation methods: closed forms against autograd, the graph run by torch against ONNX Runtime, every method
through the predictor, and the install without torch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from radsight.core import Radiograph
from radsight.explain import METHODS, TORCH_FREE, Evidence, Target, get_method
from radsight.models.config import ModelConfig
from radsight.results.document import SCHEMA_VERSION

from conftest import chest_phantom

torch = pytest.importorskip("torch", reason="autograd comparisons need radsight[train]")
ort = pytest.importorskip("onnxruntime")

from radsight.explain.torch_graph import TorchGraph, as_tensor  # noqa: E402


def _evidence(model: Path, seed: int = 0) -> tuple[Evidence, list[Target], TorchGraph]:
    cfg = ModelConfig.load(model)
    x = np.random.default_rng(seed).standard_normal((1, 1, 64, 64)).astype(np.float32)
    session = ort.InferenceSession(str(model / "model.onnx"))
    out = dict(zip(cfg.outputs, session.run(cfg.outputs, {"image": x})))
    graph = TorchGraph(model / "model.onnx")
    outputs = {k: v if k == "head_weight" else v[0] for k, v in out.items()}
    targets = [Target(label, i) for i, label in enumerate(cfg.labels)]
    return Evidence(x[0], outputs, graph), targets, graph


def test_torch_graph_reproduces_onnx_runtime(tiny_model):
    evidence, _, graph = _evidence(tiny_model)
    out = graph(as_tensor(evidence.x)[None], outputs=["logits", "cams", "feature_map"])
    for name in ("cams", "feature_map"):
        np.testing.assert_allclose(out[name][0].detach().numpy(), evidence.outputs[name], atol=1e-5)


@pytest.mark.parametrize("arch,kwargs", [("resnet50", {"layers": (1, 1, 1, 1)}),
                                         ("densenet121", {"block_config": (1, 1, 1, 1)})])
def test_torch_graph_runs_every_exported_architecture(tmp_path, arch, kwargs):
    """ResNet (max-pool, residual adds, a head cut to some rows: GatherND) and DenseNet-121's stem and pools."""
    from radsight.inputs.preprocess import InputSpec
    from radsight.train.export import export_onnx
    from radsight.train.registry import build
    torch.manual_seed(0)
    net = build(arch, num_classes=5, in_chans=1, **kwargs).eval()
    export_onnx(net, InputSpec(size=64), tmp_path / "m.onnx", outputs=[0, 2, 4])
    x = np.random.default_rng(0).standard_normal((2, 1, 64, 64)).astype(np.float32)
    (expected,) = ort.InferenceSession(str(tmp_path / "m.onnx")).run(["logits"], {"image": x})
    got = TorchGraph(tmp_path / "m.onnx")(as_tensor(x))["logits"].detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_closed_forms_equal_autograd(tiny_model, method):
    """At the last feature map of a GAP + linear head the closed form is the autograd result, map for map."""
    evidence, targets, graph = _evidence(tiny_model)
    closed = get_method(method).maps(evidence, targets)
    by_autograd = get_method(method, layer=graph.feature_map_name()).maps(evidence, targets)
    assert closed.shape == by_autograd.shape == (len(targets), 8, 8)
    np.testing.assert_allclose(closed, by_autograd, rtol=1e-4, atol=1e-6 * np.abs(closed).max())


def test_gradients_in_closed_form_equal_autograd(tiny_model):
    from radsight.explain.gradients import autograd, closed_form
    evidence, targets, graph = _evidence(tiny_model, seed=3)
    a1, g1 = closed_form(evidence, targets)
    a2, g2 = autograd(evidence, targets, graph.feature_map_name())
    np.testing.assert_allclose(a1, a2, atol=1e-5)
    np.testing.assert_allclose(g1, g2, atol=1e-7)


def test_autograd_through_the_graph_equals_the_torch_module():
    """The graph's gradients are those of the network it was exported from (no hooks: retain_grad)."""
    from radsight.explain.gradients import autograd
    from radsight.inputs.preprocess import InputSpec
    from radsight.train.export import export_onnx
    from radsight.train.registry import build
    torch.manual_seed(1)
    net = build("densenet-small", num_classes=3, growth_rate=4, block_config=(1, 1), num_init_features=8).eval()
    path = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"radsight-grad-{os.getpid()}.onnx"
    export_onnx(net, InputSpec(size=32), path)
    try:
        x = torch.randn(1, 1, 32, 32)
        features = net.forward_features(x)
        features.retain_grad()
        net.forward_head(features)[0, 2].backward()
        graph = TorchGraph(path)
        a, g = autograd(Evidence(x[0].numpy(), {}, graph), [Target("c", 2)], graph.feature_map_name())
        np.testing.assert_allclose(a, features[0].detach().numpy(), atol=1e-5)
        np.testing.assert_allclose(g[0], features.grad[0].numpy(), atol=1e-7)
    finally:
        path.unlink(missing_ok=True)


def test_cam_and_closed_form_gradcam_agree_up_to_scale(tiny_model):
    """Grad-CAM at the last feature map is ReLU(CAM) / (h w): the same heatmap wherever CAM's minimum is <= 0."""
    evidence, targets, _ = _evidence(tiny_model)
    cams = get_method("cam").maps(evidence, targets)
    grad = get_method("gradcam").maps(evidence, targets)
    np.testing.assert_allclose(grad * 64, np.maximum(cams, 0), rtol=1e-6)
    for c, g in zip(cams, grad):
        if c.min() <= 0 < c.max():
            peak = METHODS["gradcam"]().heat(g, 8, 8)
            np.testing.assert_allclose(peak, np.maximum(c, 0) / c.max(), atol=1e-6)


def test_gradcam_plus_plus_counts_two_separate_regions():
    """Two separate blobs in two channels: Grad-CAM++ weighs each channel by the inverse of its own mass, so the
    small blob is not drowned by the large one as in Grad-CAM."""
    a = np.zeros((2, 8, 8))
    a[0, 1:6, 1:6] = 1.0  # a large region
    a[1, 6, 6] = 1.0  # a small one
    g = np.broadcast_to(np.array([1.0, 1.0])[None, :, None, None] / 64, (1, 2, 8, 8))
    from radsight.explain.gradcam import GradCAM
    from radsight.explain.gradcam_pp import GradCAMPlusPlus
    w_grad, w_pp = GradCAM().channel_weights(a, g), GradCAMPlusPlus().channel_weights(a, g)
    assert w_grad[0, 0] == w_grad[0, 1]
    assert w_pp[0, 1] > w_pp[0, 0]


def test_guided_relu_passes_positive_gradients_at_positive_inputs():
    from radsight.explain.torch_graph import _GuidedReLU
    x = torch.tensor([-1.0, 2.0, 3.0, -4.0], requires_grad=True)
    _GuidedReLU.apply(x).backward(torch.tensor([1.0, -1.0, 2.0, 5.0]))
    assert x.grad.tolist() == [0.0, 0.0, 2.0, 0.0]


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_makes_heatmaps_and_boxes_inside_the_image(tiny_model, tmp_path, method):
    from radsight.pipeline.predictor import Predictor
    from radsight.results.writer import write_results
    predictor = Predictor(str(tiny_model), lung_model=None, method=method, alternates=TORCH_FREE)
    image = Radiograph(pixels=chest_phantom(), source="phantom.png")
    p = predictor.predict(image, explain=["Mass", "Abnormal"])  # a finding, and the triage output
    assert p.explanation == method and set(p.heatmaps) == {"Effusion", "Mass", "Abnormal"}
    for heat in [*p.heatmaps.values(), *(h for m in p.alternates.values() for h in m.values())]:
        assert heat.dtype == np.float32 and 0 <= heat.min() and heat.max() <= 1
    for f in p.findings:
        for b in f.boxes:
            assert 0 <= b.x and 0 <= b.y and b.x + b.width <= image.width and b.y + b.height <= image.height
    doc = write_results([image], p, tmp_path, "phantom").document
    effusion = next(f for f in doc["findings"] if f["name"] == "Effusion")
    assert doc["explanation"] == method and doc["schema_version"] == SCHEMA_VERSION
    assert effusion["heatmaps"][method] == effusion["heatmap"]
    assert set(effusion["heatmaps"]) == {method, *TORCH_FREE}
    assert all((tmp_path / f).is_file() for f in effusion["heatmaps"].values())
    assert (tmp_path / doc["triage"]["heatmap"]).is_file() and "Abnormal" not in {f["name"] for f in doc["findings"]}


def test_a_layer_that_is_not_in_the_graph_is_named_with_the_choices(tiny_model):
    from radsight.pipeline.predictor import Predictor
    with pytest.raises(ValueError, match="no layer 'nope'; its layers: "):
        Predictor(str(tiny_model), lung_model=None, method="gradcam", layer="nope")
    with pytest.raises(ValueError, match="CAM reads the last feature map only"):
        get_method("cam", layer="relu_1")


def test_a_model_without_feature_outputs_cannot_run_gradcam_plus_plus(tiny_model, tmp_path):
    import shutil

    from radsight.explain import MissingExtra
    from radsight.pipeline.predictor import Predictor
    folder = shutil.copytree(tiny_model, tmp_path / "old")
    cfg = ModelConfig.load(folder)
    cfg.outputs = ["logits", "cams"]
    cfg.save(folder)
    Predictor(str(folder), lung_model=None, method="gradcam")  # its closed form reads cams only
    with pytest.raises(MissingExtra, match="no feature_map, head_weight output"):
        Predictor(str(folder), lung_model=None, method="gradcam++")


# Run first in a subprocess: an install without radsight[train] (torch and onnx cannot be imported).
WITHOUT_TORCH = """
import sys
class _NoTrainExtra:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "onnx"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, _NoTrainExtra())
"""


def test_without_torch_closed_forms_run_and_gradient_methods_say_what_to_install(tiny_model):
    """torch made unimportable: Grad-CAM++ works; guided Grad-CAM and a chosen layer name radsight[train]."""
    code = WITHOUT_TORCH + f"""
from radsight.core import Radiograph
from radsight.explain import MissingExtra
from radsight.pipeline.predictor import Predictor
import numpy as np
p = Predictor({str(tiny_model)!r}, lung_model=None, method="gradcam++").predict(
    Radiograph(np.random.default_rng(0).random((96, 80), dtype=np.float32), "x.png"))
assert p.explanation == "gradcam++" and "Effusion" in p.heatmaps
for kwargs in ({{"method": "guided-gradcam"}}, {{"method": "gradcam", "layer": "relu_1"}}):
    try:
        Predictor({str(tiny_model)!r}, lung_model=None, **kwargs)
    except MissingExtra as exc:
        assert "pip install 'radsight[train]'" in str(exc), exc
    else:
        raise AssertionError(kwargs)
assert "torch" not in sys.modules
print("ok")
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_cli_names_the_extra_for_gradient_methods_without_torch(tiny_model, tmp_path):
    code = WITHOUT_TORCH + ("from radsight.cli import app; "
                            "app(['analyze', sys.argv[1], '--model', sys.argv[2], '--no-anatomy', '--explain', 'guided-gradcam', "
            "'--out', sys.argv[3]])")
    from PIL import Image
    Image.fromarray((chest_phantom() * 255).astype(np.uint8)).save(tmp_path / "x.png")
    run = subprocess.run([sys.executable, "-c", code, str(tmp_path / "x.png"), str(tiny_model), str(tmp_path / "out")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "pip install 'radsight[train]'" in run.stderr and "Traceback" not in run.stderr


def _rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="reads the resident set from /proc")
def test_gradient_methods_hold_no_memory_across_200_images(tiny_model):
    from radsight.pipeline.predictor import Predictor
    predictor = Predictor(str(tiny_model), lung_model=None, method="guided-gradcam", alternates=["gradcam++"])
    rng = np.random.default_rng(0)
    images = [Radiograph(rng.random((96, 80), dtype=np.float32), f"{i}.png") for i in range(8)]
    for i in range(20):
        predictor.predict(images[i % 8], explain=["Mass", "Nodule"])
    before = _rss_mb()
    for i in range(200):
        predictor.predict(images[i % 8], explain=["Mass", "Nodule"])
    assert _rss_mb() - before < 25, f"resident set grew {_rss_mb() - before:.1f} MB over 200 images"


@pytest.mark.parametrize("method,peer", [("gradcam", "GradCAM"), ("gradcam++", "GradCAMPlusPlus")])
def test_closed_forms_match_pytorch_grad_cam(tmp_path, method, peer):
    """The same maps as pytorch-grad-cam (radsight[parity]) computes with hooks and autograd on the torch module,
    on the feature map's grid (the two differ after: each resizes and rescales its own way)."""
    grad_cam = pytest.importorskip("pytorch_grad_cam", reason="the peer comes with radsight[parity]")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    from torch import nn

    from radsight.inputs.preprocess import InputSpec
    from radsight.train.export import export_onnx
    from radsight.train.registry import build
    torch.manual_seed(2)
    net = build("densenet-small", num_classes=4, growth_rate=4, block_config=(2, 2), num_init_features=8).eval()
    with torch.no_grad():  # gradients well above the 1e-6 the peer adds to Grad-CAM++'s denominators
        net.classifier.weight.mul_(100)
    export_onnx(net, InputSpec(size=32), tmp_path / "model.onnx")

    class Peer(nn.Module):
        def __init__(self):
            super().__init__()
            self.features, self.relu, self.head = net.features, nn.ReLU(), net.classifier

        def forward(self, x):
            return self.head(self.relu(self.features(x)).mean(dim=(2, 3)))
    peer_net = Peer().eval()
    x = np.random.default_rng(5).standard_normal((1, 1, 32, 32)).astype(np.float32)
    names = ["logits", "cams", "feature_map", "head_weight"]
    out = dict(zip(names, ort.InferenceSession(str(tmp_path / "model.onnx")).run(names, {"image": x})))
    evidence = Evidence(x[0], {k: v if k == "head_weight" else v[0] for k, v in out.items()})
    targets = [Target(str(i), i) for i in range(4)]
    ours = get_method(method).maps(evidence, targets)
    cam = getattr(grad_cam, peer)(peer_net, [peer_net.relu])
    batch = torch.from_numpy(np.repeat(x, 4, axis=0))
    chosen = [ClassifierOutputTarget(i) for i in range(4)]
    cam(input_tensor=batch, targets=chosen)  # the peer's hooks keep the layer's activations and gradients
    a, g = (t[0].detach().numpy() for t in (cam.activations_and_grads.activations, cam.activations_and_grads.gradients))
    theirs = np.maximum(cam.get_cam_image(batch, peer_net.relu, chosen, a, g), 0)  # before its resize and rescale
    np.testing.assert_allclose(ours, theirs, rtol=5e-3, atol=1e-4 * theirs.max())  # the peer's eps, and no more


def test_cli_heatmaps_for_findings_below_threshold(tiny_model, tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from radsight.cli import app
    Image.fromarray((chest_phantom() * 255).astype(np.uint8)).save(tmp_path / "x.png")
    args = ["analyze", str(tmp_path / "x.png"), "--model", str(tiny_model), "--no-anatomy", "--allow-ood",
            "--explain", "gradcam++", "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(app, [*args, "--heatmaps-for", "Mass,Abnormal"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "x.json").read_text())
    mass = next(f for f in doc["findings"] if f["name"] == "Mass")
    assert not mass["positive"] and mass["heatmaps"] == {"gradcam++": "x.heatmap.Mass.png"}
    assert doc["triage"]["heatmap"] == "x.heatmap.Abnormal.png"
    bad = CliRunner().invoke(app, [*args, "--heatmaps-for", "Mass,Fracture"])
    assert bad.exit_code == 2 and "Fracture: not a label of tiny-test" in bad.output


def test_boxes_are_absent_when_the_map_is_too_coarse_to_localize():
    """The shipped 64-px model's 8x8 map: the heatmap is shown, no finding gets a box, and the JSON says why."""
    from radsight.explain.boxes import coarse_map
    from radsight.io import load_image
    from radsight.pipeline.predictor import Predictor

    from conftest import corpus_file
    assert coarse_map((16, 16)) is None and coarse_map((16, 16), (0.8, 0.9)) is not None
    assert "8x8 cells" in coarse_map((8, 8))
    prediction = Predictor().predict(load_image(corpus_file("RG1_UNCR.dcm")), explain=["Effusion", "Mass"])
    assert {"Effusion", "Mass"} <= prediction.heatmaps.keys()
    assert all(not f.boxes for f in prediction.findings)
    assert "8x8 cells" in prediction.boxes_withheld and "8x8 cells" in prediction.to_dict()["boxes_withheld"]
