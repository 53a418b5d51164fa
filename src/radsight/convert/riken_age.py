"""torchxrayvision's RIKEN age model (Ieki et al. 2022) as a radsight age model.

The publisher ships a TorchScript archive (a SENet-154 at 320 px). It holds its own code, so it is loaded with
``torch.jit.load`` (TorchScript runs no Python) and exported with the TorchScript exporter, the publisher's
preprocessing in the graph: one channel in torchxrayvision's [-1024, 1024] (radsight's ``xrv_input`` contract)
repeated to three, bilinear to 320 px, rescaled to [0, 1] and ImageNet-normalised. Output ``age`` (N, 1) in years.
The model estimates no sex, and no bias correction is fitted for it here (``fitted`` is empty: estimates as the
publisher's). It was trained on NIH films: its figures on NIH images are not independent.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from radsight.convert.checks import ImportFailed, check_export
from radsight.io.atomic import atomic_write
from radsight.models.catalog import Published
from radsight.models.config import AGE_SEX, ModelConfig
from radsight.models.store import sha256_file

NATIVE = 320


class XrvAge(nn.Module):
    """The publisher's ``AgeModel.forward`` around its scripted network."""

    def __init__(self, scripted: torch.jit.ScriptModule):
        super().__init__()
        self.model = scripted
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x.repeat(1, 3, 1, 1), size=(320, 320), mode="bilinear", align_corners=False)  # NATIVE
        return self.model(((x + 1024) / 2048 - self.mean) / self.std)


def load_scripted(file: Path) -> torch.jit.ScriptModule:
    try:
        return torch.jit.load(str(file), map_location="cpu").eval()
    except Exception as exc:  # not a TorchScript archive, or a damaged one: one message naming the file
        raise ImportFailed(f"{file}: not a readable TorchScript archive ({type(exc).__name__}: {exc})") from exc


def export_scripted(module: nn.Module, size: int, path: Path) -> None:
    """A module around a TorchScript network, scripted whole and exported by the TorchScript exporter (the
    graph capture of ``torch.export`` cannot enter a ScriptModule); dynamic batch axis."""
    scripted = torch.jit.script(module.eval())
    image = torch.zeros(1, 1, size, size)

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():  # the exporter's deprecation notice, here only
            warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, UserWarning))
            torch.onnx.export(scripted, (image,), str(tmp), input_names=["image"], output_names=["age"],
                              opset_version=18, dynamo=False, dynamic_axes={"image": {0: "batch"}, "age": {0: "batch"}})
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, write)


def import_riken_age(file: Path, out: Path, name: str, published: Published, provenance: dict) -> ModelConfig:
    wrapped = XrvAge(load_scripted(file)).eval()
    spec = published.input
    with torch.no_grad():
        try:
            probe = wrapped(torch.zeros(1, 1, spec.size, spec.size))
        except Exception as exc:  # a TorchScript network of another contract fails inside its own code
            raise ImportFailed(f"{file}: does not take a (N, 3, {NATIVE}, {NATIVE}) image ({exc})") from exc
    if tuple(probe.shape) != (1, 1):
        raise ImportFailed(f"{file}: gives {tuple(probe.shape)}, not one age (N, 1)")
    export_scripted(wrapped, spec.size, out / "model.onnx")
    check_export(wrapped, None, spec, out / "model.onnx", "age")
    cfg = ModelConfig(name=name, version="imported", architecture=published.architecture, labels=["age"], input=spec,
                      task=AGE_SEX, outputs=["age"], sha256=sha256_file(out / "model.onnx"),
                      license=published.license, training_data=published.training_data, model_card="",
                      provenance=provenance, directory=out)
    cfg.save(out)
    return cfg
