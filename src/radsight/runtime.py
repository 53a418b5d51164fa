"""ONNX Runtime inference for a registered model (no PyTorch)."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
from scipy.special import expit

from radsight.models.config import ModelConfig
from radsight.models.store import verify


def sigmoid(x: np.ndarray) -> np.ndarray:
    return expit(x)  # no overflow warnings for large logits


class OnnxModel:
    """An ONNX session over ``image`` (N, C, S, S) whose outputs are those the config names."""

    spin = True  # idle intra-op threads keep polling for work: quicker hand-offs, but they hold their cores

    def __init__(self, cfg: ModelConfig, threads: int = 0):
        self.cfg = cfg
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if not self.spin:
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(verify(cfg)), options, providers=["CPUExecutionProvider"])
        found = [o.name for o in self.session.get_outputs()]
        if not set(cfg.outputs) <= set(found):
            raise ValueError(f"model {cfg.name}: expected outputs {', '.join(cfg.outputs)}; found {', '.join(found)}")

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.session.run(list(self.cfg.outputs), {"image": batch.astype(np.float32, copy=False)})


class Classifier(OnnxModel):
    """Probabilities (N, L) and class activation maps (N, L, h, w)."""

    def __call__(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        logits, cams = self.run(batch)
        return sigmoid(logits.astype(np.float64)), cams


class Segmenter(OnnxModel):
    """Per-pixel probabilities (N, L, S, S)."""

    spin = False  # it runs beside a classifier, whose threads its spinning ones slowed 1.4x

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return sigmoid(self.run(batch)[0].astype(np.float64))
