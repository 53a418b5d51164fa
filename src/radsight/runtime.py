"""ONNX Runtime inference for a registered model (no PyTorch)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort

from radsight.models.config import ModelConfig
from radsight.models.store import verify


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class OnnxModel:
    """Runs ``image`` (N, C, S, S) -> probabilities (N, L) and class activation maps (N, L, h, w)."""

    def __init__(self, cfg: ModelConfig, threads: int = 0):
        self.cfg = cfg
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(verify(cfg)), options, providers=["CPUExecutionProvider"])
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs[:2] != ["logits", "cams"]:
            raise ValueError(f"model {cfg.name}: expected outputs logits, cams; found {outputs}")

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, cams = self.session.run(["logits", "cams"], {"image": batch.astype(np.float32, copy=False)})
        return sigmoid(logits.astype(np.float64)), cams
