"""The graph rewrites that run a DenseNet in int8 from end to end: exact in float, int8 where ONNX Runtime runs it."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import chest_phantom

onnx = pytest.importorskip("onnx", reason="quantizing needs radsight[train]")
torch = pytest.importorskip("torch", reason="model fixtures need radsight[train]")

import onnxruntime as ort  # noqa: E402
from onnxruntime.quantization.shape_inference import quant_pre_process  # noqa: E402

from radsight.convert.int8_graph import (  # noqa: E402
    _channel_peaks,
    average_pools_as_convs,
    batch_norms_as_convs,
    equalize_concatenations,
)
from radsight.convert.quantize import quantized_graph  # noqa: E402


def _inputs(n: int, seed: int) -> np.ndarray:
    return np.stack([(chest_phantom(64, 64, seed=seed + i)[None] - 0.5) / 0.25 for i in range(n)]).astype(np.float32)


@pytest.fixture(scope="module")
def densenet(tmp_path_factory):
    """A densenet-small (two layers a block) with batch norms far from identity, as ONNX, shapes inferred and the
    batch norms that follow convolutions folded, as quantization sees it."""
    from radsight.inputs.preprocess import InputSpec
    from radsight.train.export import export_onnx
    from radsight.train.registry import build
    torch.manual_seed(0)
    net = build("densenet-small", num_classes=4, growth_rate=8, block_config=(2, 2, 2, 2), num_init_features=16)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1), m.running_var.uniform_(0.01, 4)
                m.weight.uniform_(-2, 2), m.bias.uniform_(-1, 1)
    out = tmp_path_factory.mktemp("densenet")
    export_onnx(net.eval(), InputSpec(size=64), out / "model.onnx")
    quant_pre_process(str(out / "model.onnx"), str(out / "prepared.onnx"), skip_symbolic_shape=True)
    return out


def _run(model, x: np.ndarray) -> dict[str, np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString() if hasattr(model, "SerializeToString") else str(model),
                                   options, providers=["CPUExecutionProvider"])
    return {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {"image": x}))}


def test_batch_norms_and_pools_as_convolutions_and_equalized_channels_compute_the_same(densenet):
    model = onnx.load(str(densenet / "prepared.onnx"))
    x = _inputs(6, 0)
    before = _run(model, x)
    assert batch_norms_as_convs(model) > 0 and average_pools_as_convs(model) == 3
    assert not {"BatchNormalization", "AveragePool"} & {n.op_type for n in model.graph.node}
    concatenated = sorted({i for n in model.graph.node if n.op_type == "Concat" for i in n.input})
    spread = _channel_peaks(model, concatenated, x)
    assert equalize_concatenations(model, x) > 0
    after = _run(model, x)
    for name, value in before.items():
        np.testing.assert_allclose(after[name], value, rtol=1e-4, atol=1e-4 * np.abs(value).max())
    peaks = _channel_peaks(model, concatenated, x)  # on the images they were measured on, one range
    spread, equal = (np.concatenate(list(p.values())) for p in (spread, peaks))
    assert spread.max() / spread[spread > 0].min() > 10 and equal.max() / equal[equal > 0].min() < 1.01


def test_a_densenet_runs_in_int8_between_its_float_ends(densenet, tmp_path):
    out = tmp_path / "int8.onnx"
    x = _inputs(24, 10)
    quantized_graph(densenet / "model.onnx", out, x, float_convs=1)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
    ops = [n.op_type for n in graph.node]
    assert not {"BatchNormalization", "QLinearAveragePool"} & set(ops) and ops.count("QLinearConcat") == 7 and ops.count("Concat") == 1  # tail
    assert ops.count("QLinearConv") > 20 and ops.count("DequantizeLinear") <= 4  # in and out of the float ends
    scales = {i.name: float(onnx.numpy_helper.to_array(i)) for i in graph.initializer if i.data_type == 1
              and not i.dims}
    for node in (n for n in graph.node if n.op_type == "QLinearConcat"):  # a block's features share one scale
        assert len({scales[node.input[0]], *(scales[node.input[i]] for i in range(3, len(node.input), 3))}) == 1
    probs = [1 / (1 + np.exp(-_run(m, _inputs(16, 100))["logits"])) for m in (densenet / "model.onnx", out)]
    assert np.abs(probs[1] - probs[0]).max() < 0.05


def test_an_average_pool_with_onnx_default_strides_becomes_the_same_convolution():
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, [2, 3, 9, 9])
    y = helper.make_tensor_value_info("out", TensorProto.FLOAT, None)
    pool = helper.make_node("AveragePool", ["image"], ["out"], name="pool", kernel_shape=[3, 2])  # strides: 1
    model = onnx.shape_inference.infer_shapes(helper.make_model(helper.make_graph([pool], "g", [x], [y]),
                                                                opset_imports=[helper.make_opsetid("", 17)]))
    inputs = np.random.default_rng(0).standard_normal((2, 3, 9, 9)).astype(np.float32)
    before = _run(model, inputs)["out"]
    assert average_pools_as_convs(model) == 1 and [n.op_type for n in model.graph.node] == ["Conv"]
    np.testing.assert_allclose(_run(model, inputs)["out"], before, rtol=1e-5, atol=1e-6)
