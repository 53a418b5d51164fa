"""``radsight train`` and ``radsight export``: fit a head's model, and export its checkpoint to ONNX
(radsight[train])."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from radsight.cli.common import echo_once, fail, training_log
from radsight.models.store import DEFAULT_BONE_MODEL


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
    task: str = typer.Option("findings", help="a head's task word: findings | abnormal (binary pretraining) | "
                                              "anatomy (lung segmentation) | bone-suppression | view (frontal or "
                                              "lateral) | age-sex | nodules"),
    views: str = typer.Option("frontal", help="classification: frontal, or frontal,lateral (a two-view "
                                              "architecture; manifests with study_id and view columns)"),
    masks: list[Path] = typer.Option([], exists=True, file_okay=False,
                                     help="anatomy: mask folder, one for each --manifest: a subfolder per structure "
                                          "(right_lung, left_lung, heart, right_clavicle, left_clavicle) or lung "
                                          "masks alone"),
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
                                             help="classification: start from this checkpoint (e.g. --task abnormal); "
                                                  "anatomy, age-sex: a U-Net's model.onnx too"),
    simulated_share: float = typer.Option(0.5, min=0.0, max=1.0,
                                          help="nodules: the share of each batch drawn from films without a nodule, "
                                               "with simulated ones (0: real nodule films only)"),
    metadata: Optional[Path] = typer.Option(None, exists=True, dir_okay=False,
                                            help="age-sex: NIH's Data_Entry table (CSV or .csv.gz), filling the "
                                                 "manifests' empty age and sex cells by image name"),
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
    """Train a head's model: findings (one view or two), abnormal (binary pretraining), anatomy (lung
    segmentation), bone-suppression (GAN) or view (needs radsight\\[train]). Resumes from OUT."""
    import importlib

    from radsight.heads.registry import get_head
    from radsight.train.request import TrainRequest
    if len(manifest) != len(images):
        raise fail("give one --images for each --manifest")
    if bool(manifest) == bool(shards):
        raise fail("give --manifest and --images, or --shards (findings, abnormal)")
    try:
        head = get_head(task)
    except ValueError as exc:
        raise fail(str(exc))
    if head.train is None:
        raise fail(f"--task {head.task} is not trained here: {head.summary}")
    if shards and head.task not in ("findings", "abnormal"):
        raise fail(f"--task {head.task} trains from --manifest and --images; --shards is for findings and abnormal")
    request = TrainRequest(
        task=head.task, datasets=[(str(m), str(i)) for m, i in zip(manifest, images)] or [("", "")], out=str(out),
        shards=str(shards) if shards else None, scalp=scalp, device=device, precision=precision,
        channels_last=channels_last, views=words(views), masks=tuple(str(m) for m in masks),
        targets=str(targets) if targets else None, stages=stages, kind=kind, holdout=words(holdout), val=words(val),
        iterations=iterations, checkpoint_every=checkpoint_every, region=region, sources=words(sources),
        bone_model=bone_model, init_from=str(init_from) if init_from else None, architecture=architecture,
        metadata=str(metadata) if metadata else None, simulated_share=simulated_share,
        input_size=input_size, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, threads=threads,
        stop_after=stop_after)
    module, function = head.train.split(":")
    ignored = request.ignored(getattr(importlib.import_module(module), "READS", set()))
    if ignored:
        raise fail(f"{', '.join(ignored)}: not an option of --task {head.task}")
    try:
        with training_log():
            line = getattr(importlib.import_module(module), function)(request)
    except (KeyError, ValueError) as exc:
        raise fail(str(exc).strip("'\""))
    echo_once(line)


def words(text: str) -> tuple[str, ...]:
    """A comma-separated option's words."""
    return tuple(w.strip() for w in text.split(",") if w.strip())


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
