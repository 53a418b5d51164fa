"""What every importer checks: the ONNX file it wrote computes what the publisher's network does."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch


class ImportFailed(ValueError):
    pass


def check_export(net: torch.nn.Module, keep: list[int] | None, spec, path: Path, output: str = "logits") -> None:
    """The ONNX file must reproduce the network's output (``keep``: those columns); refuse to register it otherwise."""
    import onnxruntime as ort

    x = torch.randn(2, spec.channels, spec.size, spec.size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = net(x) if keep is None else net(x)[:, keep]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([output], {"image": x.numpy()})[0]
    err = float(np.max(np.abs(got - expected.numpy())))
    if not math.isfinite(err) or err > 1e-3 * max(1.0, float(np.abs(expected.numpy()).max())):
        path.unlink()
        raise ImportFailed(f"ONNX export differs from the network (max |{output} difference| {err:.2e})")
