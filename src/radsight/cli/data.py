"""``radsight data``: public chest X-ray releases as radsight manifests, and training shards."""
from __future__ import annotations

from pathlib import Path

import typer

from radsight.cli.common import fail, training_log
from radsight.models.store import DEFAULT_BONE_MODEL

app = typer.Typer(no_args_is_help=True, help="Public chest X-ray releases as radsight manifests.")


@app.command("import")
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
        raise fail(str(exc))
    typer.echo(f"{release}: {count} images -> {out} (images relative to {root})")


@app.command("pack")
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
        raise fail("give one --images for each --manifest")
    from radsight.train.loop import TrainConfig
    from radsight.train.shards import pack
    try:
        cfg = TrainConfig(manifest=str(manifest[0]), images=str(images[0]), out=str(out), input_size=input_size,
                          region=region, sources=tuple(s.strip() for s in sources.split(",") if s.strip()),
                          bone_model=bone_model)
        with training_log():
            index = pack([(str(m), str(i)) for m, i in zip(manifest, images)], cfg.input_builder(f"packed in {out}"),
                         out, tuple(s.strip() for s in splits.split(",") if s.strip()), shard_size,
                         cfg.source_models)
    except (KeyError, ValueError) as exc:
        raise fail(str(exc).strip("'\""))
    for split, part in index["splits"].items():
        typer.echo(f"{split}: {part['count']} samples in {len(part['shards'])} shards ({part['skipped']} skipped)")
