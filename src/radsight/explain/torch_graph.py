"""A classifier's ONNX graph run by PyTorch, so that gradients flow (needs ``radsight[train]``).

The ONNX file a model folder ships is the one source of its weights: radsight's own models and imported ones
are read the same way, with no second copy of the weights and no publisher code. Each node becomes the torch
operation of the same meaning; ReLUs can be swapped for guided ones (guided backpropagation) per call. No
module hooks are installed, so none can outlive a call, and no operation works in place.
"""
from __future__ import annotations

from collections.abc import Callable, Collection
from pathlib import Path

import numpy as np

from radsight.explain.base import MissingExtra

try:
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper
except ImportError as exc:  # the inference install has neither
    raise MissingExtra("gradient explanations and attacks need PyTorch and onnx: pip install 'radsight[train]'") from exc


class UnsupportedGraph(ValueError):
    pass


class _GuidedReLU(torch.autograd.Function):
    """ReLU whose backward pass lets through only positive gradients at positive inputs (Springenberg et al.)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.clamp(min=0)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x > 0) * (grad > 0)


def _attrs(node) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(attrs: dict, dims: int) -> list[int]:
    """ONNX pads (begin..., end...) -> F.pad order (last axis first: left, right, top, bottom)."""
    pads = list(attrs.get("pads", [0] * 2 * dims))
    out = []
    for axis in reversed(range(dims)):
        out += [pads[axis], pads[axis + dims]]
    return out


def _conv(x, w, b=None, **a):
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedGraph("Conv with auto_pad")
    pads = _pads(a, w.dim() - 2)
    if len(set(pads)) == 1:
        return F.conv2d(x, w, b, a.get("strides", 1), pads[0], a.get("dilations", 1), a.get("group", 1))
    return F.conv2d(F.pad(x, pads), w, b, a.get("strides", 1), 0, a.get("dilations", 1), a.get("group", 1))


def _pool(kind: str):
    def run(x, **a):
        kernel, strides, pads = a["kernel_shape"], a.get("strides", [1, 1]), _pads(a, 2)
        ceil = bool(a.get("ceil_mode", 0))
        if kind == "max":
            if any(pads):
                x = F.pad(x, pads, value=float("-inf"))
            return F.max_pool2d(x, kernel, strides, 0, a.get("dilations", 1), ceil)
        if any(pads) and not a.get("count_include_pad", 0):
            if len(set(pads)) != 1:
                raise UnsupportedGraph("AveragePool with uneven padding")
            return F.avg_pool2d(x, kernel, strides, pads[0], ceil, count_include_pad=False)
        return F.avg_pool2d(F.pad(x, pads), kernel, strides, 0, ceil, count_include_pad=True)
    return run


def _reduce_mean(x, axes=None, keepdims=1, noop_with_empty_axes=0, **_):
    if axes is None:
        if noop_with_empty_axes:
            return x
        axes = list(range(x.dim()))
    return x.mean(dim=[int(a) for a in axes], keepdim=bool(keepdims))


def _gather_nd(data, indices, batch_dims=0, **_):
    if batch_dims:
        raise UnsupportedGraph("GatherND with batch_dims")
    index = indices.long()
    return data[tuple(index[..., i] for i in range(index.shape[-1]))]


_OPS: dict[str, Callable] = {
    "Conv": _conv,
    "BatchNormalization": lambda x, s, b, m, v, epsilon=1e-5, **_: F.batch_norm(x, m, v, s, b, False, 0.0, epsilon),
    "Concat": lambda *xs, axis: torch.cat(xs, dim=axis),
    "MaxPool": _pool("max"),
    "AveragePool": _pool("avg"),
    "GlobalAveragePool": lambda x: x.mean(dim=(2, 3), keepdim=True),
    "ReduceMean": lambda x, axes=None, **a: _reduce_mean(x, axes.tolist() if torch.is_tensor(axes) else axes, **a),
    "Einsum": lambda *xs, equation: torch.einsum(equation.decode() if isinstance(equation, bytes) else equation, *xs),
    "Add": torch.add, "Sub": torch.sub, "Mul": torch.mul, "Div": torch.div, "MatMul": torch.matmul,
    "Identity": lambda x: x,
    "Sigmoid": torch.sigmoid,
    "Flatten": lambda x, axis=1: x.flatten(axis) if axis else x.reshape(1, -1),
    "Gemm": lambda a, b, c=None, alpha=1.0, beta=1.0, transA=0, transB=0: (
        alpha * ((a.T if transA else a) @ (b.T if transB else b)) + (beta * c if c is not None else 0)),
    "GatherND": _gather_nd,
}


class TorchGraph:
    """``graph(x)`` -> the ``outputs`` asked for, by name; ``capture`` names inner tensors to return as well (a
    layer to explain: gradients can be taken with respect to it), ``guided`` swaps every ReLU for a guided one."""

    def __init__(self, path: Path):
        model = onnx.load(str(path))
        self.nodes = list(model.graph.node)
        unknown = sorted({n.op_type for n in self.nodes if n.op_type not in _OPS and n.op_type != "Relu"})
        if unknown:
            raise UnsupportedGraph(f"{path.name}: operations {', '.join(unknown)} cannot be run with gradients")
        self.constants = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in model.graph.initializer}
        self.input = model.graph.input[0].name
        self.outputs = [o.name for o in model.graph.output]
        self.producers = {name: node for node in self.nodes for name in node.output}

    def feature_map_name(self) -> str:
        """The tensor the CAMs are drawn from: the Einsum that makes ``cams`` reads it."""
        return self.producers["cams"].input[0]

    def layers(self) -> list[str]:
        """Names of the tensors a layer-wise method can explain: each ReLU's and Concat's output, in graph order."""
        return [n.output[0] for n in self.nodes if n.op_type in ("Relu", "Concat")]

    def __call__(self, x: torch.Tensor, capture: Collection[str] = (), guided: bool = False,
                 outputs: Collection[str] = ("logits",)) -> dict[str, torch.Tensor]:
        wanted = set(outputs) | set(capture)
        missing = wanted - set(self.producers) - {self.input}
        if missing:
            raise KeyError(f"no tensor named {', '.join(sorted(missing))} in the graph")
        values: dict[str, torch.Tensor] = {**self.constants, self.input: x}
        relu = _GuidedReLU.apply if guided else torch.relu
        for node in self.nodes:
            args = [values[name] if name else None for name in node.input]
            while args and args[-1] is None:
                args.pop()
            op = relu if node.op_type == "Relu" else _OPS[node.op_type]
            result = op(*args, **_attrs(node))
            if node.output[0] in capture and not result.requires_grad:  # a leaf: gradients stop there
                result = result.detach().requires_grad_(True)
            values[node.output[0]] = result
            if wanted <= values.keys():
                break  # nothing later is needed
        return {name: values[name] for name in wanted}


def load_graph(path: Path) -> TorchGraph:
    return TorchGraph(path)


def as_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
