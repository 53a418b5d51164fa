"""int8 variants of a classifier: ONNX Runtime static quantization (QDQ; per-channel int8 weights, uint8
activations calibrated on training-split images), measured against the float model and refused when it moves
the answers too far. Quantizing needs ``onnx`` (``radsight[train]``); running the result needs only ONNX Runtime.
"""
from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from radsight.convert.int8_graph import FLOAT_CONVS, QUANTIZED_OPS, prepare_for_int8, shared_concat_scales
from radsight.models.config import ModelConfig
from radsight.models.store import INT8_SUFFIX, sha256_file, user_dir, verify

MAX_DELTA = 0.02  # default bound on any probability's change against float32
SUFFIX = INT8_SUFFIX


class QuantizationRefused(ValueError):
    """The int8 model moves the answers more than its bounds allow; the message gives the figures."""


class _Batches:
    """ONNX Runtime's calibration reader over model inputs (N, C, S, S), a few at a time."""

    def __init__(self, inputs: np.ndarray, size: int = 16):
        self._all = [inputs[i:i + size] for i in range(0, len(inputs), size)]
        self._batches = iter(self._all)

    def __len__(self) -> int:  # batches, for ONNX Runtime's strided calibration (CalibStridedMinMax)
        return len(self._all)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._batches = iter(self._all[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {"image": batch.astype(np.float32)}


def quantized_graph(source: Path, out: Path, calibration: np.ndarray, float_convs: int = FLOAT_CONVS) -> None:
    """Write the int8 graph of ``source`` to ``out``: :data:`QUANTIZED_OPS` in int8 but ``float_convs``
    convolutions at each end, the CAM head's Einsum and the means in float, activations calibrated on
    ``calibration`` (N, C, S, S)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        from radsight.explain import MissingExtra
        raise MissingExtra(f"quantizing needs onnx: pip install 'radsight[train]' ({exc})") from exc

    import onnx

    class Reader(_Batches, CalibrationDataReader):
        pass
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)  # folds BN into the convs before it
        model = onnx.load(str(prepared))
        kept = prepare_for_int8(model, calibration, float_convs)
        onnx.save(model, str(prepared))
        quantize_static(str(prepared), str(out), Reader(calibration), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=kept)
        quantized = onnx.load(str(out))
        shared_concat_scales(quantized)
        onnx.save(quantized, str(out))


def check_quantizable(cfg: ModelConfig) -> None:
    """ValueError for a model whose int8 variant cannot be made: calibration feeds the frontal view alone."""
    if cfg.reads_lateral:
        raise ValueError(f"model {cfg.name} reads a lateral view beside the frontal one: int8 variants are made of "
                         f"single-view classifiers only")


def quantize(cfg: ModelConfig, calibration: np.ndarray, calibration_source: str, name: str | None = None,
             directory: Path | None = None) -> ModelConfig:
    """The int8 variant of ``cfg`` as a model folder (``<store>/<name>``, default ``NAME-int8``), with the float
    model's labels, thresholds, input contract and out-of-distribution gate. Measure it with :func:`compare` and
    :func:`refusal` before use; :func:`register` does all three."""
    check_quantizable(cfg)
    name = name or cfg.name + SUFFIX
    directory = directory or user_dir() / name
    directory.mkdir(parents=True, exist_ok=True)
    quantized_graph(verify(cfg), directory / cfg.weights, calibration)
    if cfg.ood.get("file"):
        shutil.copy2(cfg.directory / cfg.ood["file"], directory / cfg.ood["file"])
    out = replace(cfg, name=name, version=f"{cfg.version}{SUFFIX}", sha256=sha256_file(directory / cfg.weights),
                  model_card="", directory=directory, metrics={},
                  quantization={"precision": "int8", "method": "ONNX Runtime static quantization, QDQ, per-channel "
                                "int8 weights, uint8 activations (MinMax); convolutions, batch norms as "
                                "depthwise convolutions, ReLUs, concatenations and pools in int8 but the first and "
                                f"last {FLOAT_CONVS} convolutions", "source": cfg.name,
                                "source_version": cfg.version, "source_sha256": cfg.sha256,
                                "calibration": calibration_source, "images": int(len(calibration))})
    out.save(directory)
    return out


def compare(float_cfg: ModelConfig, int8_cfg: ModelConfig, inputs: np.ndarray, y: np.ndarray,
            patient_ids: list[str], n_boot: int = 1000) -> dict:
    """How far the int8 model moves the float model's answers on ``inputs`` (N, C, S, S) with labels ``y``
    (N, labels; NaN unknown): max and mean |Δp|, the CAMs' mean Pearson correlation, and the paired difference
    of mean AUROC over the findings with a patient-bootstrap 95% CI."""
    from radsight.evaluate.scores import Bootstrap, evaluate_scores
    from radsight.runtime.onnx import Classifier
    outs = [_run(Classifier(c), inputs) for c in (float_cfg, int8_cfg)]
    (p32, c32), (p8, c8) = outs
    delta = np.abs(p8 - p32)
    a, b = c32.reshape(-1, c32.shape[2] * c32.shape[3]), c8.reshape(-1, c8.shape[2] * c8.shape[3])
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    r = (a * b).sum(axis=1)[norms > 0] / norms[norms > 0]
    findings = [j for j, label in enumerate(float_cfg.labels) if label in float_cfg.findings]
    labels = [float_cfg.labels[j] for j in findings]
    scores = evaluate_scores(labels, y[:, findings], p8[:, findings], {}, Bootstrap(patient_ids, n=n_boot),
                             reference=p32[:, findings])
    return {"images": int(len(inputs)), "max_abs_dp": float(delta.max()), "mean_abs_dp": float(delta.mean()),
            "cam_correlation": float(r.mean()) if r.size else None,
            "mean_auroc_float": scores.get("reference_mean_auroc"), "mean_auroc_int8": scores["mean_auroc"],
            "delta_mean_auroc": scores.get("mean_difference"), "delta_mean_auroc_ci": scores.get("mean_difference_ci")}


def _run(model, inputs: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    outs = [model(inputs[i:i + batch]) for i in range(0, len(inputs), batch)]
    return (np.concatenate([o["probabilities"] for o in outs]),
            np.concatenate([o["cams"] for o in outs]).astype(np.float64))


def refusal(check: dict, max_delta: float) -> str | None:
    """Why the int8 model may not be used, or None: a probability moved more than ``max_delta``, or the
    paired CI of Δ mean AUROC excludes 0."""
    reasons = []
    if check["max_abs_dp"] > max_delta:
        reasons.append(f"max |Δp| {check['max_abs_dp']:.4f} > {max_delta:g}")
    ci = check.get("delta_mean_auroc_ci")
    if ci is not None and not ci[0] <= 0 <= ci[1]:
        reasons.append(f"Δ mean AUROC {check['delta_mean_auroc']:+.4f}, 95% CI [{ci[0]:+.4f}, {ci[1]:+.4f}] "
                       f"excludes 0")
    return "; ".join(reasons) or None


def register(cfg: ModelConfig, calibration: np.ndarray, calibration_source: str, check_inputs: np.ndarray,
             y: np.ndarray, patient_ids: list[str], check_source: str, max_delta: float = MAX_DELTA,
             name: str | None = None) -> ModelConfig:
    """Quantize, measure on the check set and register ``<store>/<name>`` only when it passes; otherwise
    :class:`QuantizationRefused` with the figures, and nothing is registered."""
    name = name or cfg.name + SUFFIX

    def checked(staging: Path) -> ModelConfig:
        out = quantize(cfg, calibration, calibration_source, name, staging)
        check = compare(cfg, out, check_inputs, y, patient_ids)
        reason = refusal(check, max_delta)
        if reason:
            raise QuantizationRefused(f"{name} refused: {reason} (on {check_source}: {figures(check)})")
        out.quantization.update(max_abs_dp_bound=max_delta, check={"set": check_source, **check})
        out.save(staging)
        return out
    return register_staged(name, checked)


def register_staged(name: str, make: Callable[[Path], ModelConfig]) -> ModelConfig:
    """``make(staging)`` builds and checks a variant in a folder beside ``<store>/<name>``, which then replaces
    that model whole; when ``make`` raises (a refusal, an error), nothing is registered and no folder is left."""
    final = user_dir() / name
    staging = final.with_name(f".{name}.quantizing")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        out = make(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    out.directory = final
    return out


def figures(check: dict) -> str:
    """The check's figures in one line."""
    def f(value, spec: str = ".4f") -> str:
        return "—" if value is None else format(value, spec)
    ci = check.get("delta_mean_auroc_ci") or [None, None]
    return (f"{check['images']} images; max |Δp| {f(check['max_abs_dp'])}, mean |Δp| {f(check['mean_abs_dp'], '.5f')}; "
            f"CAM r {f(check['cam_correlation'])}; mean AUROC {f(check['mean_auroc_float'])} float, "
            f"{f(check['mean_auroc_int8'])} int8, Δ {f(check['delta_mean_auroc'], '+.4f')} "
            f"[{f(ci[0], '+.4f')}, {f(ci[1], '+.4f')}]")
