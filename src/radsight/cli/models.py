"""``radsight models``: registered models; publishers' weights to pull, import or quantize."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from radsight.cli.common import build_predictor, fail, models_call, stderr, use_cache_dir

app = typer.Typer(no_args_is_help=False, help="Registered models; publishers' weights to pull or import.")


@app.callback(invoke_without_command=True)
def _models(ctx: typer.Context) -> None:
    """Registered models (the default) and publishers' weights: list, pull, import."""
    if ctx.invoked_subcommand is None:
        models_list()


@app.command("list")
def models_list() -> None:
    """Every model radsight knows: installed ones and publishers' weights that can be pulled."""
    from radsight.models.listing import model_rows
    for row in model_rows():
        typer.echo(row)


@app.command("pull")
def models_pull(name: str = typer.Argument(..., help="a published model, as `radsight models list` names it"),
                cache_dir: Optional[Path] = typer.Option(None, help="store root (default $RADSIGHT_HOME or "
                                                                     "~/.cache/radsight)")) -> None:
    """Download the publisher's weights (resumable, sha256-checked) and convert them (needs radsight\\[train])."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    from radsight.convert.pull import pull
    use_cache_dir(cache_dir)
    with Progress("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=stderr(), transient=True) as bar:
        task = bar.add_task(f"downloading {name}", total=None)
        cfg = models_call(pull, name, lambda done, total: bar.update(task, completed=done, total=total))
    typer.echo(f"{cfg.name}: {len(cfg.findings)} outputs, input {cfg.input.size}px -> {cfg.directory}")


@app.command("import")
def models_import(fmt: str = typer.Argument(..., metavar="FORMAT", help="xrv-densenet | xrv-resnet | chexnet | gusarev-bone | xrv-pspnet | xrv-riken-age"),
                  file: Path = typer.Argument(..., exists=True, dir_okay=False),
                  name: str = typer.Option(..., help="name to register; a published name takes its labels, "
                                                     "thresholds and input contract"),
                  cache_dir: Optional[Path] = typer.Option(None, help="store root")) -> None:
    """Convert a checkpoint file you already have (needs radsight\\[train])."""
    from radsight.convert.pull import import_file
    use_cache_dir(cache_dir)
    cfg = models_call(import_file, fmt, file, name)
    typer.echo(f"{cfg.name}: {len(cfg.findings)} outputs, input {cfg.input.size}px -> {cfg.directory}")


@app.command("quantize")
def models_quantize(
    name: str = typer.Argument(..., help="a registered classifier, segmentation (lung, anatomy), age-sex, bone or "
                               "view model"),
    manifest: Path = typer.Option(..., exists=True, dir_okay=False, help="calibration images (never benchmark)"),
    images: Path = typer.Option(..., exists=True, file_okay=False),
    split: str = typer.Option("train", help="manifest split the activations are calibrated on"),
    limit: int = typer.Option(300, min=16, help="calibration images"),
    check_manifest: Path = typer.Option(..., exists=True, dir_okay=False, help="labelled images it is checked on"),
    check_images: Path = typer.Option(..., exists=True, file_okay=False),
    check_split: Optional[str] = typer.Option(None, help="only this split of the check manifest"),
    check_masks: Optional[Path] = typer.Option(None, exists=True, file_okay=False, help="segmentation models: "
                                               "reference masks of the check images (as evaluate --task anatomy)"),
    max_delta: float = typer.Option(0.02, help="refused when any probability moves more than this"),
    max_dice_drop: float = typer.Option(0.002, help="segmentation: refused when a structure's mean Dice falls "
                                        "more than this"),
    max_age_years: float = typer.Option(1.0, help="age-sex: refused when an age moves more than this"),
    max_psnr_drop: float = typer.Option(0.2, help="bone suppression: refused when the soft-tissue view's mean PSNR "
                                        "against the check pairs' targets falls more than this (dB)"),
    out_name: Optional[str] = typer.Option(None, "--name", help="name to register (default NAME-int8)"),
    cache_dir: Optional[Path] = typer.Option(None, help="store root"),
) -> None:
    """Register an int8 variant (ONNX Runtime static quantization), refused when it moves the answers too far
    (needs radsight\\[train]). Each kind has its check against the float model: a classifier's probabilities and
    AUROC, a segmentation model's Dice (--check-masks), an age-sex model's ages and P(female), a bone model's PSNR
    (a paired check manifest, targets beside --check-images), a view model's frontal/lateral decisions."""
    from radsight.convert.quantize import QuantizationRefused, figures
    from radsight.convert.quantize_helpers import Bounds
    from radsight.convert.quantize_run import run_helper_quantize, run_quantize
    from radsight.models.config import CLASSIFICATION
    use_cache_dir(cache_dir)
    try:
        from radsight.models.store import DEFAULT_LUNG_MODEL, get_model
        cfg = models_call(get_model, name)
        if cfg.task == CLASSIFICATION:  # the lung model crops the thorax for a model that reads it
            cfg = run_quantize(build_predictor(name, DEFAULT_LUNG_MODEL), manifest, images, split, limit,
                               check_manifest, check_images, check_split, max_delta, out_name)
            typer.echo(f"{cfg.name} -> {cfg.directory}: checked on {figures(cfg.quantization['check'])}")
            return
        cfg = run_helper_quantize(cfg, manifest, images, split, limit, check_manifest, check_images, check_split,
                                  check_masks, Bounds(max_dice_drop, max_age_years, max_delta, max_psnr_drop), out_name)
    except QuantizationRefused as exc:
        raise fail(str(exc), code=1)
    except ValueError as exc:
        raise fail(str(exc))
    typer.echo(f"{cfg.name} -> {cfg.directory}: checked on {cfg.quantization['check']}")
