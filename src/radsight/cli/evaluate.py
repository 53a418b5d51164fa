"""``radsight evaluate``, ``calibrate`` and ``fit-ood``: measure a head's model on data it did not train on; fit a
classifier's thresholds and its out-of-distribution gate."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from radsight.cli.common import build_predictor, fail
from radsight.models.store import DEFAULT_BONE_MODEL, DEFAULT_LUNG_MODEL, DEFAULT_MODEL


def calibrate(
    model: str = typer.Option(..., help="registered model name or model folder (its config.json is updated)"),
    manifest: Path = typer.Option(..., exists=True, dir_okay=False),
    images: Path = typer.Option(..., exists=True, file_okay=False),
    split: str = typer.Option("val", help="manifest split to calibrate on (never 'benchmark')"),
    prior_split: str = typer.Option("train", help="split whose label prevalence backs up labels with few positives"),
    target_sensitivity: Optional[float] = typer.Option(None, help="instead of Youden's J"),
    urgent_specificity: float = typer.Option(0.95, help="specificity of the urgent findings' own operating points"),
    urgent_min_auroc: float = typer.Option(0.80, help="an urgent finding validated below this AUROC never makes a "
                                                      "study urgent"),
    min_auroc: Optional[float] = typer.Option(None, help="a finding validated below this AUROC (or on fewer than 3 "
                                                         "positives) is shown but never called positive"),
    lateral: bool = typer.Option(False, "--lateral", help="a two-view model: MANIFEST holds studies (study_id, "
                                                          "view); fit the thresholds for studies read with their "
                                                          "lateral from the frontal ones already chosen"),
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL, help="lung model, for models that read the thorax"),
) -> None:
    """Choose operating thresholds on a validation split and store them in the model's config.

    Each finding gets Youden's J (or a sensitivity target); urgent findings also get their own high-specificity
    operating point, withheld from triage below the config's bars. With --lateral, a two-view model's thresholds
    for studies read with their lateral."""
    import numpy as np

    if lateral:
        return _calibrate_lateral(model, manifest, images, split, lung_model)

    from radsight.data.manifest import read_manifest
    from radsight.evaluate.calibration import (
        BenchmarkSplitError,
        check_not_benchmark,
        choose_thresholds,
        choose_urgent_points,
        label_matrix,
        validation_points,
    )
    from radsight.heads.triage import UrgentPolicy, describe_point
    from radsight.models.store import sha256_file
    from radsight.pipeline.predictor import score_manifest

    full = read_manifest(manifest, images)
    rows = full.select(split)
    try:
        check_not_benchmark(rows)
    except BenchmarkSplitError as exc:
        raise fail(str(exc))
    if not len(rows):
        raise fail(f"manifest has no rows with split {split!r}")
    predictor = build_predictor(model, lung_model)
    cfg = predictor.cfg
    scores, errors = score_manifest(predictor, rows)
    for e in errors:
        typer.echo(f"skipped: {e}", err=True)
    ok = ~np.isnan(scores).any(axis=1)
    prior_rows = full.select(prior_split) if prior_split in full.splits else full
    prior = np.nanmean(label_matrix(prior_rows, cfg.labels), axis=0)
    y = label_matrix(rows, cfg.labels)[ok]
    cfg.thresholds, cfg.threshold_methods = choose_thresholds(cfg, y, scores[ok], prior, target_sensitivity)
    policy = UrgentPolicy(**{**cfg.urgent_policy, "target_specificity": urgent_specificity,
                             "min_auroc": urgent_min_auroc})
    cfg.urgent, cfg.urgent_policy = choose_urgent_points(cfg, y, scores[ok], policy), policy.to_dict()
    cfg.validated = validation_points(cfg, y, scores[ok])
    if min_auroc is not None:
        cfg.finding_policy = {"min_auroc": min_auroc, "min_positives": 3}
    cfg.sha256 = sha256_file(cfg.weights_path)
    cfg.save(cfg.directory)
    for label in cfg.labels:
        withheld = cfg.withheld(label)
        typer.echo(f"{label:20s} {cfg.thresholds[label]:.4f}  {cfg.threshold_methods[label]}"
                   + (f"  never called: {withheld}" if withheld else ""))
    for label, point in cfg.urgent.items():
        typer.echo(describe_point(label, point, policy))
    typer.echo(f"thresholds from {int(ok.sum())} images of split {split!r} written to {cfg.directory / 'config.json'}")




def _calibrate_lateral(model: str, manifest: Path, images: Path, split: str, lung_model: str) -> None:
    import numpy as np

    from radsight.core import InputError
    from radsight.evaluate.calibration import lateral_thresholds, study_pairs
    from radsight.inputs.preprocess import prepare
    from radsight.io import load_image
    predictor = build_predictor(model, lung_model)
    cfg = predictor.cfg
    if not cfg.reads_lateral:
        raise fail(f"model {cfg.name} reads frontal views only: --lateral is for two-view models")
    try:
        pairs = study_pairs(manifest, images, split)
    except (OSError, ValueError) as exc:
        raise fail(str(exc))
    if not pairs:
        raise fail(f"no study of split {split!r} has both a frontal and a lateral view")
    both, alone = [], []
    for front, side in pairs:
        try:
            x, lat = (prepare(load_image(p), cfg.input)[0][None] for p in (front, side))
        except InputError as exc:
            raise fail(str(exc))
        both.append(predictor.model(x, lateral=lat)["probabilities"][0])
        alone.append(predictor.model(x)["probabilities"][0])
    cfg.lateral_thresholds, cfg.fitted["lateral_thresholds"] = lateral_thresholds(cfg, np.array(both), np.array(alone))
    cfg.save(cfg.directory)
    for label in cfg.labels:
        typer.echo(f"{label:20s} {cfg.threshold(label):.4f} -> {cfg.lateral_thresholds[label]:.4f} with a lateral")
    typer.echo(f"lateral thresholds from {len(pairs)} studies of split {split!r} written to "
               f"{cfg.directory / 'config.json'}")


def fit_ood(
    model: str = typer.Option(..., help="registered model name or model folder (its config.json is updated)"),
    fit: list[str] = typer.Option(..., help="CSV[#split] of chest radiographs to fit on (repeatable; never the "
                                            "benchmark)"),
    held: list[str] = typer.Option(..., help="CSV[#split] of held-out chest radiographs that set the threshold"),
    refuse_rate: float = typer.Option(0.005, help="share of the held-out radiographs the threshold refuses"),
    by_source: bool = typer.Option(False, "--by-source", help="scale each held-out radiograph against a fit "
                                                               "without its source (a source column, else the "
                                                               "CSV's folder): admit sites never seen"),
    loso: Optional[Path] = typer.Option(None, help="folder: measure leave-one-source-out first (loso_report.md)"),
    test: list[str] = typer.Option([], help="with --loso, CSV[#split] of images that are not frontal chest "
                                            "radiographs (kind column), which each left-out gate should refuse"),
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL, help="lung model, for models that read the thorax"),
) -> None:
    """Fit a model's out-of-distribution gate and store it beside the model.

    Mahalanobis distances of the classifier's pooled features, a thumbnail and image statistics to the fitting
    radiographs; the threshold refuses REFUSE_RATE of the held-out ones (needs scikit-learn)."""
    from radsight.evaluate.ood import run_fit
    if any("benchmark" in s for s in fit + held):
        raise fail("refusing to fit on images marked as benchmark: they are for measuring only")
    predictor = build_predictor(model, lung_model)
    try:
        ood = run_fit(predictor, fit, held, refuse_rate, by_source, test, loso)
    except (OSError, ValueError) as exc:
        raise fail(str(exc))
    typer.echo(f"gate fitted on {ood['fitted_images']} images; threshold {ood['threshold']:.3f} refuses "
               f"{ood['held_out_refused']:.1%} of {ood['held_out_images']} held-out radiographs; "
               f"written to {predictor.cfg.directory / ood['file']}")




def evaluate(
    manifest: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="labelled images (or --bone-pairs)"),
    images: Optional[Path] = typer.Option(None, exists=True, file_okay=False, help="the manifest's images"),
    out: Path = typer.Option(..., help="folder for metrics.json and report.md"),
    model: Optional[str] = typer.Option(None, help=f"registered model name or folder (default: {DEFAULT_MODEL})"),
    predictions: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="evaluate a predictions CSV"),
    reference: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="a peer's predictions CSV"),
    split: Optional[str] = typer.Option(None, help="only rows of this split"),
    bootstrap: int = typer.Option(1000, help="patient bootstrap resamples"),
    masks: Optional[Path] = typer.Option(None, exists=True, file_okay=False,
                                         help="reference masks: a folder per structure (heart, right_lung, left_lung, "
                                              "right_clavicle, left_clavicle) or lung masks alone: evaluate the "
                                              "anatomy model (Dice, surface distances, CTR)"),
    landmarks: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                             help="with --masks: reference outline landmarks (image, structure, "
                                                  "index, x, y)"),
    pixel_spacing_mm: Optional[float] = typer.Option(None, min=0.0, help="with --masks: the images' pixel size "
                                                     "(distances in mm; DICOM spacing otherwise)"),
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL, help="lung segmentation model"),
    subset: str = typer.Option("", help="comma-separated image names to evaluate (e.g. held-out pairs)"),
    bone_pairs: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                              help="paired manifest: evaluate a bone suppression model (PSNR, SSIM, "
                                                   "MS-SSIM against the identity baseline)"),
    targets: Optional[Path] = typer.Option(None, exists=True, file_okay=False,
                                           help="with --bone-pairs: soft-tissue images (default: targets/ beside "
                                                "--images)"),
    bone_model: str = typer.Option(DEFAULT_BONE_MODEL, help="with --bone-pairs: the model to evaluate"),
    ood_test: list[str] = typer.Option([], help="CSV[#split] (repeatable): measure the out-of-distribution gate "
                                                "on frontal radiographs and other images (see fit-ood)"),
    explain: Optional[str] = typer.Option(None, help="'all' or methods (cam,gradcam,...): each one's localization, "
                                          "faithfulness (deletion, insertion) and time"),
    robustness: bool = typer.Option(False, "--robustness", help="AUROC and triage flips under FGSM/PGD attacks "
                                    "(needs radsight\\[train]) and under JPEG, noise, contrast and rotation"),
    metadata: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                            help="age-sex: NIH's Data_Entry table (CSV or .csv.gz), filling the "
                                                 "manifest's empty age and sex cells by image name"),
    shortcuts: bool = typer.Option(False, "--shortcuts", help="a normal/abnormal model's shortcut audit on a manifest "
                                   "with a source column: source probe, CAM energy in the lungs, AUROC by source, "
                                   "age"),
    compare_with: Optional[str] = typer.Option(None, help="abnormal: the model whose triage the paired difference "
                                               f"is against (default: {DEFAULT_MODEL})"),
    task: Optional[str] = typer.Option(None, help="a head's task word: findings, abnormal, anatomy, "
                                       "bone-suppression, view, ood, age-sex (default: the named model's head)"),
) -> None:
    """Measure a head's model on labelled images it did not train on (``--task``, default: the named model's head).

    findings: AUROC with patient-bootstrap 95% CIs, operating points, urgent flags, triage, calibration,
    localization, CTR and CAM-in-thorax, and a paired comparison with a reference; with --explain, per explanation
    method; with --robustness, under attacks and natural changes. anatomy (--masks): Dice per structure, surface
    distances, the CTR against the reference masks', landmarks. bone-suppression (--bone-pairs): PSNR, SSIM and
    MS-SSIM. view: accuracy, lateral sensitivity. age-sex: age MAE (bias-corrected, uncorrected, the training
    mean's), R², bias slopes, MAE by decade, sex AUROC.
    ood (--ood-test): the out-of-distribution gate's AUROC and refusals. abnormal: triage AUROC paired against the
    default model's (or --compare-with's), and its map on radiologists' boxes; --shortcuts: the shortcut audit."""
    import importlib

    from radsight.evaluate.request import EvaluateRequest
    if model is not None and predictions is not None:
        raise fail("give one of --model or --predictions, not both")
    try:
        head = _chosen_head(task, model, bool(ood_test), bone_pairs is not None, masks is not None)
    except ValueError as exc:
        raise fail(str(exc))
    if head.evaluate is None:
        raise fail(f"--task {head.task} has no evaluation")
    if compare_with is not None and (head.task != "abnormal" or shortcuts):
        raise fail("--compare-with pairs a triage evaluation: it needs --task abnormal (without --shortcuts)")
    own = {"anatomy": lung_model, "bone-suppression": bone_model}.get(head.task)
    chosen = model if model is not None and _serves(model, head) else (own or head.default_model)
    request = EvaluateRequest(task=head.task, out=out, model=chosen, manifest=manifest, images=images,
                              predictions=predictions, reference=reference, split=split, bootstrap=bootstrap,
                              masks=masks, landmarks=landmarks, pixel_spacing_mm=pixel_spacing_mm,
                              lung_model=lung_model, subset=tuple(s for s in subset.split(",") if s),
                              bone_pairs=bone_pairs, targets=targets, ood_test=tuple(ood_test), explain=explain,
                              robustness=robustness, metadata=metadata, compare_with=compare_with)
    module, function = ("radsight.evaluate.shortcuts", "from_request") if shortcuts else head.evaluate.split(":")
    try:
        line = getattr(importlib.import_module(module), function)(request)
    except (OSError, KeyError, ValueError) as exc:
        raise fail(str(exc).strip("'\""))
    if line:
        typer.echo(line)


def _chosen_head(task: str | None, model: str | None, ood: bool, bone_pairs: bool, masks: bool):
    """The head named by ``--task``, else the one the options point at, else the named model's, else findings."""
    from radsight.heads.registry import HEADS, get_head, head_of
    from radsight.models.store import ModelNotFound, get_model
    if task:
        return get_head(task)
    if ood or bone_pairs or masks:
        return HEADS["ood" if ood else "bone-suppression" if bone_pairs else "anatomy"]
    if model is not None:
        try:
            return head_of(get_model(model))
        except (ModelNotFound, ValueError):
            pass  # a model that cannot be read fails with its reason when the evaluation loads it
    return HEADS["findings"]


def _serves(model: str, head) -> bool:
    """Whether ``model`` is one ``head`` reads (unreadable models are left to fail where they are loaded)."""
    from radsight.models.store import ModelNotFound, get_model
    try:
        return get_model(model).task in head.model_tasks
    except (ModelNotFound, ValueError):
        return True
