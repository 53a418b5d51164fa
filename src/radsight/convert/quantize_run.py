"""``radsight models quantize``: the classifier's inputs for calibration (a training split) and for the check
(labelled held-out images), then :func:`radsight.convert.quantize.register`."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from radsight.convert.quantize import check_quantizable, register
from radsight.core import InputError, Radiograph
from radsight.data.manifest import Manifest, read_manifest
from radsight.evaluate.calibration import check_not_benchmark, label_matrix
from radsight.io import load_image
from radsight.models.config import ModelConfig


def run_quantize(predictor, manifest: Path, images: Path, split: str, limit: int, check_manifest: Path,
                 check_images: Path, check_split: str | None, max_delta: float, name: str | None) -> ModelConfig:
    """Raises ValueError (BenchmarkSplitError for benchmark calibration rows; no readable images) and
    QuantizationRefused with the figures."""
    check_quantizable(predictor.cfg)
    calibration_rows = read_manifest(manifest, images).select(split)
    check_not_benchmark(calibration_rows)
    check_rows = read_manifest(check_manifest, check_images)
    check_rows = check_rows.select(check_split) if check_split else check_rows
    calibration, _ = model_inputs(predictor.classifier_input, calibration_rows, limit)
    check, kept = model_inputs(predictor.classifier_input, check_rows, len(check_rows))
    y = label_matrix(check_rows, predictor.cfg.labels)[kept]
    patients = [check_rows.patient_ids[i] for i in kept]
    return register(predictor.cfg, calibration, f"{manifest}#{split} ({len(calibration)} images)", check, y, patients,
                    f"{check_manifest}" + (f"#{check_split}" if check_split else ""), max_delta, name)


def model_inputs(make: Callable[[Radiograph], tuple[np.ndarray, object]], rows: Manifest,
                 count: int) -> tuple[np.ndarray, list[int]]:
    """The model inputs (``make(image)[0]``: a predictor's ``classifier_input``, or ``prepare`` under a model's
    input contract) of the first ``count`` readable rows, and which rows they are (unreadable ones are skipped)."""
    xs, kept = [], []
    for i in range(len(rows)):
        if len(kept) == count:
            break
        try:
            xs.append(make(load_image(rows.path(i)))[0])
            kept.append(i)
        except InputError:
            continue
    if not xs:
        raise ValueError("no readable images")
    return np.stack(xs), kept


def run_helper_quantize(cfg: ModelConfig, manifest: Path, images: Path, split: str, limit: int, check_manifest: Path,
                        check_images: Path, check_split: str | None, check_masks: Path | None, bounds,
                        name: str | None) -> ModelConfig:
    """:func:`radsight.convert.quantize_helpers.register_helper` for a segmentation, age-sex, bone-suppression or
    view model: calibrated on ``split`` of ``manifest``, checked on ``check_manifest`` (a segmentation model against
    ``check_masks``; a bone model against the ``targets`` folder beside ``check_images``, its manifest a paired one;
    a view model on its ``view`` column)."""
    from radsight.convert import quantize_helpers as qh
    from radsight.inputs.preprocess import prepare
    from radsight.models.config import AGE_SEX, BONE_SUPPRESSION, SEGMENTATION
    qh.check_has_check(cfg)

    def prepared(image: Radiograph) -> tuple[np.ndarray, object]:
        return prepare(image, cfg.input)
    rows = read_manifest(manifest, images, findings=()).select(split)
    check_not_benchmark(rows)
    calibration, _ = model_inputs(prepared, rows, limit)
    held = read_manifest(check_manifest, check_images, findings=())
    held = held.select(check_split) if check_split else held
    check_not_benchmark(held)  # the check decides what is used: it is tuning, not measuring
    if cfg.task == SEGMENTATION:
        if check_masks is None:
            raise ValueError(f"model {cfg.name} is checked against reference masks: give --check-masks DIR")
        def check(f, q):
            return qh.check_segmentation(f, q, check_manifest, check_images, check_masks, check_split, bounds)
    elif cfg.task == AGE_SEX:
        x, _ = model_inputs(prepared, held, len(held))
        def check(f, q):
            return qh.check_age_sex(f, q, x, bounds)
    elif cfg.task == BONE_SUPPRESSION:
        from radsight.data.pairs import read_pairs, select
        pairs = select(read_pairs(check_manifest, check_images), check_split)
        def check(f, q):
            return qh.check_bone(f, q, pairs, bounds)
    else:
        from radsight.data.view_manifest import view_rows
        views = [r for r in view_rows([(str(check_manifest), str(check_images))])
                 if check_split is None or r.split == check_split]
        def check(f, q):
            return qh.check_view(f, q, views)
    return qh.register_helper(cfg, calibration, f"{manifest}#{split} ({len(calibration)} images)", check,
                              f"{check_manifest}" + (f"#{check_split}" if check_split else ""), bounds, name)
