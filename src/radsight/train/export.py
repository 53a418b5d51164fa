"""Checkpoint -> ONNX model folder (model.onnx + config.json) that radsight runs without torch."""
from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import torch

from radsight.inputs.preprocess import InputSpec
from radsight.io.atomic import atomic_write
from radsight.models.config import (
    AGE_SEX,
    BONE_SUPPRESSION,
    NODULE_DETECTION,
    SEGMENTATION,
    VIEW_CLASSIFICATION,
    ModelConfig,
)
from radsight.models.store import sha256_file
from radsight.train.age_net import AgeSexOutputs
from radsight.train.nets import WithCams
from radsight.train.registry import from_checkpoint
from radsight.train.twoview import TwoViewDenseNet, TwoViewWithCams

OPSET = 18


def load_checkpoint(path: Path) -> tuple[torch.nn.Module, dict]:
    """The network a checkpoint holds (its registered architecture, its weights) and the checkpoint."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    return from_checkpoint(state), state


# feature_map and head_weight are read only by the explanation methods that need them (runtime.EXPLAIN_OUTPUTS).
CLASSIFIER_OUTPUTS = ["logits", "cams", "features", "feature_map", "head_weight"]


def export_onnx(net: torch.nn.Module, spec: InputSpec, path: Path, outputs: list[int] | None = None) -> None:
    """A classifier: outputs ``logits`` (N, L) and ``cams`` (N, L, h, w), for the ``outputs`` rows of its head, and
    the outputs :func:`add_feature_outputs` adds. A two-view network reads ``image`` (the frontal), ``lateral``
    and ``lateral_present`` (N, 1); its CAMs are the joined map (N, L, h, 2w), frontal half first."""
    if isinstance(net, TwoViewDenseNet):
        export_module(TwoViewWithCams(net.eval(), outputs), spec, path, ["logits", "cams"], TWO_VIEW_INPUTS)
    else:
        export_module(WithCams(net.eval(), outputs), spec, path, ["logits", "cams"])
    add_feature_outputs(path)


def add_feature_outputs(path: Path) -> list[str]:
    """Add to a classifier's graph what the out-of-distribution gate and the closed-form explanations read:
    ``features`` (N, K), the spatial mean of the feature map the CAMs are made from; ``feature_map``
    (N, K, h, w), that map itself; ``head_weight`` (L, K), the rows of the linear head the CAMs use.

    Works on any graph whose ``cams`` output is an Einsum of the feature map and the head's weights, as
    :func:`export_onnx` writes them; outputs the graph has already are left as they are. Returns those added."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    model = onnx.load(str(path))
    graph = model.graph
    have = {o.name for o in graph.output}
    source = next((n for n in graph.node if "cams" in n.output and n.op_type == "Einsum"), None)
    if source is None:
        raise ValueError(f"{path}: no Einsum makes the 'cams' output; cannot add the feature outputs")
    feature_map, weight = source.input[0], source.input[1]
    added = [name for name in ("features", "feature_map", "head_weight") if name not in have]
    if "features" in added:
        graph.initializer.append(numpy_helper.from_array(np.asarray([2, 3], np.int64), "features_axes"))
        graph.node.append(helper.make_node("ReduceMean", [feature_map, "features_axes"], ["features"], keepdims=0))
        graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", None]))
    if "feature_map" in added:
        graph.node.append(helper.make_node("Identity", [feature_map], ["feature_map"]))
        graph.output.append(helper.make_tensor_value_info("feature_map", TensorProto.FLOAT,
                                                          ["batch", None, None, None]))
    if "head_weight" in added:
        graph.node.append(helper.make_node("Identity", [weight], ["head_weight"]))
        graph.output.append(helper.make_tensor_value_info("head_weight", TensorProto.FLOAT, [None, None]))
    if not added:
        return added
    onnx.checker.check_model(model)
    atomic_write(path, lambda tmp: onnx.save(model, str(tmp)))
    return added


TWO_VIEW_INPUTS = ("image", "lateral", "lateral_present")


def export_module(module: torch.nn.Module, spec: InputSpec, path: Path, output_names: list[str],
                  input_names: tuple[str, ...] = ("image",)) -> None:
    """Any module taking ``image`` (N, C, S, S), and for a two-view module ``lateral`` (the same shape) and
    ``lateral_present`` (N, 1); the batch axis is dynamic."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = torch.zeros(1, spec.channels, spec.size, spec.size)
    dummies = {"image": image, "lateral": torch.zeros_like(image), "lateral_present": torch.ones(1, 1)}
    batch = torch.export.Dim("batch", min=1, max=4096)
    args = tuple(dummies[name] for name in input_names)
    arguments = list(inspect.signature(module.forward).parameters)[:len(args)]  # dynamic_shapes is keyed by these

    def write(tmp: Path) -> None:
        torch.onnx.export(module.eval(), args, str(tmp), input_names=list(input_names), output_names=output_names,
                          opset_version=OPSET, dynamo=True, verbose=False,
                          dynamic_shapes={name: {0: batch} for name in arguments}, external_data=False)
        _strip_debug_info(tmp)
    atomic_write(path, write)


def _strip_debug_info(path: Path) -> None:
    """Drop the exporter's per-node stack traces and module paths (they name the build machine's files)."""
    import onnx
    model = onnx.load(str(path))
    for node in model.graph.node:
        del node.metadata_props[:]
        node.doc_string = ""
    model.graph.doc_string = ""
    onnx.save(model, str(path))


# What each task's network returns, by ONNX output name.
TASK_OUTPUTS = {SEGMENTATION: ["mask_logits"], BONE_SUPPRESSION: ["bone"], VIEW_CLASSIFICATION: ["lateral_logit"],
                AGE_SEX: ["age", "female_logit"], NODULE_DETECTION: ["nodule_maps"]}
# What wraps a task's training network for export (its outputs as the head reads them).
EXPORT_FORM = {AGE_SEX: AgeSexOutputs}


def export_checkpoint(checkpoint: Path, out: Path, name: str, version: str, license: str,
                      training_data: str) -> ModelConfig:
    """Write ``out/model.onnx`` and ``out/config.json``; a classifier's thresholds are unset (calibrate next)."""
    net, state = load_checkpoint(checkpoint)
    spec = InputSpec(**state["input"])
    task = state.get("task", "classification")
    if task in TASK_OUTPUTS:
        export_module(EXPORT_FORM.get(task, lambda n: n)(net).eval(), spec, out / "model.onnx", TASK_OUTPUTS[task])
        fields = {"task": task, "outputs": TASK_OUTPUTS[task], "fitted": dict(state.get("fitted", {}))}
    else:
        export_onnx(net, spec, out / "model.onnx")
        fields = {"source_models": dict(state.get("source_models", {})), "outputs": CLASSIFIER_OUTPUTS,
                  "views": list(state.get("views", ["frontal"]))}
    cfg = ModelConfig(name=name, version=version, architecture=state["architecture"], labels=list(state["labels"]),
                      input=spec, sha256=sha256_file(out / "model.onnx"), license=license,
                      training_data=training_data, directory=out, **fields)
    cfg.save(out)
    return cfg
