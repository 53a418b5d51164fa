"""Graph rewrites that let ONNX Runtime run a DenseNet in int8 from end to end (``onnx`` models, float in, float out).

Quantizing only the convolutions of a DenseNet leaves its pre-activation BatchNorm -> ReLU and its
concatenations in float, and ONNX Runtime then dequantizes every layer's output once for each later layer that
reads it. Here each remaining batch norm becomes the depthwise 1x1 convolution that computes the same
(:func:`batch_norms_as_convs`), so ReLUs, concatenations and pools can be int8 too, and average pools become
depthwise convolutions as well (:func:`average_pools_as_convs`); the concatenated channels are scaled to one range
without changing the float function (:func:`equalize_concatenations`), so that a block's features can share one
int8 scale (:func:`shared_concat_scales`) and concatenating copies bytes.
On a 224-px DenseNet-121 (2 cores): float32 20 ms; convolutions alone in int8 16 ms; all of this 9-11 ms.
"""
from __future__ import annotations

import numpy as np

# Convolutions kept in float at each end of the network: the first see raw grey levels, the last feed the CAMs.
# Chosen on train64's val split with the demo model, everything between in int8 (max |Δp| against float32, 300
# calibration images): 1 at the head 0.036, 2: 0.029, 3: 0.023, 4: 0.026, 6: 0.021; 1 to 4 at the tail alike.
FLOAT_CONVS = 4
# Everything between them runs in int8.
QUANTIZED_OPS = ["Conv", "Relu", "Concat", "MaxPool", "AveragePool"]
# Operators that commute with multiplying a channel by a positive number.
POSITIVE_HOMOGENEOUS = ("Relu", "MaxPool", "AveragePool")


class _Graph:
    """An ONNX graph's constants, the node making each tensor and the nodes reading it."""

    def __init__(self, graph):
        self.graph = graph
        self.consts = {i.name: i for i in graph.initializer}
        self.made = {o: n for n in graph.node for o in n.output}
        self.readers: dict[str, list] = {}
        for node in graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}
        self.widths = {v.name: v.type.tensor_type.shape.dim[1].dim_value for v in [*graph.value_info, *graph.input]
                       if len(v.type.tensor_type.shape.dim) == 4}

    def array(self, name: str) -> np.ndarray:
        from onnx import numpy_helper
        return numpy_helper.to_array(self.consts[name])

    def set(self, name: str, value: np.ndarray) -> None:
        from onnx import numpy_helper
        self.consts[name].CopyFrom(numpy_helper.from_array(value, name))


def _depthwise(node) -> bool:
    return node.op_type == "Conv" and node.name.endswith(".depthwise")


def batch_norms_as_convs(model) -> int:
    """Rewrite each BatchNormalization of a 4-D tensor in ``model`` (an ``onnx.ModelProto`` whose shapes are
    inferred) as the depthwise 1x1 convolution that computes the same, which ONNX Runtime runs in int8; the
    number rewritten."""
    from onnx import helper, numpy_helper

    def rewrite(node, g: _Graph):
        if node.op_type != "BatchNormalization" or node.input[0] not in g.widths or len(node.output) != 1 \
                or not all(name in g.consts for name in node.input[1:]):
            return None
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        gamma, beta, mean, var = (g.array(name).astype(np.float64) for name in node.input[1:])
        scale = gamma / np.sqrt(var + eps)
        weight = numpy_helper.from_array(scale.reshape(-1, 1, 1, 1).astype(np.float32), f"{node.name}.depthwise.weight")
        bias = numpy_helper.from_array((beta - mean * scale).astype(np.float32), f"{node.name}.depthwise.bias")
        return helper.make_node("Conv", [node.input[0], weight.name, bias.name], list(node.output),
                                name=f"{node.name}.depthwise", group=len(scale), kernel_shape=[1, 1]), [weight, bias]
    return _rewrite_nodes(model, rewrite)


def average_pools_as_convs(model) -> int:
    """Rewrite each unpadded AveragePool of a 4-D tensor as the depthwise convolution that computes the same
    (weights 1 / kernel area), which ONNX Runtime runs quicker in int8 than its int8 average pool: a 224-px
    DenseNet-121's three took 0.6 ms, its forward pass 12.0 ms against 11.1 ms with them as convolutions.
    The number rewritten."""
    from onnx import helper, numpy_helper

    def rewrite(node, g: _Graph):
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "AveragePool" or node.input[0] not in g.widths or any(attrs.get("pads", [0])) \
                or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") or attrs.get("ceil_mode", 0) \
                or any(d != 1 for d in attrs.get("dilations", [1])):
            return None
        kernel, channels = list(attrs["kernel_shape"]), g.widths[node.input[0]]
        weight = numpy_helper.from_array(np.full((channels, 1, *kernel), 1 / np.prod(kernel), np.float32),
                                         f"{node.name}.pool.weight")
        return helper.make_node("Conv", [node.input[0], weight.name], list(node.output), name=f"{node.name}.pool",
                                group=channels, kernel_shape=kernel,
                                strides=attrs.get("strides", [1] * len(kernel))), [weight]
    return _rewrite_nodes(model, rewrite)


def _rewrite_nodes(model, rewrite) -> int:
    """Replace each node for which ``rewrite(node, graph)`` gives ``(new node, its new initializers)``, in place,
    dropping the initializers nothing reads any more; the number replaced."""
    graph = model.graph
    g = _Graph(graph)
    nodes, count = [], 0
    for node in graph.node:
        made = rewrite(node, g)
        if made is None:
            nodes.append(node)
            continue
        nodes.append(made[0])
        graph.initializer.extend(made[1])
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input} | g.outputs
    kept = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return count


def equalize_concatenations(model, calibration: np.ndarray) -> int:
    """Scale the channels a DenseNet concatenates to one range without changing the float function, so that one
    int8 scale for a concatenation loses none of its quieter channels. Each part of a concatenation read only by
    batch norms (depthwise convolutions, :func:`batch_norms_as_convs`), alone or through concatenations, is traced
    back through ReLUs and pools to the convolution that makes it; that convolution's output channels are
    multiplied by ``a`` (from their peaks on ``calibration``) and every batch norm reading them divides by ``a``.
    The number of channels scaled."""
    g = _Graph(model.graph)
    concats = [n for n in model.graph.node if n.op_type == "Concat" and _axis(n) == 1 and n.output[0] not in g.outputs
               and all(_depthwise(r) for r in g.readers.get(n.output[0], [])) and all(i in g.widths for i in n.input)
               and len(set(n.input)) == len(n.input)]  # a part joined twice would need two offsets
    joined = {id(n) for n in concats}
    sources = {}  # concatenated tensor -> the convolution whose output channels it carries
    for name in {i for n in concats for i in n.input}:
        if name in g.outputs or not all(id(r) in joined or _depthwise(r) for r in g.readers[name]):
            continue
        node = g.made.get(name)
        while node is not None and node.op_type in POSITIVE_HOMOGENEOUS and len(g.readers[node.input[0]]) == 1 \
                and node.input[0] not in g.outputs:
            node = g.made.get(node.input[0])
        if node is not None and node.op_type == "Conv" and not _depthwise(node) and node.input[1] in g.consts:
            sources[name] = node
    if not sources:
        return 0
    peaks = _channel_peaks(model, list(sources), calibration)
    target = float(np.median(np.concatenate(list(peaks.values()))))
    for name, conv in sources.items():
        a = np.where(peaks[name] > 0, target / np.maximum(peaks[name], 1e-12), 1.0).clip(1e-2, 1e2)
        g.set(conv.input[1], (g.array(conv.input[1]) * a.reshape(-1, 1, 1, 1)).astype(np.float32))
        if len(conv.input) > 2 and conv.input[2]:
            g.set(conv.input[2], (g.array(conv.input[2]) * a).astype(np.float32))
        for reader in g.readers[name]:
            start = _offset(reader, name, g.widths) if reader.op_type == "Concat" else 0
            for norm in g.readers[reader.output[0]] if reader.op_type == "Concat" else [reader]:
                weight = g.array(norm.input[1]).astype(np.float64)
                weight[start:start + len(a)] /= a.reshape(-1, 1, 1, 1)
                g.set(norm.input[1], weight.astype(np.float32))
    return sum(len(p) for p in peaks.values())


def _channel_peaks(model, names: list[str], calibration: np.ndarray, batch: int = 16) -> dict[str, np.ndarray]:
    """The largest |value| of each channel of the tensors ``names`` over the images ``calibration``."""
    import onnx
    import onnxruntime as ort
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(onnx.helper.make_empty_tensor_value_info(name) for name in names)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    peaks = {name: np.zeros(0) for name in names}
    for i in range(0, len(calibration), batch):
        values = session.run(names, {"image": calibration[i:i + batch].astype(np.float32)})
        for name, value in zip(names, values):
            peak = np.abs(value).max(axis=(0, 2, 3))
            peaks[name] = np.maximum(peaks[name], peak) if peaks[name].size else peak
    return peaks


def shared_concat_scales(model) -> int:
    """In a quantized (QDQ) ``model``, give every tensor that concatenations join (their parts and outputs: a
    DenseNet block's features) one int8 scale spanning all their ranges, so that concatenating copies bytes
    instead of requantizing each part; :func:`equalize_concatenations` made those ranges alike. Convolution
    biases are requantized to their inputs' new scales. The number of groups sharing a scale."""
    g = _Graph(model.graph)
    parent: dict[tuple[str, str], tuple[str, str]] = {}

    def root(key: tuple[str, str]) -> tuple[str, str]:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key
    for node in (n for n in model.graph.node if n.op_type == "Concat"):
        quantized = [g.made.get(name) for name in node.input] + g.readers.get(node.output[0], [])[:2]
        if len(quantized) != len(node.input) + 1 \
                or any(q is None or q.op_type != "DequantizeLinear" for q in quantized[:-1]) \
                or quantized[-1].op_type != "QuantizeLinear":
            continue
        keys = [(q.input[1], q.input[2]) for q in quantized if len(q.input) == 3]
        if len(keys) != len(quantized) or any(k not in g.consts for key in keys for k in key) \
                or any(g.array(s).size != 1 for s, _ in keys):  # per-tensor scales only
            continue
        for key in keys[1:]:
            parent[root(key)] = root(keys[0])
    groups: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for key in parent:
        groups.setdefault(root(key), []).append(key)
    shared = 0
    for members in groups.values():
        params = [(float(g.array(s)), g.array(z)) for s, z in members]
        if len(members) < 2 or any(z.dtype != np.uint8 for _, z in params):
            continue
        low, high = min(-int(z) * s for s, z in params), max((255 - int(z)) * s for s, z in params)
        if not high > low:
            continue
        scale = (high - low) / 255
        for s, z in members:
            g.set(s, np.array(scale, np.float32))
            g.set(z, np.array(np.clip(round(-low / scale), 0, 255), np.uint8))
        shared += 1
    _requantize_biases(g)
    return shared


def _requantize_biases(g: _Graph) -> None:
    """Put each int32 convolution bias on the scale its input and weights now have, as ONNX Runtime requires."""
    for node in g.graph.node:
        if node.op_type != "Conv" or len(node.input) < 3:
            continue
        x, w, b = (g.made.get(name) for name in node.input[:3])
        if any(q is None or q.op_type != "DequantizeLinear" for q in (x, w, b)) or b.input[0] not in g.consts:
            continue
        old = g.array(b.input[1]).astype(np.float64)
        new = float(g.array(x.input[1])) * g.array(w.input[1]).astype(np.float64)
        if np.allclose(old, new, rtol=1e-6, atol=0):
            continue
        bias = g.array(b.input[0]).astype(np.float64) * old
        g.set(b.input[0], np.clip(np.round(bias / new), -2 ** 31, 2 ** 31 - 1).astype(np.int32))
        g.set(b.input[1], new.astype(np.float32))


def _axis(node) -> int | None:
    return next((a.i for a in node.attribute if a.name == "axis"), None)


def _offset(concat, part: str, widths: dict[str, int]) -> int:
    """The first channel of ``part`` in the output of ``concat``."""
    inputs = list(concat.input)
    return sum(widths[name] for name in inputs[:inputs.index(part)])


def float_ends(model, float_convs: int = FLOAT_CONVS) -> list[str]:
    """The nodes of ``model`` kept in float: those up to its ``float_convs``-th convolution and from its
    ``float_convs``-th last one on (those made from batch norms and pools do not count); all of them when it has fewer
    than twice ``float_convs`` convolutions."""
    nodes = list(model.graph.node)
    convs = [i for i, n in enumerate(nodes) if n.op_type == "Conv" and not n.name.endswith((".depthwise", ".pool"))]
    if not float_convs:
        return []
    if len(convs) < 2 * float_convs:
        return [n.name for n in nodes]
    head, tail = convs[float_convs - 1], convs[-float_convs]
    return [n.name for i, n in enumerate(nodes) if i <= head or i >= tail]


def prepare_for_int8(model, calibration: np.ndarray, float_convs: int = FLOAT_CONVS) -> list[str]:
    """Rewrite ``model`` (shapes inferred, batch norms after convolutions already folded into them) for
    quantization: batch norms and average pools as depthwise convolutions, concatenated channels equalized on
    ``calibration``.
    The names of the nodes to keep in float (:func:`float_ends`)."""
    batch_norms_as_convs(model)
    average_pools_as_convs(model)
    equalize_concatenations(model, calibration)
    return float_ends(model, float_convs)
