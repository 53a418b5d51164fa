"""Lung segmentation training: U-Net, BCE + Dice loss, joint image/mask augmentation, checkpoints, resume."""
from __future__ import annotations

import csv
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from radsight.evaluate.overlap import dice, read_mask
from radsight.inputs.preprocess import InputSpec, prepare, resize
from radsight.io import load_image
from radsight.models.config import SEGMENTATION
from radsight.train import distributed
from radsight.train.data import normalise_batch, photometric, random_affine, warp
from radsight.train.distributed import Ranks, log
from radsight.train.fit import Plan, Task, fit
from radsight.train.loop import start_run
from radsight.train.registry import build, checkpoint_fields
from radsight.train.request import TrainRequest


@dataclass
class SegTrainConfig:
    """``manifest``: CSV with an ``image`` column, and optionally ``mask`` (the mask's file name; default the
    image's) and ``split``. With a ``split`` column and no ``holdout``/``val`` lists, rows of split ``train``
    train, rows of ``val`` choose the checkpoint and other rows are never read."""

    manifest: str
    images: str
    masks: str
    out: str
    holdout: list[str] = field(default_factory=list)  # images kept out of training, for evaluation
    val: list[str] = field(default_factory=list)  # images kept out of training to choose the checkpoint
    input_size: int = 256
    base_width: int = 12
    iterations: int = 800
    batch_size: int = 8
    lr: float = 2e-3
    seed: int = 0
    threads: int = 0
    checkpoint_every: int = 50
    stop_after: int | None = None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.input_size, mean=0.5, std=0.25, channels=1)


@dataclass
class MaskRows:
    """Manifest rows: image name -> its mask's name, and the names that train, choose and are held out."""

    mask_of: dict[str, str]
    train: list[str]
    val: list[str]
    holdout: list[str]


def mask_rows(cfg: SegTrainConfig) -> MaskRows:
    with open(cfg.manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    mask_of = {r["image"]: r.get("mask") or r["image"] for r in rows}
    if "split" in (rows[0] if rows else {}) and not cfg.val and not cfg.holdout:
        by = {s: [r["image"] for r in rows if r["split"] == s] for s in ("train", "val")}
        return MaskRows(mask_of, by["train"], by["val"], [])
    kept = set(cfg.holdout) | set(cfg.val)
    return MaskRows(mask_of, [r["image"] for r in rows if r["image"] not in kept], list(cfg.val), list(cfg.holdout))


def load_pairs(cfg: SegTrainConfig, names: list[str], mask_of: dict[str, str]) -> tuple[torch.Tensor, torch.Tensor]:
    size = cfg.input_size
    images = np.zeros((len(names), 1, size, size), np.float32)
    masks = np.zeros_like(images)
    with Progress(transient=True) as progress:
        task = progress.add_task("reading pairs", total=len(names))
        for i, n in enumerate(names):
            images[i, 0] = prepare(load_image(Path(cfg.images) / n), cfg.spec, normalised=False)[0][0]
            masks[i, 0] = read_mask(Path(cfg.masks) / mask_of[n], size, size)
            progress.advance(task)
    return torch.from_numpy(images), torch.from_numpy(masks)


def dice_bce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2, 3))
    soft_dice = (2 * inter + 1) / (prob.sum(dim=(1, 2, 3)) + target.sum(dim=(1, 2, 3)) + 1)
    return F.binary_cross_entropy_with_logits(logits, target) + (1 - soft_dice).mean()


class SegmentationTask(Task):
    """``checkpoint_every`` sampled steps a round, each from a generator seeded by the step (under torchrun, each
    rank draws its share of the batch from its own); the score is the val images' mean Dice (NaN without val
    images)."""

    unit = "checkpoint"

    def __init__(self, cfg: SegTrainConfig, x: torch.Tensor, y: torch.Tensor, rows: MaskRows, net: torch.nn.Module,
                 ranks: Ranks = Ranks()):
        self.cfg, self.x, self.y, self.rows, self.net, self.ranks = cfg, x, y, rows, net, ranks

    def batches(self, round: int):
        cfg, size = self.cfg, self.ranks.part(self.cfg.batch_size)
        for it in range(round * cfg.checkpoint_every, min((round + 1) * cfg.checkpoint_every, cfg.iterations)):
            gen = self.ranks.generator(cfg.seed, it)
            idx = torch.randint(0, len(self.x), (size,), generator=gen)
            theta = random_affine(size, gen)
            yield (normalise_batch(photometric(warp(self.x[idx], theta), gen), cfg.spec),
                   (warp(self.y[idx], theta) > 0.5).float())

    def loss(self, model, batch) -> torch.Tensor:
        x, y = batch
        return dice_bce(model(x), y)

    def measure(self, round: int, loss: float) -> dict:
        rows = self.rows
        val = float(np.mean(list(mask_dice(self.net, self.cfg, rows.val, rows.mask_of).values()))) \
            if rows.val else float("nan")
        return {"iteration": min((round + 1) * self.cfg.checkpoint_every, self.cfg.iterations), "loss": loss,
                "val_dice": val, "score": val}

    def line(self, entry: dict) -> str:
        return f"iteration {entry['iteration']}/{self.cfg.iterations}  loss {entry['loss']:.4f}  " \
               f"val Dice {entry['val_dice']:.4f}"

    def fields(self) -> dict:
        return {**checkpoint_fields(self.net), "task": SEGMENTATION, "input": asdict(self.cfg.spec),
                "labels": ["lung"]}


def train_segmentation(cfg: SegTrainConfig) -> Path:
    """Train for ``iterations`` sampled steps, checkpointing every ``checkpoint_every`` to ``out/last.pt`` (the
    best val Dice to ``out/best.pt``); re-running resumes. Held-out images are scored at the end. Under
    ``torchrun``, data parallel on CPUs (gloo)."""
    ranks = distributed.start(gpu=False)
    out = start_run(cfg, ranks.main)
    say = distributed.sayer(ranks)
    rows = mask_rows(cfg)
    x, y = load_pairs(cfg, rows.train, rows.mask_of)
    say(f"training on {len(rows.train)} pairs; {len(rows.val)} choose the checkpoint; {len(rows.holdout)} held out"
        + (f"; {ranks.world} processes" if ranks.distributed else ""))
    net = build("unet", in_chans=1, num_classes=1, base=cfg.base_width)
    model = torch.nn.parallel.DistributedDataParallel(net) if ranks.distributed else net
    rounds = -(-cfg.iterations // cfg.checkpoint_every)
    stop_after = -(-cfg.stop_after // cfg.checkpoint_every) if cfg.stop_after else None
    fit(SegmentationTask(cfg, x, y, rows, net, ranks), net, Plan(rounds, cfg.iterations, cfg.lr, stop_after=stop_after),
        out, model=model, ranks=ranks, say=say)
    finished = torch.load(out / "last.pt", map_location="cpu", weights_only=False)["round"] + 1 == rounds
    chosen = out / "best.pt" if rows.val else out / "last.pt"
    distributed.stop(ranks)
    if rows.holdout and finished and ranks.main:
        net.load_state_dict(torch.load(chosen, map_location="cpu", weights_only=False)["model"])
        scores = mask_dice(net, cfg, rows.holdout, rows.mask_of)
        (out / "holdout_dice.json").write_text(json.dumps(scores, indent=2) + "\n")
        log.info(f"held-out Dice of {chosen.name} (at mask resolution): "
                 + ", ".join(f"{k} {v:.4f}" for k, v in scores.items()))
    return chosen


@torch.no_grad()
def mask_dice(net: torch.nn.Module, cfg: SegTrainConfig, names: list[str],
              mask_of: dict[str, str]) -> dict[str, float]:
    """Dice of the raw thresholded output against each named image's mask, at the mask's resolution."""
    was_training = net.training
    net.eval()
    scores = {}
    for name in names:
        image = load_image(Path(cfg.images) / name)
        x = torch.from_numpy(prepare(image, cfg.spec, normalised=False)[0])[None]
        prob = torch.sigmoid(net(normalise_batch(x, cfg.spec)))[0, 0].numpy()
        truth = read_mask(Path(cfg.masks) / mask_of[name], image.height, image.width) > 0.5
        scores[name] = dice(resize(prob, image.height, image.width) > 0.5, truth)
    net.train(was_training)
    return scores


# the options of radsight train this task reads (TrainRequest.ignored names the others given)
READS = {"masks", "holdout", "val", "input_size", "iterations", "checkpoint_every", "batch_size"}


def from_request(r: TrainRequest) -> str:
    """``radsight train --task anatomy`` with one flat folder of lung masks: the lung segmenter."""
    if not r.masks:
        raise ValueError(f"--task {r.task} needs --masks")
    manifest, images = r.one_dataset()
    return "chosen checkpoint: " + str(train_segmentation(SegTrainConfig(
        manifest=manifest, images=images, masks=r.masks[0], out=r.out, holdout=list(r.holdout), val=list(r.val),
        input_size=r.input_size or 256, iterations=r.iterations or 800, checkpoint_every=r.checkpoint_every,
        batch_size=r.batch_size or 8, seed=r.seed, threads=r.threads, stop_after=r.stop_after)))
