"""The ``radsight`` command line."""
from __future__ import annotations

import os

from pathlib import Path
from typing import Optional

import typer

from radsight.models.store import DEFAULT_BONE_MODEL, DEFAULT_LUNG_MODEL, DEFAULT_MODEL, DEFAULT_TWO_VIEW_MODEL

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="radsight: chest X-ray findings, triage, heatmaps and boxes. Not for diagnostic use.")


def _print_version(value: bool) -> None:
    if value:
        from radsight import __version__
        typer.echo(f"radsight {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="print the version and exit")) -> None:
    """radsight: chest X-ray findings, triage, heatmaps and boxes. Not for diagnostic use."""


@app.command()
def train(
    manifest: list[Path] = typer.Option([], exists=True, dir_okay=False,
                                        help="CSV: image, patient_id, split, 14 labels (bone-suppression: image, "
                                             "target, patient_id, split); repeat, each with its --images, to train "
                                             "on several datasets (classification, abnormal, view)"),
    images: list[Path] = typer.Option([], exists=True, file_okay=False, help="folder the manifest's images are in"),
    shards: Optional[Path] = typer.Option(None, exists=True, file_okay=False,
                                          help="classification: shards made by radsight data pack, instead of "
                                               "--manifest/--images (train split streamed)"),
    out: Path = typer.Option(..., help="run folder: checkpoints, history; re-run to resume"),
    scalp: Optional[float] = typer.Option(None, help="classification: SCALP, λ·BCE + (1 − λ)·patient-aware "
                                                     "contrastive loss (the paper's λ: 0.8)"),
    device: str = typer.Option("auto", help="classification: auto (a GPU when one is visible; under torchrun one a "
                                            "rank), cpu or cuda"),
    precision: str = typer.Option("fp32", help="classification: fp32, bf16 (CPU or GPU) or fp16 (GPU)"),
    channels_last: bool = typer.Option(False, "--channels-last", help="classification: NHWC memory layout"),
    task: str = typer.Option("classification", help="classification | abnormal (binary pretraining) | "
                                                    "lung-segmentation | bone-suppression | view (frontal or "
                                                    "lateral)"),
    views: str = typer.Option("frontal", help="classification: frontal, or frontal,lateral (a two-view "
                                              "architecture; manifests with study_id and view columns)"),
    masks: Optional[Path] = typer.Option(None, exists=True, file_okay=False, help="lung-segmentation: mask folder"),
    targets: Optional[Path] = typer.Option(None, exists=True, file_okay=False,
                                           help="bone-suppression: soft-tissue images (default: targets/ beside "
                                                "--images)"),
    stages: str = typer.Option("128:200,256:400,512:400", help="bone-suppression: size:steps, low resolution first"),
    kind: Optional[str] = typer.Option(None, help="bone-suppression: train on rows of this kind only (bse-jsrt)"),
    holdout: str = typer.Option("", help="lung-segmentation: comma-separated images kept out for evaluation; view: "
                                         "patient ids kept out"),
    val: str = typer.Option("", help="lung-segmentation: comma-separated images that choose the checkpoint"),
    iterations: Optional[int] = typer.Option(None, help="optimisation steps: lung-segmentation (default 800), view "
                                                        "(default 1500)"),
    checkpoint_every: int = typer.Option(50, help="lung-segmentation: steps between validation and checkpoints"),
    region: str = typer.Option("image", help="classification: image | thorax (crop to the lungs first)"),
    sources: str = typer.Option("original", help="classification: input channels, some of original, lung_masked, "
                                                 "bone_suppressed"),
    bone_model: str = typer.Option(DEFAULT_BONE_MODEL, help="classification: the model for bone_suppressed"),
    init_from: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                             help="classification: start from this checkpoint (e.g. --task abnormal)"),
    architecture: str = typer.Option("densenet-small", help="classification: a registered architecture"),
    input_size: Optional[int] = typer.Option(None, help="default 64 (classification), 256 (lung-segmentation)"),
    epochs: int = typer.Option(40),
    batch_size: Optional[int] = typer.Option(None, help="default 32 (classification), 8 (lung-segmentation), "
                                                        "4 (bone-suppression)"),
    lr: float = typer.Option(1e-3),
    seed: int = typer.Option(0),
    threads: int = typer.Option(0, help="torch CPU threads (0: default)"),
    stop_after: Optional[int] = typer.Option(None, help="stop after this many epochs (steps for bone-suppression); "
                                                        "re-run to resume"),
) -> None:
    """Train a classifier, a lung segmenter, a bone suppression GAN or a view classifier (needs radsight\\[train]).
    Resumes from OUT."""
    if len(manifest) != len(images):
        raise _fail("give one --images for each --manifest")
    if bool(manifest) == bool(shards):
        raise _fail("give --manifest and --images, or --shards (classification)")
    datasets = [(str(m), str(i)) for m, i in zip(manifest, images)] or [("", "")]
    if shards and task not in ("classification", "abnormal"):
        raise _fail(f"--task {task} trains from --manifest and --images; --shards is for classification")
    if len(datasets) > 1 and task in ("lung-segmentation", "bone-suppression"):
        raise _fail(f"--task {task} trains on one manifest")
    manifest, images = datasets[0]
    if task == "view":
        from radsight.train.view import ViewTrainConfig, train_view_classifier
        try:
            chosen = train_view_classifier(ViewTrainConfig(
                sources=datasets, out=str(out), holdout=[h for h in holdout.split(",") if h],
                input_size=input_size or 64, steps=iterations or 1500,
                batch_size=batch_size or 48, seed=seed, threads=threads, stop_after=stop_after))
        except ValueError as exc:
            raise _fail(str(exc))
        _echo_once(f"checkpoint: {chosen}")
        return
    if task == "lung-segmentation":
        from radsight.train.seg import SegTrainConfig, train_segmentation
        if masks is None:
            raise _fail("--task lung-segmentation needs --masks")
        seg = SegTrainConfig(manifest=str(manifest), images=str(images), masks=str(masks), out=str(out),
                             holdout=[h for h in holdout.split(",") if h], val=[v for v in val.split(",") if v],
                             input_size=input_size or 256,
                             iterations=iterations or 800, checkpoint_every=checkpoint_every,
                             batch_size=batch_size or 8, seed=seed, threads=threads,
                             stop_after=stop_after)
        _echo_once(f"chosen checkpoint: {train_segmentation(seg)}")
        return
    if task == "bone-suppression":
        from radsight.train.bone import BoneTrainConfig, train_bone_suppression
        bone = BoneTrainConfig(manifest=str(manifest), images=str(images), out=str(out),
                               targets=str(targets) if targets else None, stages=stages, kind=kind,
                               batch_size=batch_size or 4, seed=seed, threads=threads, stop_after=stop_after)
        try:
            _echo_once(f"chosen checkpoint: {train_bone_suppression(bone)}")
        except ValueError as exc:
            raise _fail(str(exc))
        return
    if task not in ("classification", "abnormal"):
        raise _fail(f"unknown task {task!r}")
    from radsight.train.loop import TrainConfig
    from radsight.train.loop import train as run_training

    try:
        cfg = TrainConfig(manifest=str(manifest), images=str(images), out=str(out), architecture=architecture,
                          input_size=input_size or 64, epochs=epochs, batch_size=batch_size or 32, lr=lr, seed=seed,
                          threads=threads, stop_after=stop_after, region=region,
                          sources=tuple(s.strip() for s in sources.split(",") if s.strip()), bone_model=bone_model,
                          task="abnormal" if task == "abnormal" else "findings",
                          init_from=str(init_from) if init_from else None, also=datasets[1:],
                          views=tuple(v.strip() for v in views.split(",") if v.strip()),
                          shards=str(shards) if shards else None, scalp=scalp, device=device, precision=precision,
                          channels_last=channels_last)
        best = run_training(cfg)
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc).strip("'\""))
    _echo_once(f"best checkpoint: {best}")


def _echo_once(line: str) -> None:
    """Under torchrun, one line for the run (rank 0's)."""
    if os.environ.get("RANK", "0") == "0":
        typer.echo(line)


EXAMPLE_FILE = "RG1_UNCR.dcm"


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _example_path() -> Path:
    try:
        from pydicom.data import get_testdata_file
        found = get_testdata_file(EXAMPLE_FILE)
    except (ImportError, ValueError) as exc:
        raise _fail(f"the example radiograph comes from pydicom-data: pip install 'radsight[example]' ({exc})")
    if not found:
        raise _fail(f"{EXAMPLE_FILE} not found: pip install 'radsight[example]'")
    return Path(found)


def _predictor(model: str, lung_model: str | None = None, threads: int = 0, bone_model: str | None = None,
               bone_views: bool = False, method: str = "cam", layer: str | None = None):
    from radsight.models.store import ChecksumMismatch, ModelNotFound
    from radsight.pipeline import Predictor
    try:
        return Predictor(model, lung_model=lung_model, threads=threads, bone_model=bone_model, bone_views=bone_views,
                         method=method, layer=layer)
    except (ModelNotFound, ChecksumMismatch, ValueError) as exc:
        raise _fail(str(exc))


@app.command()
def analyze(
    paths: list[Path] = typer.Argument(None, help="DICOM, PNG or JPEG files, or folders of them"),
    out: Path = typer.Option(Path("radsight-out"), help="folder for the JSON, overlay and heatmap files"),
    model: Optional[str] = typer.Option(None, help=f"registered model name or model folder (default: "
                                        f"{DEFAULT_MODEL}; for studies with several images or a lateral, and "
                                        f"with --study: {DEFAULT_TWO_VIEW_MODEL} when installed)"),
    study: bool = typer.Option(False, "--study", help="the files given are one study (a PNG/JPEG frontal and "
                               "lateral: the view classifier tells them apart); DICOM files are grouped into "
                               "studies by StudyInstanceUID without it"),
    example: bool = typer.Option(False, "--example", help="analyze pydicom-data's real chest CR (RG1_UNCR.dcm)"),
    save_predictions: Optional[Path] = typer.Option(None, help="also write all probabilities to this CSV"),
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL, help="lung segmentation model for lung fields and CTR"),
    anatomy: bool = typer.Option(True, help="segment the lungs and measure the cardiothoracic ratio"),
    bone_model: Optional[str] = typer.Option(None, help=f"bone suppression model for the soft-tissue and bone views "
                                             f"(default: {DEFAULT_BONE_MODEL} when installed)"),
    bone_views: bool = typer.Option(True, help="write the soft-tissue and bone views when a bone model is there"),
    allow_ood: bool = typer.Option(False, "--allow-ood", help="analyze images the out-of-distribution gate refuses "
                                                              "(their results say so)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no per-image table"),
    workers: Optional[int] = typer.Option(None, min=1, help="files analyzed at once (default: one a CPU core, "
                                          "at most one a file); they share the cores out"),
    explain: str = typer.Option("cam", help="what makes the heatmaps and boxes: cam (default: exact for radsight's "
                                "models, the fastest), gradcam, gradcam++, guided-gradcam or guided-backprop (the "
                                "guided ones need radsight\\[train])"),
    explain_layer: Optional[str] = typer.Option(None, help="explain this graph tensor instead of the last feature "
                                                "map (gradcam, gradcam++; needs radsight\\[train])"),
    heatmaps_for: str = typer.Option("", help="heatmaps and boxes for these findings even below their thresholds: "
                                     "comma-separated names, 'all', or 'Abnormal' for the triage output"),
    device: str = typer.Option("auto", envvar="RADSIGHT_DEVICE", help="auto (a GPU when onnxruntime-gpu sees "
                               "one), cpu or cuda"),
    dicom_out: bool = typer.Option(False, "--dicom-out", help="for DICOM input also write NAME.sr.dcm (TID 1500 "
                                   "report), NAME.seg.dcm (lung fields) and NAME.sc.dcm (the overlay); for a study "
                                   "NAME.<view>.sc.dcm, one overlay a view, and one report that references every "
                                   "image read"),
    engine: str = typer.Option("local", help="local, or ray: the same analysis on a Ray cluster, resumable "
                               "(needs radsight\\[ray])"),
    ray_address: Optional[str] = typer.Option(None, help="with --engine ray: the cluster (default: a local Ray)"),
) -> None:
    """Findings, triage, heatmaps and boxes for chest radiographs. Exit code 1 if nothing could be analyzed."""
    from rich.console import Console
    from rich.progress import Progress

    from radsight.concurrency import default_workers, threads_per_worker
    from radsight.pipeline import analyze_files, expand_inputs
    from radsight.tally import Tally

    given = list(paths or []) + ([_example_path()] if example else [])
    if not given:
        raise _fail("no input: give files or folders, or --example")
    files = expand_inputs(given)
    if not files:
        raise _fail(f"no DICOM, PNG or JPEG files in {', '.join(map(str, given))}", code=1)
    _use_device(device)
    from radsight.study import group_studies
    from radsight.study_cmd import default_model, run_studies
    studies = group_studies(files, one_study=study)
    model = model or default_model(studies, study)
    workers = min(workers or default_workers(len(files)), len(files))
    from radsight.core import FINDINGS
    wanted = [n.strip() for n in heatmaps_for.split(",") if n.strip()]
    wanted = list(FINDINGS) if wanted == ["all"] else wanted
    predictor = _predictor(model, lung_model if anatomy else None, threads_per_worker(workers),
                           bone_model if bone_views else None, bone_views, explain, explain_layer)
    unknown = [n for n in wanted if n not in predictor.cfg.labels and n not in FINDINGS]
    if unknown:
        raise _fail(f"--heatmaps-for: {', '.join(unknown)}: not a label of {predictor.cfg.name} "
                    f"({', '.join(predictor.cfg.labels)})")
    console, err = Console(soft_wrap=True), Console(stderr=True, soft_wrap=True)
    if engine not in ("local", "ray"):
        raise _fail(f"--engine {engine!r}: choose local or ray")
    if engine == "ray":
        from radsight.ray_engine import Job, run_on_ray, run_studies_on_ray
        job = Job(model, lung_model if anatomy else None, bone_model if bone_views else None, bone_views, explain,
                  explain_layer, allow_ood, tuple(wanted), dicom_out)
        if study or predictor.cfg.reads_lateral:
            return _analyze_on_ray(run_studies_on_ray(studies, out, job, ray_address, workers), len(studies),
                                   "studies", out, save_predictions, predictor.cfg.findings, console, err)
        return _analyze_on_ray(run_on_ray(files, out, job, ray_address, workers), len(files), "images", out,
                               save_predictions, predictor.cfg.findings, console, err)
    if study or predictor.cfg.reads_lateral:
        done, _ = run_studies(studies, out, predictor, min(workers, len(studies)), wanted, console, err, quiet,
                              dicom_out, allow_ood)
        _save_predictions(save_predictions, [o.prediction.study for o in done], predictor.cfg.findings,
                          [[f.probability for f in o.prediction.findings] for o in done])
        if not done:
            raise typer.Exit(1)
        return
    tally = Tally(console, err, quiet)
    # A bar only on a terminal (piped, it would leave a blank line); each image's line is printed as it finishes.
    with Progress(console=err, transient=True, disable=len(files) <= 3 or not err.is_terminal) as progress:
        task = progress.add_task("analyzing", total=len(files))
        for outcome in analyze_files(files, out, predictor, workers, allow_ood, wanted, dicom_out):
            progress.advance(task)
            if outcome.error is not None:
                tally.failure(str(outcome.error))
            else:
                tally.success(outcome, _summary_line(outcome, out))
    seconds, done = tally.seconds, tally.done
    _save_predictions(save_predictions, [o.path.name for o in done], predictor.cfg.findings,
                      [[f.probability for f in o.prediction.findings] for o in done])
    rate = len(done) / seconds if seconds > 0 else float("inf")
    tally.say(f"analyzed {len(done)} of {len(files)} images in {seconds:.1f} s ({rate:.2f} images/s); "
              f"{tally.failed} failed; outputs in {out}")
    if not done:
        raise typer.Exit(1)


def _analyze_on_ray(outcomes, total: int, unit: str, out: Path, save_predictions, findings, console, err) -> None:
    """Print the engine's ``outcomes`` (``ray_engine.Done``) of ``total`` images or studies (``unit``) as they come."""
    from radsight.tally import Tally
    tally = Tally(console, err)
    try:
        for d in outcomes:
            for note in (d.notes or "").splitlines():
                tally.note(note)
            if d.error:
                tally.failure(d.error)
            elif d.skipped:
                tally.skipped += 1
            else:
                tally.success(d, f"{d.path} -> {out / d.json}")
    except ValueError as exc:
        raise _fail(str(exc))
    done = tally.done
    _save_predictions(save_predictions, [Path(d.path).name for d in done], findings, [d.probabilities for d in done])
    tally.say(f"analyzed {len(done)} of {total} {unit} on Ray in {tally.seconds:.1f} s; {tally.skipped} already "
              f"analyzed; {tally.failed} failed; outputs in {out}")
    if not done and not tally.skipped:
        raise typer.Exit(1)


def _save_predictions(path: Optional[Path], names: list[str], findings, probabilities) -> None:
    """``--save-predictions``: every probability of what was analyzed, one row a name (nothing when none was)."""
    if path is not None and names:
        from radsight.data.predictions import write_predictions
        write_predictions(path, names, findings, probabilities)


def _summary_line(outcome, out: Path) -> str:
    p = outcome.prediction
    names = ", ".join(f"{f.name} {f.probability:.2f}" for f in p.positives) or "none above threshold"
    ctr = ""
    if p.anatomy is not None:
        a = p.anatomy
        if a.ctr is not None and a.ctr.value is not None:
            ctr = f"  CTR {a.ctr.value:.2f}"
        else:
            ctr = f"  lungs: {a.reason or (a.ctr and a.ctr.reason) or 'CTR not measurable'}"
    ood = "  OUT OF DISTRIBUTION" if p.ood is not None and not p.ood.in_distribution else ""
    return (f"{outcome.path}{ood}  triage {p.triage.priority} ({p.triage.abnormal_probability:.2f})  "
            f"findings: {names}{ctr}{'  views: ' + ', '.join(p.views) if p.views else ''}  "
            f"-> {out / outcome.files.json}")


@app.command()
def export(
    checkpoint: Path = typer.Argument(..., exists=True, dir_okay=False),
    out: Path = typer.Option(..., help="model folder to write (model.onnx, config.json)"),
    name: str = typer.Option(...),
    version: str = typer.Option("0.1.0"),
    license: str = typer.Option("MIT"),
    training_data: str = typer.Option(""),
) -> None:
    """Export a checkpoint to an ONNX model folder (needs radsight\\[train])."""
    from radsight.train.export import export_checkpoint
    cfg = export_checkpoint(checkpoint, out, name, version, license, training_data)
    typer.echo(f"wrote {cfg.weights_path} (sha256 {cfg.sha256[:16]}...) and {out / 'config.json'}")


@app.command()
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
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL, help="lung model, for models that read the thorax"),
) -> None:
    """Choose operating thresholds on a validation split and store them in the model's config.

    Each finding gets Youden's J (or a sensitivity target); urgent findings also get their own high-specificity
    operating point, withheld from triage below the config's bars."""
    import numpy as np

    from radsight.calibration import (BenchmarkSplitError, check_not_benchmark, choose_thresholds,
                                      choose_urgent_points, label_matrix)
    from radsight.triage import UrgentPolicy, describe_point
    from radsight.data.manifest import read_manifest
    from radsight.models.store import sha256_file
    from radsight.pipeline import score_manifest

    full = read_manifest(manifest, images)
    rows = full.select(split)
    try:
        check_not_benchmark(rows)
    except BenchmarkSplitError as exc:
        raise _fail(str(exc))
    if not len(rows):
        raise _fail(f"manifest has no rows with split {split!r}")
    predictor = _predictor(model, lung_model)
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
    cfg.sha256 = sha256_file(cfg.weights_path)
    cfg.save(cfg.directory)
    for label in cfg.labels:
        typer.echo(f"{label:20s} {cfg.thresholds[label]:.4f}  {cfg.threshold_methods[label]}")
    for label, point in cfg.urgent.items():
        typer.echo(describe_point(label, point, policy))
    typer.echo(f"thresholds from {int(ok.sum())} images of split {split!r} written to {cfg.directory / 'config.json'}")


@app.command("fit-ood")
def fit_ood(
    model: str = typer.Option(..., help="registered model name or model folder (its config.json is updated)"),
    fit: list[str] = typer.Option(..., help="CSV[#split] of chest radiographs to fit on (repeatable; never the "
                                            "benchmark)"),
    held: list[str] = typer.Option(..., help="CSV[#split] of held-out chest radiographs that set the threshold"),
    refuse_rate: float = typer.Option(0.005, help="share of the held-out radiographs the threshold refuses"),
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL, help="lung model, for models that read the thorax"),
) -> None:
    """Fit a model's out-of-distribution gate and store it beside the model.

    Mahalanobis distances of the classifier's pooled features, a thumbnail and image statistics to the fitting
    radiographs; the threshold refuses REFUSE_RATE of the held-out ones (needs scikit-learn)."""
    from radsight.ood_cmd import run_fit
    if any("benchmark" in s for s in fit + held):
        raise _fail("refusing to fit on images marked as benchmark: they are for measuring only")
    predictor = _predictor(model, lung_model)
    try:
        ood = run_fit(predictor, fit, held, refuse_rate)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc))
    typer.echo(f"gate fitted on {ood['fitted_images']} images; threshold {ood['threshold']:.3f} refuses "
               f"{ood['held_out_refused']:.1%} of {ood['held_out_images']} held-out radiographs; "
               f"written to {predictor.cfg.directory / ood['file']}")


@app.command()
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
                                         help="reference lung masks: evaluate the lung model (Dice, IoU, Hausdorff)"),
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
) -> None:
    """Measure a model on labelled images it did not train on.

    Classification: AUROC with patient-bootstrap 95% CIs, operating points, urgent flags, triage, calibration,
    localization, CTR and CAM-in-thorax, and a paired comparison with a reference; with --explain, per explanation
    method; with --robustness, under attacks and natural changes. With --masks: lung segmentation Dice, IoU and
    Hausdorff. With --bone-pairs: bone suppression PSNR, SSIM and MS-SSIM."""
    if ood_test:
        from radsight.ood_cmd import run_ood_evaluation
        try:
            run_ood_evaluation(_predictor(model or DEFAULT_MODEL, lung_model), ood_test, out)
        except (OSError, ValueError) as exc:
            raise _fail(str(exc))
        return
    if images is None:
        raise _fail("--images is required (except with --ood-test)")
    if bone_pairs is not None:
        from radsight.evaluate_bone import run_bone_evaluation
        from radsight.models.store import ModelNotFound
        try:
            run_bone_evaluation(bone_pairs, images, targets, out, bone_model, lung_model, split or "test", bootstrap)
        except (ModelNotFound, ValueError) as exc:
            raise _fail(str(exc))
        return
    if manifest is None:
        raise _fail("--manifest is required (or --bone-pairs, --ood-test)")
    if model is not None and _is_view_model(model):
        return _evaluate_views(model, manifest, images, out, subset, split)
    if masks is not None:
        from radsight.evaluate_seg import run_segmentation_evaluation
        try:
            run_segmentation_evaluation(manifest, images, masks, out, lung_model, [s for s in subset.split(",") if s],
                                        split)
        except ValueError as exc:
            raise _fail(str(exc))
        return
    from radsight.evaluate_cmd import run_evaluation
    if model is not None and predictions is not None:
        raise _fail("give one of --model or --predictions, not both")
    if predictions is None:
        model = model or DEFAULT_MODEL
    elif explain or robustness:
        raise _fail("--explain and --robustness need a --model, not --predictions")
    methods = []
    if explain:
        from radsight.evaluate_explain import chosen_methods
        try:
            methods = chosen_methods(explain)
        except ValueError as exc:
            raise _fail(str(exc))
    run_evaluation(manifest, images, out, model, predictions, reference, split, bootstrap, methods, robustness)


def _is_view_model(model: str) -> bool:
    from radsight.models.config import VIEW_CLASSIFICATION
    from radsight.models.store import ModelNotFound, get_model
    try:
        return get_model(model).task == VIEW_CLASSIFICATION
    except (ModelNotFound, ValueError):
        return False


def _evaluate_views(model: str, manifest: Path, images: Path, out: Path, subset: str, split: Optional[str]) -> None:
    """A view classifier on the manifest's rows (``--subset``: patient ids; ``--split``: rows of that split)."""
    from radsight.data.view_manifest import view_rows
    from radsight.view_model import ViewModel, evaluate_views
    patients = [p for p in subset.split(",") if p]
    rows = [r for r in view_rows([(str(manifest), str(images))])
            if (not patients or r.patient in patients) and (split is None or r.split == split)]
    if not rows:
        raise _fail("no rows to evaluate")
    m = evaluate_views(ViewModel(model), rows, out)
    f = m["overall"]
    typer.echo(f"{len(rows)} images ({f['laterals']} laterals): accuracy {f['accuracy']:.3f}; report in {out}")


@app.command()
def serve(
    data_dir: Path = typer.Option(Path("radsight-data"), help="studies, results and the SQLite job store"),
    token: Optional[str] = typer.Option(None, envvar="RADSIGHT_API_TOKEN", help="bearer token for writes"),
    host: str = typer.Option("127.0.0.1", help="listen address (loopback by default)"),
    port: int = typer.Option(8000),
    model: str = typer.Option(DEFAULT_MODEL),
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL),
    bone_model: Optional[str] = typer.Option(None, help=f"bone suppression model (default: {DEFAULT_BONE_MODEL} "
                                             f"when installed)"),
    bone_views: bool = typer.Option(True, help="soft-tissue and bone views when a bone model is there"),
    workers: int = typer.Option(1, help="analysis threads"),
    max_upload_mb: int = typer.Option(256, help="largest accepted upload"),
    orthanc: Optional[str] = typer.Option(None, help="Orthanc URL to poll for radiographs and store results to"),
    cors_origin: list[str] = typer.Option([], help="allow browser calls from this origin (none by default)"),
    allow_ood: bool = typer.Option(False, "--allow-ood", help="queue images the out-of-distribution gate refuses "
                                                              "(default: answer 422)"),
    explain: str = typer.Option("cam", help="method of the heatmaps and boxes (see analyze); the viewer can also "
                                            "show cam, gradcam and gradcam++ maps"),
    device: str = typer.Option("auto", envvar="RADSIGHT_DEVICE", help="auto, cpu or cuda (see analyze)"),
    dimse_port: Optional[int] = typer.Option(None, help="also a DICOM node: C-STORE SCP and C-ECHO on this port "
                                             "(same listen address)"),
    ae_title: str = typer.Option("RADSIGHT", help="the DICOM node's AE title"),
    dimse_allow: list[str] = typer.Option([], help="a caller allowed to send: AE, @address or AE@address "
                                                   "(repeatable; none: any caller)"),
    dimse_destination: Optional[str] = typer.Option(None, help="AE@host:port: send results (SR, SEG, SC) there with "
                                                    "C-STORE, retrying until it takes them"),
    db: Optional[str] = typer.Option(None, envvar="RADSIGHT_DB", help="postgresql://... : a job store shared by "
                                     "replicas (give them one --data-dir on shared storage); default SQLite"),
    lease_seconds: float = typer.Option(30.0, help="with --db: a study whose replica stops renewing its lease this "
                                                   "long is analyzed by another"),
    gather_seconds: float = typer.Option(0.0, min=0.0, help="DICOM instances of one study that arrive apart (one "
                                         "association or request each) are analyzed together once none has come "
                                         "for this long; 0: each request or association is analyzed as it ends"),
) -> None:
    """The triage worklist service: REST API, STOW-RS, Orthanc polling, the reader's viewer (needs radsight\\[serve])."""
    import logging

    import uvicorn

    from radsight.service.app import Settings, create_app
    if not token:
        raise _fail("an API token is required: --token or RADSIGHT_API_TOKEN")
    _use_device(device)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    settings = Settings(data_dir=data_dir, token=token, model=model, lung_model=lung_model,
                        bone_model=bone_model if bone_views else None, bone_views=bone_views, workers=workers,
                        max_upload_bytes=max_upload_mb * 1024 * 1024, orthanc_url=orthanc,
                        cors_origins=list(cors_origin), allow_ood=allow_ood, explain=explain, dimse_port=dimse_port,
                        dimse_host=host, ae_title=ae_title, dimse_allowed=tuple(dimse_allow),
                        dimse_destination=dimse_destination, db=db, lease_seconds=lease_seconds,
                        gather_seconds=gather_seconds)
    try:
        application = create_app(settings)
    except ValueError as exc:  # an unknown method, one that needs radsight[train], a model it cannot read
        raise _fail(str(exc))
    uvicorn.run(application, host=host, port=port, log_level="info", access_log=False)


models_app = typer.Typer(no_args_is_help=False, help="Registered models; publishers' weights to pull or import.")
app.add_typer(models_app, name="models")


@models_app.callback(invoke_without_command=True)
def _models(ctx: typer.Context) -> None:
    """Registered models (the default) and publishers' weights: list, pull, import."""
    if ctx.invoked_subcommand is None:
        models_list()


@models_app.command("list")
def models_list() -> None:
    """Every model radsight knows: installed ones and publishers' weights that can be pulled."""
    from radsight.models.listing import model_rows
    for row in model_rows():
        typer.echo(row)


@models_app.command("pull")
def models_pull(name: str = typer.Argument(..., help="a published model, as `radsight models list` names it"),
                cache_dir: Optional[Path] = typer.Option(None, help="store root (default $RADSIGHT_HOME or "
                                                                     "~/.cache/radsight)")) -> None:
    """Download the publisher's weights (resumable, sha256-checked) and convert them (needs radsight\\[train])."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from radsight.models.pull import pull
    _use_cache_dir(cache_dir)
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=_stderr(), transient=True) as bar:
        task = bar.add_task(f"downloading {name}", total=None)
        cfg = _models_call(pull, name, lambda done, total: bar.update(task, completed=done, total=total))
    typer.echo(f"{cfg.name}: {len(cfg.findings)} outputs, input {cfg.input.size}px -> {cfg.directory}")


@models_app.command("import")
def models_import(fmt: str = typer.Argument(..., metavar="FORMAT", help="xrv-densenet | xrv-resnet | chexnet | gusarev-bone"),
                  file: Path = typer.Argument(..., exists=True, dir_okay=False),
                  name: str = typer.Option(..., help="name to register; a published name takes its labels, "
                                                     "thresholds and input contract"),
                  cache_dir: Optional[Path] = typer.Option(None, help="store root")) -> None:
    """Convert a checkpoint file you already have (needs radsight\\[train])."""
    from radsight.models.pull import import_file
    _use_cache_dir(cache_dir)
    cfg = _models_call(import_file, fmt, file, name)
    typer.echo(f"{cfg.name}: {len(cfg.findings)} outputs, input {cfg.input.size}px -> {cfg.directory}")


@models_app.command("quantize")
def models_quantize(
    name: str = typer.Argument(..., help="a registered classifier"),
    manifest: Path = typer.Option(..., exists=True, dir_okay=False, help="calibration images (never benchmark)"),
    images: Path = typer.Option(..., exists=True, file_okay=False),
    split: str = typer.Option("train", help="manifest split the activations are calibrated on"),
    limit: int = typer.Option(300, min=16, help="calibration images"),
    check_manifest: Path = typer.Option(..., exists=True, dir_okay=False, help="labelled images it is checked on"),
    check_images: Path = typer.Option(..., exists=True, file_okay=False),
    check_split: Optional[str] = typer.Option(None, help="only this split of the check manifest"),
    max_delta: float = typer.Option(0.02, help="refused when any probability moves more than this"),
    out_name: Optional[str] = typer.Option(None, "--name", help="name to register (default NAME-int8)"),
    cache_dir: Optional[Path] = typer.Option(None, help="store root"),
) -> None:
    """Register an int8 variant (ONNX Runtime static quantization), refused when it moves the answers too far
    (needs radsight\\[train])."""
    from radsight.models.quantize import QuantizationRefused, figures
    from radsight.quantize_cmd import run_quantize
    _use_cache_dir(cache_dir)
    try:
        cfg = run_quantize(_predictor(name), manifest, images, split, limit, check_manifest, check_images, check_split,
                           max_delta, out_name)
    except QuantizationRefused as exc:
        raise _fail(str(exc), code=1)
    except ValueError as exc:
        raise _fail(str(exc))
    typer.echo(f"{cfg.name} -> {cfg.directory}: checked on {figures(cfg.quantization['check'])}")


data_app = typer.Typer(no_args_is_help=True, help="Public chest X-ray releases as radsight manifests.")
app.add_typer(data_app, name="data")


@data_app.command("import")
def data_import(
    release: str = typer.Argument(..., help="chestxray14 | chexpert | mimic-cxr-jpg | padchest | vindr-cxr | "
                                             "rsna-pneumonia | covid-chestxray"),
    root: Path = typer.Argument(..., exists=True, file_okay=False, help="the release's folder, as published"),
    out: Path = typer.Option(..., help="manifest CSV to write (images relative to ROOT)"),
    uncertain: str = typer.Option("ignore", help="CheXpert/MIMIC uncertain labels (-1): ignore (NaN), ones or zeros"),
) -> None:
    """Write a release's manifest: its labels on the 14 NIH findings (empty where it does not label them), its
    other findings as extra columns, patient ids, and its own split where it has one."""
    from radsight.data.adapters import import_release
    try:
        count = import_release(release, root, out, uncertain)
    except (OSError, ValueError) as exc:
        raise _fail(str(exc))
    typer.echo(f"{release}: {count} images -> {out} (images relative to {root})")


@data_app.command("pack")
def data_pack(
    manifest: list[Path] = typer.Option(..., exists=True, dir_okay=False, help="manifest CSV; repeat, each with "
                                                                             "its --images, to pack several"),
    images: list[Path] = typer.Option(..., exists=True, file_okay=False, help="folder the manifest's images are in"),
    out: Path = typer.Option(..., help="folder for the shards and their index.json"),
    splits: str = typer.Option("train,val", help="splits to pack"),
    shard_size: int = typer.Option(2000, min=1, help="samples a shard"),
    input_size: int = typer.Option(64, help="the training input size the shards are made for"),
    region: str = typer.Option("image", help="image | thorax (crop to the lungs first)"),
    sources: str = typer.Option("original", help="input channels, some of original, lung_masked, bone_suppressed"),
    bone_model: str = typer.Option(DEFAULT_BONE_MODEL, help="the model for bone_suppressed"),
) -> None:
    """Pack manifests into WebDataset tar shards of model inputs and targets, for radsight train --shards (needs
    radsight\\[train])."""
    if len(manifest) != len(images):
        raise _fail("give one --images for each --manifest")
    from radsight.train.loop import TrainConfig
    from radsight.train.shards import pack
    try:
        cfg = TrainConfig(manifest=str(manifest[0]), images=str(images[0]), out=str(out), input_size=input_size,
                          region=region, sources=tuple(s.strip() for s in sources.split(",") if s.strip()),
                          bone_model=bone_model)
        index = pack([(str(m), str(i)) for m, i in zip(manifest, images)], cfg.input_builder(f"packed in {out}"), out,
                     tuple(s.strip() for s in splits.split(",") if s.strip()), shard_size, cfg.source_models)
    except (KeyError, ValueError) as exc:
        raise _fail(str(exc).strip("'\""))
    for split, part in index["splits"].items():
        typer.echo(f"{split}: {part['count']} samples in {len(part['shards'])} shards ({part['skipped']} skipped)")


def _use_device(device: str) -> None:
    """Every ONNX Runtime session of this process runs on ``device`` (``radsight.runtime.execution_providers``)."""
    from radsight.runtime import execution_providers
    try:
        execution_providers(device)
    except ValueError as exc:
        raise _fail(str(exc))
    os.environ["RADSIGHT_DEVICE"] = device


def _use_cache_dir(cache_dir: Optional[Path]) -> None:
    if cache_dir is not None:
        os.environ["RADSIGHT_HOME"] = str(cache_dir)


def _models_call(fn, *args):
    from radsight.models.download import DownloadError
    from radsight.models.pull import ConversionUnavailable
    from radsight.models.store import ModelNotFound
    try:
        return fn(*args)
    except (DownloadError, ConversionUnavailable, ModelNotFound, ValueError) as exc:
        raise _fail(str(exc))


def _stderr():
    from rich.console import Console
    return Console(stderr=True)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
