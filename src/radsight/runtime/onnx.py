"""ONNX Runtime inference for a registered model (no PyTorch)."""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import onnxruntime as ort
from scipy.special import expit

from radsight.models.config import ModelConfig
from radsight.models.store import verify


def sigmoid(x: np.ndarray) -> np.ndarray:
    return expit(x)  # no overflow warnings for large logits


DEVICES = ("auto", "cpu", "cuda")
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def execution_providers(device: str = "auto") -> list[str]:
    """ONNX Runtime providers for ``device``: ``auto`` takes TensorRT and CUDA where onnxruntime-gpu has them, then
    the CPU; ``cpu`` forces the CPU; ``cuda`` fails unless a GPU provider is there."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r}: choose one of {', '.join(DEVICES)}")
    gpu = [p for p in GPU_PROVIDERS if p in ort.get_available_providers()] if device != "cpu" else []
    if device == "cuda" and not gpu:
        raise ValueError("device cuda: this ONNX Runtime has no GPU provider (pip install onnxruntime-gpu, with a "
                         "visible NVIDIA GPU)")
    return [*gpu, "CPUExecutionProvider"]


SAME_AS_REQUESTED = 1  # ONNX Runtime's ArenaExtendStrategy::kSameAsRequested


@lru_cache(maxsize=1)
def shared_cpu_arena() -> bool:
    """One CPU memory arena for every session of the process (registered once), growing by what is asked rather
    than in powers of two: each session's own arena would keep the peak of its busiest moment for good. Whether
    it could be registered."""
    try:
        info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        ort.create_and_register_allocator(info, ort.OrtArenaCfg({"arena_extend_strategy": SAME_AS_REQUESTED}))
    except (AttributeError, RuntimeError, TypeError):  # an ONNX Runtime without it: each session keeps its own
        return False
    return True


class OnnxModel:
    """An ONNX session over ``image`` (N, C, S, S) on ``device`` (:func:`execution_providers`); :meth:`run` returns
    the outputs the config names, by name."""

    spin = True  # idle intra-op threads keep polling for work: quicker hand-offs, but they hold their cores

    def __init__(self, cfg: ModelConfig, threads: int = 0, device: str = "auto", spin: bool | None = None):
        """``spin``: whether idle threads poll (default: the class's :attr:`spin`)."""
        self.cfg = cfg
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        if shared_cpu_arena():
            options.add_session_config_entry("session.use_env_allocators", "1")
        if not (self.spin if spin is None else spin):
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(verify(cfg)), options, providers=execution_providers(device))
        expected = [cfg.input.channels, cfg.input.size, cfg.input.size]
        shape = next((i.shape for i in self.session.get_inputs() if i.name == "image"), None)
        if shape is None or any(isinstance(d, int) and d != e for d, e in zip(shape[1:], expected)):
            raise ValueError(f"model {cfg.name}: the network reads {shape}, its config says (N, {', '.join(map(str, expected))})")
        found = [o.name for o in self.session.get_outputs()]
        if not set(cfg.outputs) <= set(found):
            raise ValueError(f"model {cfg.name}: expected outputs {', '.join(cfg.outputs)}; found {', '.join(found)}")

    def run(self, batch: np.ndarray, names: list[str] | None = None,
            more: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
        """The outputs ``names`` (default: those the config lists); ``more``: the graph's other inputs."""
        names = list(self.cfg.outputs) if names is None else names
        feeds = {"image": batch, **(more or {})}
        return dict(zip(names, self.session.run(names, {k: v.astype(np.float32, copy=False)
                                                        for k, v in feeds.items()})))

    def shrink_arena(self) -> None:
        """Hand what the CPU arena holds unused back to the system. ONNX Runtime shrinks an arena only at the end of
        a run asked to: this runs the model once on blank inputs so (the shared arena: every session's memory)."""
        feeds = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
                 for i in self.session.get_inputs()}
        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        self.session.run(None, feeds, options)


# Outputs read only by the explanation methods that need them: fetched on request, not on every run.
EXPLAIN_OUTPUTS = ("feature_map", "head_weight")


class Classifier(OnnxModel):
    """``probabilities`` (N, L) from ``logits``, and the other outputs as they are (``cams``: (N, L, h, w));
    ``extra`` names outputs of :data:`EXPLAIN_OUTPUTS` to fetch too (``head_weight`` is fetched once)."""

    def __init__(self, cfg: ModelConfig, threads: int = 0, device: str = "auto", spin: bool | None = None):
        super().__init__(cfg, threads, device, spin)
        self.head_weight: np.ndarray | None = None

    def __call__(self, batch: np.ndarray, extra: tuple[str, ...] = (),
                 lateral: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """``batch``: frontal views; ``lateral``: a two-view model's lateral views, one a study (an all-NaN one:
        that study has none); None: no study has one. A two-view model's spatial outputs join the views side
        by side (frontal half first)."""
        more = None
        if self.cfg.reads_lateral:
            lateral = np.full_like(batch, np.nan) if lateral is None else lateral
            present = ~np.isnan(lateral).all(axis=(1, 2, 3))
            more = {"lateral": np.where(present[:, None, None, None], lateral, 0),
                    "lateral_present": present.astype(np.float32)[:, None]}
        elif lateral is not None:
            raise ValueError(f"model {self.cfg.name} reads frontal views only")
        missing = [name for name in extra if name not in self.cfg.outputs]
        names = [o for o in self.cfg.outputs if o not in EXPLAIN_OUTPUTS] + [o for o in extra if o not in missing]
        if "head_weight" in names and self.head_weight is not None:
            names.remove("head_weight")
        out = self.run(batch, names, more)
        if "head_weight" in out:
            self.head_weight = out["head_weight"]
        if "head_weight" in extra and self.head_weight is not None:
            out["head_weight"] = self.head_weight
        out["probabilities"] = sigmoid(out.pop("logits").astype(np.float64))
        return out


class Helper(OnnxModel):
    """A model run beside a classifier (lungs, bone suppression, view, the heads'): its idle threads do not spin,
    for spinning ones held the cores the classifier needed and slowed it 1.4x (age-sex and triage models: 1.9x)."""

    spin = False


class Segmenter(Helper):
    """Per-pixel probabilities (N, L, S, S)."""

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        return sigmoid(self.run(batch)["mask_logits"].astype(np.float64))


class BoneSuppressor(Helper):
    """The bone image (N, 1, S, S) in display grey units: radsight's models output ``bone``; imported ones that
    output ``soft_tissue`` give it as their input minus their output."""

    def __call__(self, batch: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """``batch``: the normalised input; ``pixels``: the same input in [0, 1] (N, 1, S, S)."""
        out = self.run(batch)
        return out["bone"] if "bone" in out else pixels - out["soft_tissue"]
