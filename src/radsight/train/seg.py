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

from radsight.io import load_image
from radsight.models.config import SEGMENTATION
from radsight.preprocess import InputSpec, prepare, resize
from radsight.segmentation import dice, read_mask
from radsight.train.data import normalise_batch, photometric, random_affine, warp
from radsight.train.loop import atomic_save, resume, start_run
from radsight.train.registry import build, checkpoint_fields


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


def train_segmentation(cfg: SegTrainConfig) -> Path:
    out = start_run(cfg)
    rows = mask_rows(cfg)
    x, y = load_pairs(cfg, rows.train, rows.mask_of)
    print(f"training on {len(rows.train)} pairs; {len(rows.val)} choose the checkpoint; "
          f"{len(rows.holdout)} held out")
    net = build("unet", in_chans=1, num_classes=1, base=cfg.base_width)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.iterations, pct_start=0.1)
    last = out / "last.pt"
    state = resume(last, net, opt, sched)
    start = state["iteration"] if state else 0
    best = state.get("best", -1.0) if state else -1.0
    if state:
        print(f"resuming at iteration {start}")
    stop = min(cfg.iterations, cfg.stop_after or cfg.iterations)
    net.train()
    with Progress() as progress:
        task = progress.add_task("training", total=cfg.iterations, completed=start)
        for it in range(start, stop):
            gen = torch.Generator().manual_seed(cfg.seed * 100_003 + it)
            idx = torch.randint(0, len(x), (cfg.batch_size,), generator=gen)
            theta = random_affine(cfg.batch_size, gen)
            xb = normalise_batch(photometric(warp(x[idx], theta), gen), cfg.spec)
            yb = (warp(y[idx], theta) > 0.5).float()
            loss = dice_bce(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            progress.advance(task)
            if (it + 1) % cfg.checkpoint_every == 0 or it + 1 == stop:
                val = float(np.mean(list(mask_dice(net, cfg, rows.val, rows.mask_of).values()))) \
                    if rows.val else float("nan")
                progress.console.print(f"iteration {it + 1}/{cfg.iterations}  loss {loss.item():.4f}  val Dice {val:.4f}")
                state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "iteration": it + 1, **checkpoint_fields(net), "task": SEGMENTATION, "input": asdict(cfg.spec),
                         "labels": ["lung"], "val_dice": val, "best": max(best, val)}
                if val > best:
                    best = val
                    atomic_save(state, out / "best.pt")
                atomic_save(state, last)
    chosen = out / "best.pt" if rows.val else last
    if rows.holdout and stop == cfg.iterations:
        net.load_state_dict(torch.load(chosen, map_location="cpu", weights_only=False)["model"])
        scores = mask_dice(net, cfg, rows.holdout, rows.mask_of)
        (out / "holdout_dice.json").write_text(json.dumps(scores, indent=2) + "\n")
        print(f"held-out Dice of {chosen.name} (at mask resolution): "
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
