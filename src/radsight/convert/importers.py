"""Publishers' checkpoints -> radsight model folders (ONNX + config), with their own pixel contract.

Checkpoints are read with a restricted unpickler: tensors and containers are rebuilt, every other class
(``torchxrayvision.models.DenseNet``, ``torch.nn.Conv2d``...) becomes an inert stub whose parameters are
collected by name, so no publisher code is imported or run.
"""
from __future__ import annotations

import _compat_pickle
import pickle
import re
import types
from collections import OrderedDict
from pathlib import Path

import torch

from radsight.convert.checks import ImportFailed
from radsight.convert.checks import check_export as _check_export
from radsight.models.catalog import FORMAT_DEFAULTS, Published
from radsight.models.config import BONE_SUPPRESSION, SEGMENTATION, ModelConfig
from radsight.models.store import sha256_file
from radsight.train.bone_nets import GusarevAutoencoder
from radsight.train.export import CLASSIFIER_OUTPUTS, export_module, export_onnx
from radsight.train.nets import DenseNet, DenseNetConfig
from radsight.train.pspnet import PSPNET_TARGETS, PSPNet, XrvAnatomy, blocks_of
from radsight.train.resnet import ResNet

IMPORT_VERSION = "imported"
_SAFE_GLOBALS = {("collections", "OrderedDict"), ("copyreg", "_reconstructor"), ("builtins", "object"),
                 ("builtins", "set"), ("builtins", "frozenset"), ("torch._utils", "_rebuild_tensor_v2"),
                 ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
                 ("torch.nn.parameter", "Parameter"), ("torch._tensor", "_rebuild_from_type_v2"), ("torch", "Size")}
_IGNORED_KEYS = {"op_threshs"}  # torchxrayvision's thresholds buffer: radsight keeps thresholds in the config


class _Stub:
    """Stands in for any class outside the allow-list; keeps the pickled state as attributes."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)  # torch pickles with protocol 2 names
        if (module, name) in _SAFE_GLOBALS or (module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)):
            return super().find_class(module, name)
        return type(name, (_Stub,), {"__module__": f"stub.{module}"})


_restricted = types.ModuleType("radsight_restricted_pickle")
_restricted.Unpickler = _Unpickler
_restricted.load = lambda f, **kw: _Unpickler(f, **kw).load()
_restricted.__name__ = "radsight_restricted_pickle"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Tensors by canonical (torchvision-style) name from a whole pickled model or a (wrapped) state dict."""
    try:
        obj = torch.load(path, map_location="cpu", pickle_module=_restricted, weights_only=False)
    except Exception as exc:  # corrupt, truncated or not a torch file: one message naming the file
        raise ImportFailed(f"{path}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), (dict, _Stub)):
                obj = obj[key]
                break
    state = _module_state(obj) if isinstance(obj, _Stub) else obj
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)} if isinstance(state, dict) else {}
    if not tensors:
        raise ImportFailed(f"{path}: no weights found (expected a model or a state dict)")
    return {canonical_key(k): v.detach().float() if v.is_floating_point() else v.detach() for k, v in tensors.items()}


def _module_state(module: _Stub, prefix: str = "") -> dict[str, torch.Tensor]:
    attrs = module.__dict__
    out: dict[str, torch.Tensor] = OrderedDict()
    skip = attrs.get("_non_persistent_buffers_set") or set()
    for group in ("_parameters", "_buffers"):
        for key, value in (attrs.get(group) or {}).items():
            if value is not None and key not in skip:
                out[prefix + key] = value
    for key, child in (attrs.get("_modules") or {}).items():
        if child is not None:
            out.update(_module_state(child, f"{prefix}{key}."))
    return out


def canonical_key(key: str) -> str:
    """``module.densenet121.features...norm.1.weight`` -> ``features...norm1.weight`` (CheXNet-era names)."""
    for prefix in ("module.", "densenet121.", "model."):
        key = key.removeprefix(prefix)
    key = re.sub(r"\.(norm|relu|conv)\.(\d)\.", r".\1\2.", key)
    return key.replace("classifier.0.", "classifier.")


def build_network(fmt: str, state: dict[str, torch.Tensor]) -> torch.nn.Module:
    head = state.get({"xrv-resnet": "fc.weight", "gusarev-bone": "enc1.weight",
                      "xrv-pspnet": "classification.weight"}.get(fmt, "classifier.weight"))
    if head is None:
        raise ImportFailed(f"format {fmt}: the checkpoint has no classifier layer; is it a {fmt} file?")
    if fmt == "gusarev-bone":
        net = GusarevAutoencoder(in_chans=head.shape[1], width=head.shape[0])
    elif fmt == "xrv-pspnet":
        net = PSPNet(num_classes=head.shape[0], blocks=blocks_of(state))
    elif fmt == "xrv-resnet":
        net = ResNet(num_classes=head.shape[0], in_chans=state["conv1.weight"].shape[1])
    elif fmt in ("xrv-densenet", "chexnet"):
        stem = state.get("features.conv0.weight")
        net = DenseNet(DenseNetConfig(num_classes=head.shape[0], in_chans=stem.shape[1] if stem is not None else 3))
    else:
        raise ImportFailed(f"unknown format {fmt!r}; known: {', '.join(FORMAT_DEFAULTS)}")
    wanted = net.state_dict()
    state = {k: v for k, v in state.items() if k not in _IGNORED_KEYS}
    if fmt in ("chexnet", "xrv-pspnet"):  # checkpoints from before BatchNorm counted batches
        state = {**{k: wanted[k] for k in wanted if k.endswith("num_batches_tracked")}, **state}
    missing, unexpected = sorted(set(wanted) - set(state)), sorted(set(state) - set(wanted))
    if missing or unexpected:
        raise ImportFailed(f"format {fmt}: weights do not fit {type(net).__name__} "
                           f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
                           f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})")
    shapes = [k for k in wanted if wanted[k].shape != state[k].shape]
    if shapes:
        raise ImportFailed(f"format {fmt}: shape mismatch at {shapes[0]}: {tuple(state[shapes[0]].shape)} "
                           f"vs {tuple(wanted[shapes[0]].shape)}")
    net.load_state_dict(state)
    return net.eval()


def import_checkpoint(fmt: str, file: Path, out: Path, name: str, published: Published | None = None,
                      source_sha256: str | None = None) -> ModelConfig:
    """Convert ``file`` into the model folder ``out``; the publisher's labels, thresholds and input come
    from ``published`` (default: the format's reference entry)."""
    published = published or FORMAT_DEFAULTS.get(fmt)
    if published is None:
        raise ImportFailed(f"unknown format {fmt!r}; known: {', '.join(FORMAT_DEFAULTS)}")
    provenance = {"format": fmt, "publisher_entry": published.name, "url": published.url,
                  "reference": published.reference, "source_file": file.name,
                  "source_sha256": source_sha256 or sha256_file(file)}
    if fmt == "xrv-riken-age":  # a TorchScript archive, not a pickled state
        from radsight.convert.riken_age import import_riken_age
        return import_riken_age(file, out, name, published, provenance)
    net = build_network(fmt, read_state_dict(file))
    if fmt == "gusarev-bone":
        return _import_image_model(net, published, out, name, provenance)
    if fmt == "xrv-pspnet":
        return _import_anatomy_model(net, published, out, name, provenance)
    n_out = net.head.out_features
    if n_out != len(published.labels):
        raise ImportFailed(f"{file}: {n_out} outputs, but {published.name} has {len(published.labels)} labels")
    keep = [i for i, label in enumerate(published.labels) if label]
    labels = [published.labels[i] for i in keep]
    spec = published.input
    export_onnx(net, spec, out / "model.onnx", outputs=keep)
    _check_export(net, keep, spec, out / "model.onnx")
    thresholds = published.operating_points()
    methods = {label: ("publisher's operating point" if label in thresholds else "none published (0.5)")
               for label in labels}
    cfg = ModelConfig(name=name, version=IMPORT_VERSION, architecture=published.architecture, labels=labels,
                      input=spec, thresholds=thresholds, threshold_methods=methods,
                      sha256=sha256_file(out / "model.onnx"), license=published.license,
                      training_data=published.training_data, model_card="", outputs=CLASSIFIER_OUTPUTS,
                      provenance=provenance, metrics=published.metrics, directory=out)
    cfg.save(out)
    return cfg


def _import_image_model(net: torch.nn.Module, published: Published, out: Path, name: str,
                        provenance: dict) -> ModelConfig:
    """An image-to-image bone suppression network: ONNX output ``soft_tissue``, checked against torch."""
    spec = published.input
    export_module(net, spec, out / "model.onnx", ["soft_tissue"])
    _check_export(net, None, spec, out / "model.onnx", "soft_tissue")
    cfg = ModelConfig(name=name, version=IMPORT_VERSION, architecture=published.architecture, labels=["soft_tissue"],
                      input=spec, task=BONE_SUPPRESSION, outputs=["soft_tissue"],
                      sha256=sha256_file(out / "model.onnx"), license=published.license,
                      training_data=published.training_data, model_card="", provenance=provenance, directory=out)
    cfg.save(out)
    return cfg


def _import_anatomy_model(net: PSPNet, published: Published, out: Path, name: str, provenance: dict) -> ModelConfig:
    """torchxrayvision's anatomy PSPNet as a radsight anatomy model: its lung, heart and clavicle outputs in
    radsight's structure order, its preprocessing inside the graph."""
    if net.classification.out_channels != len(PSPNET_TARGETS):
        raise ImportFailed(f"a ChestX-Det PSPNet has {len(PSPNET_TARGETS)} outputs, this one "
                           f"{net.classification.out_channels}")
    names = {"right_lung": "Right Lung", "left_lung": "Left Lung", "heart": "Heart",
             "right_clavicle": "Right Clavicle", "left_clavicle": "Left Clavicle"}
    wrapped = XrvAnatomy(net, [PSPNET_TARGETS.index(names[s]) for s in published.labels]).eval()
    spec = published.input
    export_module(wrapped, spec, out / "model.onnx", ["mask_logits"])
    _check_export(wrapped, None, spec, out / "model.onnx", "mask_logits")
    cfg = ModelConfig(name=name, version=IMPORT_VERSION, architecture=published.architecture,
                      labels=list(published.labels), input=spec, task=SEGMENTATION, outputs=["mask_logits"],
                      sha256=sha256_file(out / "model.onnx"), license=published.license,
                      training_data=published.training_data, model_card="", provenance=provenance, directory=out)
    cfg.save(out)
    return cfg


__all__ = ["ImportFailed", "build_network", "canonical_key", "import_checkpoint", "read_state_dict"]
