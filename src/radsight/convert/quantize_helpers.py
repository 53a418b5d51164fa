"""int8 variants of the models run beside a classifier, each registered only when it passes its own check
against the float model on held-out images:

- segmentation (lung, anatomy): each structure's mean Dice against reference masks may fall by at most
  ``max_dice_drop`` (0.002), measured by ``radsight evaluate --task anatomy``'s code on the check manifest;
- age-sex: no image's corrected age may move more than ``max_age_years`` (1 year), nor its P(female) more than
  ``max_delta`` (0.02);
- bone suppression: the soft-tissue view's mean PSNR against the reference soft-tissue images may fall by at most
  ``max_psnr_drop`` (0.2 dB);
- view: no image of the check set may change its frontal/lateral decision.

ONNX Runtime static quantization: QDQ, per-channel int8 weights, uint8 activations calibrated on a training split.
Quantizing needs ``onnx`` (``radsight[train]``); running the result needs only ONNX Runtime.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from radsight.convert.quantize import SUFFIX, QuantizationRefused, _Batches, register_staged
from radsight.models.config import AGE_SEX, BONE_SUPPRESSION, SEGMENTATION, VIEW_CLASSIFICATION, ModelConfig
from radsight.models.store import sha256_file, verify

CHECKED_TASKS = (SEGMENTATION, AGE_SEX, BONE_SUPPRESSION, VIEW_CLASSIFICATION)
# ops quantized where not every kind ONNX Runtime knows can be: the bone model's instance norms and attention stay float
OP_TYPES = {BONE_SUPPRESSION: ["Conv"]}
# convolutions kept in float at each end: the bone image is subtracted from the film, grey level for grey level
# (with none kept, its val PSNR fell 0.29 dB; with 3, 0.14)
FLOAT_END_CONVS = {BONE_SUPPRESSION: 3}


@dataclass(frozen=True)
class Bounds:
    max_dice_drop: float = 0.002
    max_age_years: float = 1.0
    max_delta: float = 0.02
    max_psnr_drop: float = 0.2


def quantize_helper(cfg: ModelConfig, calibration: np.ndarray, calibration_source: str, directory: Path,
                    name: str) -> ModelConfig:
    """The int8 variant of ``cfg`` in ``directory``, with the float model's other files (landmark shapes...)."""
    try:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process
    except ImportError as exc:
        from radsight.explain import MissingExtra
        raise MissingExtra(f"quantizing needs onnx: pip install 'radsight[train]' ({exc})") from exc

    class Reader(_Batches, CalibrationDataReader):
        pass
    directory.mkdir(parents=True, exist_ok=True)
    for path in cfg.directory.iterdir():
        if path.is_file() and path.name not in (cfg.weights, "config.json", cfg.model_card):
            shutil.copy2(path, directory / path.name)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(verify(cfg)), str(prepared), skip_symbolic_shape=True)  # folds batch norms
        convs = [n.name for n in _graph_nodes(prepared) if n.op_type == "Conv"]
        ends = FLOAT_END_CONVS.get(cfg.task, 0)
        # every activation of the batches collected is held at once: at 512 px, ranges are folded in a batch at a time
        batch = max(1, 16 * 256 ** 2 // int(np.prod(calibration.shape[-2:])))
        quantize_static(str(prepared), str(directory / cfg.weights), Reader(calibration, batch),
                        quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, op_types_to_quantize=OP_TYPES.get(cfg.task),
                        nodes_to_exclude=convs[:ends] + convs[len(convs) - ends:] if ends else None,
                        extra_options={"CalibStridedMinMax": 1})
    ops = OP_TYPES.get(cfg.task)
    kept = (f"; only {', '.join(ops)} quantized" if ops else "") + \
        (f"; the first and last {ends} convolutions kept in float" if ends else "")
    out = replace(cfg, name=name, version=f"{cfg.version}{SUFFIX}", sha256=sha256_file(directory / cfg.weights),
                  model_card="", directory=directory, metrics={},
                  quantization={"precision": "int8", "method": "ONNX Runtime static quantization, QDQ, per-channel "
                                f"int8 weights, uint8 activations (MinMax){kept}", "source": cfg.name,
                                "source_version": cfg.version, "source_sha256": cfg.sha256,
                                "calibration": calibration_source, "images": int(len(calibration))})
    out.save(directory)
    return out


def _graph_nodes(path: Path) -> list:
    import onnx
    return list(onnx.load(str(path)).graph.node)


def check_segmentation(float_cfg: ModelConfig, int8_cfg: ModelConfig, manifest: Path, images: Path, masks: Path,
                       split: str | None, bounds: Bounds) -> tuple[dict, str | None]:
    """Each structure's mean Dice by both models on the check manifest (``masks``: a folder a structure, as
    ``radsight evaluate --task anatomy`` reads them, or one of lung masks); why the int8 one is refused, or None."""
    from radsight.evaluate.anatomy import STRUCTURES, run_anatomy_evaluation
    from radsight.evaluate.lungs import run_segmentation_evaluation
    from radsight.evaluate.request import EvaluateRequest
    dice = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, cfg in (("float", float_cfg), ("int8", int8_cfg)):
            out = Path(tmp) / label
            if any((masks / s).is_dir() for s in STRUCTURES):
                metrics = run_anatomy_evaluation(EvaluateRequest(task="anatomy", manifest=manifest, images=images,
                                                                 out=out, model=str(cfg.directory), masks=masks,
                                                                 split=split, bootstrap=0))
                dice[label] = {s: m["dice"] for s, m in metrics["segmentation"]["mean"].items()}
            else:
                metrics = run_segmentation_evaluation(manifest, images, masks, out, str(cfg.directory), None, split)
                dice[label] = {"lungs": metrics["mean"]["dice"]}
    if not dice["float"]:
        raise ValueError(f"no structure of model {float_cfg.name} has reference masks under {masks}")
    drops = {s: dice["float"][s] - dice["int8"][s] for s in dice["float"]}
    figures = {"images": metrics["images"], "dice_float": dice["float"], "dice_int8": dice["int8"],
               "max_dice_drop": max(drops.values())}
    worst = max(drops, key=drops.get)
    reason = (f"{worst} Dice falls by {drops[worst]:.4f} ({dice['float'][worst]:.4f} -> {dice['int8'][worst]:.4f}) "
              f"> {bounds.max_dice_drop:g}") if drops[worst] > bounds.max_dice_drop else None
    return figures, reason


def check_age_sex(float_cfg: ModelConfig, int8_cfg: ModelConfig, check: np.ndarray,
                  bounds: Bounds) -> tuple[dict, str | None]:
    """How far the int8 model moves each image's corrected age and P(female); why it is refused, or None."""
    from radsight.heads.age_sex import corrected_age
    from radsight.runtime.onnx import OnnxModel, sigmoid
    outs = []
    for cfg in (float_cfg, int8_cfg):
        session = OnnxModel(cfg)
        raw = [session.run(check[i:i + 16]) for i in range(0, len(check), 16)]
        outs.append((corrected_age(np.concatenate([r["age"] for r in raw]).ravel(), cfg.fitted),
                     sigmoid(np.concatenate([r["female_logit"] for r in raw]).ravel().astype(np.float64))))
    age_moved = float(np.max(np.abs(outs[1][0] - outs[0][0])))
    p_moved = float(np.max(np.abs(outs[1][1] - outs[0][1])))
    reasons = [f"an age moves {age_moved:.2f} years > {bounds.max_age_years:g}"] if age_moved > bounds.max_age_years \
        else []
    reasons += [f"a P(female) moves {p_moved:.4f} > {bounds.max_delta:g}"] if p_moved > bounds.max_delta else []
    return {"images": int(len(check)), "max_abs_age_years": age_moved, "max_abs_dp_female": p_moved}, \
        "; ".join(reasons) or None


def check_bone(float_cfg: ModelConfig, int8_cfg: ModelConfig, pairs: list, bounds: Bounds) -> tuple[dict, str | None]:
    """The soft-tissue view's PSNR against each pair's reference (``radsight.data.pairs.Pair``) by both models;
    why the int8 one is refused (its mean PSNR falls more than ``max_psnr_drop``), or None."""
    from radsight.evaluate.image_quality import psnr
    from radsight.heads.bone import BoneModel
    from radsight.io import load_image
    films = [(load_image(p.image), load_image(p.target).pixels) for p in pairs]
    if not films:
        raise ValueError("no bone-suppression pairs to check on")
    scores = {}
    for label, cfg in (("float", float_cfg), ("int8", int8_cfg)):
        model = BoneModel(cfg)
        scores[label] = np.array([psnr(model.views(image).soft_tissue, target, None) for image, target in films])
    drop = float(scores["float"].mean() - scores["int8"].mean())
    figures = {"images": len(films), "psnr_float_db": float(scores["float"].mean()),
               "psnr_int8_db": float(scores["int8"].mean()), "psnr_drop_db": drop,
               "max_image_psnr_drop_db": float(np.max(scores["float"] - scores["int8"]))}
    return figures, f"mean PSNR falls by {drop:.3f} dB > {bounds.max_psnr_drop:g}" if drop > bounds.max_psnr_drop \
        else None


def check_view(float_cfg: ModelConfig, int8_cfg: ModelConfig, rows: list) -> tuple[dict, str | None]:
    """Each image's frontal/lateral decision (``radsight.data.view_manifest.ViewRow``) by both models, at the
    float model's threshold; why the int8 one is refused (any decision changes), or None."""
    from radsight.heads.view import ViewModel
    from radsight.io import load_image
    images = [load_image(row.path) for row in rows]
    if not images:
        raise ValueError("no images to check the view model on")
    p = {}
    for label, cfg in (("float", float_cfg), ("int8", int8_cfg)):
        model = ViewModel(cfg)
        p[label] = np.array([model.lateral_probability(image) for image in images])
    threshold = float_cfg.threshold("lateral")
    changed = int(np.sum((p["float"] >= threshold) != (p["int8"] >= threshold)))
    figures = {"images": len(images), "laterals": sum(row.view == "lateral" for row in rows),
               "decisions_changed": changed, "max_abs_dp_lateral": float(np.max(np.abs(p["int8"] - p["float"])))}
    return figures, f"{changed} frontal/lateral decision(s) change" if changed else None


def check_has_check(cfg: ModelConfig) -> None:
    """ValueError for a model whose kind has no int8 check."""
    if cfg.task not in CHECKED_TASKS:
        raise ValueError(f"model {cfg.name} is a {cfg.task} model: int8 variants with a check are made of "
                         f"classifiers, {', '.join(CHECKED_TASKS)} models")


def register_helper(cfg: ModelConfig, calibration: np.ndarray, calibration_source: str, check, check_source: str,
                    bounds: Bounds = Bounds(), name: str | None = None) -> ModelConfig:
    """Quantize ``cfg``, run its task's check (``check``: a callable (float, int8) -> (figures, reason)) and
    register ``<store>/<name>`` (default ``NAME-int8``) only when it passes; otherwise :class:`QuantizationRefused`
    with the figures, and nothing is registered."""
    check_has_check(cfg)
    name = name or cfg.name + SUFFIX

    def checked(staging: Path) -> ModelConfig:
        out = quantize_helper(cfg, calibration, calibration_source, staging, name)
        figures, reason = check(cfg, out)
        if reason:
            raise QuantizationRefused(f"{name} refused: {reason} (on {check_source}: {figures})")
        out.quantization.update(bounds=asdict(bounds), check={"set": check_source, **figures})
        out.save(staging)
        return out
    return register_staged(name, checked)
