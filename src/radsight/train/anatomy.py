"""Multi-structure anatomy segmentation: right and left lung, heart, right and left clavicle, one sigmoid map each
(structures overlap: clavicles lie over the lungs).

Trained on sets with partial labels: a set whose mask folder has a subfolder per structure (``heart/``,
``right_lung/``...) labels those structures; a flat folder of lung masks labels only the two lungs together. A
structure a sample does not label is left out of its loss, never taken as background; a lungs-only mask supervises
the union of the two lung maps. Each batch draws ``full_share`` of its samples from the fully labelled sets.
Under ``torchrun``, data parallel on CPUs (gloo): each rank draws its share of every batch.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from radsight.evaluate.overlap import dice, read_mask
from radsight.evaluate.progress import stage
from radsight.inputs.preprocess import InputSpec, prepare
from radsight.io import load_image
from radsight.models.config import SEGMENTATION
from radsight.train import distributed
from radsight.train.data import normalise_batch, photometric, random_affine, warp
from radsight.train.distributed import Ranks
from radsight.train.fit import Plan, Task, fit
from radsight.train.loop import start_run
from radsight.train.registry import build, checkpoint_fields
from radsight.train.request import TrainRequest
from radsight.train.unet import unet_from_onnx

STRUCTURES = ("right_lung", "left_lung", "heart", "right_clavicle", "left_clavicle")
LUNGS = len(STRUCTURES)  # the bit of the label planes that holds a lungs-only mask (both lungs as one)


@dataclass
class MaskSet:
    """A manifest (``image``, optional ``mask`` and ``split``), its images and its masks."""

    manifest: str
    images: str
    masks: str

    def structures(self) -> tuple[str, ...]:
        """The structures this set labels; empty: a flat folder of lung masks."""
        return tuple(s for s in STRUCTURES if (Path(self.masks) / s).is_dir())

    def rows(self, split: str) -> list[dict]:
        with open(self.manifest, newline="") as fh:
            return [r for r in csv.DictReader(fh) if r.get("split", "train") == split]


@dataclass
class AnatomyTrainConfig:
    sets: list[MaskSet]
    out: str
    input_size: int = 256
    base_width: int = 12
    iterations: int = 2000
    batch_size: int = 8
    lr: float = 1e-3
    full_share: float = 0.5  # of each batch, from the sets labelling every structure
    val_limit: int = 120  # validation images read per set (the first, in manifest order)
    init_from: str | None = None  # a checkpoint, or a lung U-Net's ONNX file, to start from
    seed: int = 0
    threads: int = 0
    checkpoint_every: int = 100
    stop_after: int | None = None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.input_size, mean=0.5, std=0.25, channels=1)


@dataclass
class Samples:
    """Images (uint8) and label planes (uint8, one bit per structure, bit LUNGS for a lungs-only mask), with the
    bits each sample labels."""

    images: torch.Tensor  # (N, S, S) uint8
    labels: torch.Tensor  # (N, S, S) uint8
    known: torch.Tensor  # (N, LUNGS + 1) bool
    names: list[str] = field(default_factory=list)


def read_samples(sets: list[MaskSet], split: str, size: int, limit: int | None = None) -> Samples:
    spec = InputSpec(size=size, mean=0.5, std=0.25, channels=1)
    todo = [(s, r) for s in sets for r in s.rows(split)[:limit]]
    images = np.zeros((len(todo), size, size), np.uint8)
    labels = np.zeros_like(images)
    known = np.zeros((len(todo), LUNGS + 1), bool)
    with stage(f"reading {split} pairs", len(todo)) as progress:
        for i, (s, row) in enumerate(todo):
            image = prepare(load_image(Path(s.images) / row["image"]), spec, normalised=False)[0][0]
            images[i] = np.round(np.clip(image, 0, 1) * 255)
            mask_name = row.get("mask") or row["image"]
            structures = s.structures()
            for bit, name in ([(STRUCTURES.index(n), n) for n in structures] or [(LUNGS, "")]):
                mask = read_mask(Path(s.masks) / name / mask_name, size, size) > 0.5
                labels[i] |= (mask * (1 << bit)).astype(np.uint8)
                known[i, bit] = True
            progress.advance()
    return Samples(torch.from_numpy(images), torch.from_numpy(labels), torch.from_numpy(known),
                   [row["image"] for _, row in todo])


def planes(labels: torch.Tensor) -> torch.Tensor:
    """(N, S, S) label bits as (N, LUNGS + 1, S, S) floats."""
    bits = torch.arange(LUNGS + 1, dtype=torch.uint8)
    return ((labels[:, None] >> bits[None, :, None, None]) & 1).float()


def _soft_dice(prob: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    inter = (prob * target).sum(dim=(-2, -1))
    return (2 * inter + 1) / (prob.sum(dim=(-2, -1)) + target.sum(dim=(-2, -1)) + 1)


def partial_loss(logits: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """BCE + soft Dice over the (sample, structure) pairs a sample labels; a lungs-only label is compared with the
    union of the two lung maps. ``logits`` (N, 5, S, S), ``target`` (N, 6, S, S), ``known`` (N, 6)."""
    prob = torch.sigmoid(logits)
    union = (prob[:, 0] + prob[:, 1] - prob[:, 0] * prob[:, 1]).clamp(1e-6, 1 - 1e-6)
    bce = torch.cat([F.binary_cross_entropy_with_logits(logits, target[:, :LUNGS], reduction="none").mean((-2, -1)),
                     F.binary_cross_entropy(union, target[:, LUNGS], reduction="none").mean((-2, -1))[:, None]], 1)
    soft = torch.cat([_soft_dice(prob, target[:, :LUNGS]), _soft_dice(union, target[:, LUNGS])[:, None]], 1)
    weight = known.float()
    return ((bce + 1 - soft) * weight).sum() / weight.sum().clamp(min=1)


class AnatomyTask(Task):
    unit = "checkpoint"

    def __init__(self, cfg: AnatomyTrainConfig, train: Samples, val: Samples, net: torch.nn.Module,
                 ranks: Ranks = Ranks()):
        self.cfg, self.train, self.val, self.net, self.ranks = cfg, train, val, net, ranks
        full = train.known[:, :LUNGS].all(1)
        self.full, self.partial = torch.nonzero(full).flatten(), torch.nonzero(~full).flatten()

    def _draw(self, gen: torch.Generator) -> torch.Tensor:
        n = self.ranks.part(self.cfg.batch_size)
        if not len(self.full) or not len(self.partial):
            pool = self.full if len(self.full) else self.partial
            return pool[torch.randint(0, len(pool), (n,), generator=gen)]
        k = round(n * self.cfg.full_share)
        return torch.cat([self.full[torch.randint(0, len(self.full), (k,), generator=gen)],
                          self.partial[torch.randint(0, len(self.partial), (n - k,), generator=gen)]])

    def batches(self, round: int):
        cfg = self.cfg
        for it in range(round * cfg.checkpoint_every, min((round + 1) * cfg.checkpoint_every, cfg.iterations)):
            rank = 7_919 * (self.ranks.rank + 1) if self.ranks.distributed else 0  # each rank its own draws
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it + rank)
            idx = self._draw(gen)
            theta = random_affine(len(idx), gen)
            x = warp(self.train.images[idx][:, None].float() / 255, theta)
            y = (warp(planes(self.train.labels[idx]), theta) > 0.5).float()
            yield normalise_batch(photometric(x, gen), cfg.spec), y, self.train.known[idx]

    def loss(self, model, batch) -> torch.Tensor:
        x, y, known = batch
        return partial_loss(model(x), y, known)

    def measure(self, round: int, loss: float) -> dict:
        scores = val_dice(self.net, self.val, self.cfg.spec)
        entry = {"iteration": min((round + 1) * self.cfg.checkpoint_every, self.cfg.iterations), "loss": loss,
                 "val_dice": scores}
        return {**entry, "score": float(np.mean(list(scores.values()))) if scores else float("nan")}

    def line(self, entry: dict) -> str:
        dices = "  ".join(f"{k} {v:.4f}" for k, v in entry["val_dice"].items())
        return f"iteration {entry['iteration']}/{self.cfg.iterations}  loss {entry['loss']:.4f}  val Dice {dices}"

    def fields(self) -> dict:
        return {**checkpoint_fields(self.net), "task": SEGMENTATION, "input": asdict(self.cfg.spec),
                "labels": list(STRUCTURES)}


@torch.no_grad()
def val_dice(net: torch.nn.Module, val: Samples, spec: InputSpec, batch: int = 16) -> dict[str, float]:
    """Mean Dice per labelled structure (``lungs``: the union, for lungs-only samples) at the model's grid."""
    was_training = net.training
    net.eval()
    scores: dict[str, list[float]] = {}
    for start in range(0, len(val.images), batch):
        x = normalise_batch(val.images[start:start + batch][:, None].float() / 255, spec)
        prob = torch.sigmoid(net(x)).numpy() > 0.5
        truth = planes(val.labels[start:start + batch]).numpy() > 0.5
        for i, known in enumerate(val.known[start:start + batch].numpy()):
            for bit in np.flatnonzero(known):
                name = "lungs" if bit == LUNGS else STRUCTURES[bit]
                guess = prob[i, 0] | prob[i, 1] if bit == LUNGS else prob[i, bit]
                scores.setdefault(name, []).append(dice(guess, truth[i, bit]))
    net.train(was_training)
    return {k: float(np.mean(v)) for k, v in scores.items()}


def train_anatomy(cfg: AnatomyTrainConfig) -> Path:
    """Train for ``iterations`` steps, checkpointing every ``checkpoint_every`` (best mean val Dice kept as
    ``best.pt``); re-running resumes."""
    ranks = distributed.start(gpu=False)
    out = start_run(cfg, ranks.main)
    say = distributed.sayer(ranks)
    train = read_samples(cfg.sets, "train", cfg.input_size)
    val = read_samples(cfg.sets, "val", cfg.input_size, cfg.val_limit)
    say(f"training on {len(train.names)} images ({int(train.known[:, :LUNGS].all(1).sum())} with every structure); "
        f"{len(val.names)} choose the checkpoint" + (f"; {ranks.world} processes" if ranks.distributed else ""))
    net = build("unet", in_chans=1, num_classes=len(STRUCTURES), base=cfg.base_width)
    if cfg.init_from and not (out / "last.pt").exists():
        if cfg.init_from.endswith(".onnx"):
            say(unet_from_onnx(net, Path(cfg.init_from)))
        else:
            from radsight.train.loop import init_weights
            say(init_weights(net, Path(cfg.init_from)))
    model = torch.nn.parallel.DistributedDataParallel(net) if ranks.distributed else net
    rounds = -(-cfg.iterations // cfg.checkpoint_every)
    stop_after = -(-cfg.stop_after // cfg.checkpoint_every) if cfg.stop_after else None
    fit(AnatomyTask(cfg, train, val, net, ranks), net, Plan(rounds, cfg.iterations, cfg.lr, stop_after=stop_after),
        out, model=model, ranks=ranks, say=say)
    distributed.stop(ranks)
    return out / "best.pt"


# the options of radsight train this task reads (the lung segmenter of train.seg reads holdout and val too)
READS = {"masks", "holdout", "val", "iterations", "checkpoint_every", "batch_size", "input_size", "init_from", "lr"}


def multi_structure(r: TrainRequest) -> bool:
    """Whether a request trains the multi-structure model: more than one dataset, or masks with structure folders."""
    return len(r.datasets) > 1 or any((Path(m) / s).is_dir() for m in r.masks for s in STRUCTURES)


def from_request(r: TrainRequest) -> str:
    """``radsight train --task anatomy``: the multi-structure model when the masks name structures or several sets
    are given, else the lung segmenter (train.seg)."""
    if not multi_structure(r):
        from radsight.train.seg import from_request as lungs_only
        return lungs_only(r)
    if r.holdout or r.val:
        raise ValueError("--holdout and --val: the multi-structure model's sets choose by their split column")
    if len(r.masks) != len(r.datasets):
        raise ValueError(f"--task {r.task}: give one --masks for each --manifest")
    sets = [MaskSet(m, i, k) for (m, i), k in zip(r.datasets, r.masks)]
    return "chosen checkpoint: " + str(train_anatomy(AnatomyTrainConfig(
        sets=sets, out=r.out, input_size=r.input_size or 256, iterations=r.iterations or 2000,
        batch_size=r.batch_size or 8, lr=r.lr, checkpoint_every=r.checkpoint_every, init_from=r.init_from,
        seed=r.seed, threads=r.threads, stop_after=r.stop_after)))
