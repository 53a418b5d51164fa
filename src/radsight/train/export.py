"""Checkpoint -> ONNX model folder (model.onnx + config.json) that radsight runs without torch."""
from __future__ import annotations

from pathlib import Path

import torch

from radsight.models.config import ModelConfig
from radsight.models.store import sha256_file
from radsight.preprocess import InputSpec
from radsight.train.nets import DenseNet, DenseNetConfig, WithCams

OPSET = 18


def load_checkpoint(path: Path) -> tuple[DenseNet, dict]:
    state = torch.load(path, map_location="cpu", weights_only=False)
    net = DenseNet(DenseNetConfig(**{**state["net_config"], "block_config": tuple(state["net_config"]["block_config"])}))
    net.load_state_dict(state["model"])
    return net.eval(), state


def export_onnx(net: DenseNet, spec: InputSpec, path: Path) -> None:
    """Outputs ``logits`` (N, L) and ``cams`` (N, L, h, w); the batch axis is dynamic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    dummy = torch.zeros(1, spec.channels, spec.size, spec.size)
    tmp = path.with_suffix(".tmp")
    batch = torch.export.Dim("batch", min=1, max=4096)
    torch.onnx.export(WithCams(net.eval()), (dummy,), str(tmp), input_names=["image"],
                      output_names=["logits", "cams"], opset_version=OPSET, dynamo=True, verbose=False,
                      dynamic_shapes={"x": {0: batch}}, external_data=False)
    _strip_debug_info(tmp)
    tmp.replace(path)


def _strip_debug_info(path: Path) -> None:
    """Drop the exporter's per-node stack traces and module paths (they name the build machine's files)."""
    import onnx
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    model.graph.doc_string = ""
    onnx.save(model, str(path))


def export_checkpoint(checkpoint: Path, out: Path, name: str, version: str, license: str,
                      training_data: str) -> ModelConfig:
    """Write ``out/model.onnx`` and ``out/config.json`` (thresholds unset: run calibration next)."""
    net, state = load_checkpoint(checkpoint)
    spec = InputSpec(**state["input"])
    export_onnx(net, spec, out / "model.onnx")
    cfg = ModelConfig(name=name, version=version, architecture=state["architecture"], labels=list(state["labels"]),
                      input=spec, sha256=sha256_file(out / "model.onnx"), license=license,
                      training_data=training_data, directory=out)
    cfg.save(out)
    return cfg
