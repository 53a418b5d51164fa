"""Cost of each explanation method, against pytorch-grad-cam on the same network and inputs in the same run.

1. Per-image time of the whole analyze path (``Predictor.predict``) with each method, on the given model and
   radiographs; ratio against CAM, today's default.
2. The explanation alone (forward pass included) for ``--targets`` findings of each image: radsight's methods
   (closed forms on ONNX Runtime; guided ones through the graph run by torch) against pytorch-grad-cam's
   Grad-CAM, Grad-CAM++ and guided Grad-CAM (hooks and autograd on the torch module), on a random-weight
   network of ``--arch`` exported to ONNX; and how closely the two maps agree (Pearson r at the input's size).

Methods take turns image by image over ``--rounds`` rounds; medians are printed.

    pip install grad-cam   # the peer (radsight[parity])
    python benchmarks/explain_methods.py --data ../shared/data/nih-cxr14/benchmark/images --limit 40
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from radsight.core import FINDINGS
from radsight.explain import METHODS
from radsight.inputs.preprocess import InputSpec
from radsight.io import expand_inputs, load_image
from radsight.models.config import ModelConfig
from radsight.models.store import DEFAULT_MODEL, sha256_file
from radsight.pipeline.predictor import Predictor
from radsight.train.export import CLASSIFIER_OUTPUTS, export_onnx
from radsight.train.registry import build

PEER = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "guided-gradcam": "GradCAM+GuidedBackpropReLUModel"}


def _median_ms(values: list[float]) -> float:
    return 1000 * statistics.median(values)


def analyze_path(files: list[Path], model: str, rounds: int) -> None:
    predictors = {name: Predictor(model, method=name) for name in METHODS}
    images = [load_image(f) for f in files]
    times: dict[str, list[float]] = {name: [] for name in METHODS}
    for p in predictors.values():
        p.predict(images[0])  # warm-up
    for _ in range(rounds):
        for image in images:
            for name, p in predictors.items():
                start = time.perf_counter()
                p.predict(image)
                times[name].append(time.perf_counter() - start)
    cam = _median_ms(times["cam"])
    print(f"\n1. analyze path, model {model}, {len(images)} images x {rounds} rounds (median ms an image):")
    print("| method | ms an image | ratio to CAM |\n|---|---:|---:|")
    for name in METHODS:
        print(f"| {METHODS[name].title} | {_median_ms(times[name]):.1f} | {_median_ms(times[name]) / cam:.2f} |")


class _Peer(nn.Module):
    """The same network as a plain torch module for pytorch-grad-cam: features, the final ReLU as a module (the
    layer it hooks), global average pooling, the linear head."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.body = nn.Sequential(OrderedDict(features=net.features, relu=nn.ReLU()))
        self.head = net.classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x).mean(dim=(2, 3)))


def explanation_only(files: list[Path], arch: str, size: int, channels: int, n_targets: int, rounds: int) -> None:
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, GuidedBackpropReLUModel
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    torch.manual_seed(0)
    net = build(arch, num_classes=len(FINDINGS), in_chans=channels).eval()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        spec = InputSpec(size=size, channels=channels, mean=0.5, std=0.25)
        export_onnx(net, spec, folder / "model.onnx")
        ModelConfig(name=f"random-{arch}", version="0", architecture=arch, labels=list(FINDINGS), input=spec,
                    sha256=sha256_file(folder / "model.onnx"), outputs=CLASSIFIER_OUTPUTS).save(folder)
        radsight = Predictor(str(folder), lung_model=None, method="cam", alternates=list(METHODS))
        peer_net = _Peer(net).eval()
        layer = peer_net.body.relu
        peers = {"gradcam": GradCAM(peer_net, [layer]), "gradcam++": GradCAMPlusPlus(peer_net, [layer])}
        # a copy: it swaps the module's ReLUs and back, which would unhook the layer the CAMs read
        guided = GuidedBackpropReLUModel(copy.deepcopy(peer_net), device="cpu")
        xs = [radsight.classifier_input(load_image(f))[0] for f in files]
        labels = list(FINDINGS[:n_targets])
        times: dict[str, list[float]] = {k: [] for k in [*METHODS, *(f"peer {m}" for m in PEER)]}
        agreement: dict[str, list[float]] = {m: [] for m in PEER}

        def ours(method: str, x: np.ndarray) -> np.ndarray:
            m = next(e for e in radsight.explanations.all if e.name == method)
            out = radsight.model(x[None], m.reads)
            return np.stack([m.heat(r, size, size) for r in radsight.explanations.raw_maps(x, out, labels, m).values()])

        def theirs(method: str, x: np.ndarray) -> np.ndarray:
            batch = torch.from_numpy(np.repeat(x[None], n_targets, axis=0))
            targets = [ClassifierOutputTarget(i) for i in range(n_targets)]
            if method != "guided-gradcam":
                return peers[method](input_tensor=batch, targets=targets)
            coarse = peers["gradcam"](input_tensor=batch, targets=targets)
            detail = np.stack([np.abs(guided(batch[i:i + 1], target_category=i)).sum(axis=-1)
                               for i in range(n_targets)])
            return coarse * detail
        for method in METHODS:
            ours(method, xs[0])
        for _ in range(rounds):
            for x in xs:
                for method in METHODS:
                    start = time.perf_counter()
                    mine = ours(method, x)
                    times[method].append(time.perf_counter() - start)
                    if method in PEER:
                        start = time.perf_counter()
                        other = theirs(method, x)
                        times[f"peer {method}"].append(time.perf_counter() - start)
                        agreement[method] += [float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
                                              for a, b in zip(mine, other) if a.std() > 0 and b.std() > 0]
    print(f"\n2. explanation alone (forward included), random-weight {arch} at {size} px, {n_targets} findings an "
          f"image, {len(xs)} images x {rounds} rounds (median ms an image):")
    print("| method | radsight | pytorch-grad-cam | peer / radsight | maps' Pearson r (median) |\n|---|---:|---:|---:|---:|")
    for method in METHODS:
        mine = _median_ms(times[method])
        if method in PEER:
            other = _median_ms(times[f"peer {method}"])
            r = statistics.median(agreement[method]) if agreement[method] else float("nan")
            print(f"| {METHODS[method].title} | {mine:.1f} | {other:.1f} ({PEER[method]}) | {other / mine:.2f} | {r:.3f} |")
        else:
            print(f"| {METHODS[method].title} | {mine:.1f} | — | — | — |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder of radiographs (DICOM/PNG/JPEG)")
    parser.add_argument("--limit", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--model", default=DEFAULT_MODEL, help="model of the analyze-path measurement")
    parser.add_argument("--arch", default="densenet121", help="network of the explanation-only measurement")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--targets", type=int, default=3, help="findings explained an image")
    args = parser.parse_args()
    files = expand_inputs([args.data])[: args.limit]
    if not files:
        raise SystemExit(f"no images under {args.data}")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    analyze_path(files, args.model, args.rounds)
    explanation_only(files, args.arch, args.size, args.channels, args.targets, args.rounds)


if __name__ == "__main__":
    main()
