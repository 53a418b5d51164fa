"""The view classifier: frontal (PA/AP) or lateral, from the pixels alone, for images without a DICOM header.

Laterals are few in open data, so each batch holds a fixed share of them and both classes are strongly
augmented (flips, crops, rotations, gamma, blur, noise); frontal films from the same publications as the
laterals are in the frontal class, so the model cannot tell views apart by their source.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track

from radsight.core import InputError
from radsight.data.view_manifest import ViewRow, view_rows
from radsight.heads.view import LATERAL
from radsight.inputs.preprocess import InputSpec, prepare
from radsight.io import load_image
from radsight.models.config import VIEW_CLASSIFICATION
from radsight.train import distributed
from radsight.train.data import normalise_batch, photometric, warp
from radsight.train.distributed import Ranks, log
from radsight.train.fit import Plan, Task, atomic_save, fit
from radsight.train.loop import start_run
from radsight.train.registry import build, checkpoint_fields
from radsight.train.request import TrainRequest


@dataclass
class ViewTrainConfig:
    """``sources``: (manifest CSV, image folder) pairs, read by :func:`radsight.data.view_manifest.view_rows`.
    Rows of ``holdout`` patients, and rows whose split is not ``train``, are never trained on."""

    sources: list[tuple[str, str]]
    out: str
    holdout: list[str] = field(default_factory=list)  # patient ids
    input_size: int = 64
    steps: int = 1500
    batch_size: int = 48
    lateral_share: float = 0.25  # of each batch
    lr: float = 2e-3
    seed: int = 0
    threads: int = 0
    stop_after: int | None = None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.input_size, mean=0.5, std=0.25, channels=1)


def load_views(rows: list[ViewRow], spec: InputSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs in [0, 1] (N, 1, S, S) and labels (N,) 1 = lateral; unreadable rows are skipped with a line."""
    xs, ys = [], []
    for row in track(rows, description=f"reading {len(rows)} images", transient=True):
        try:
            image = load_image(row.path)
        except InputError as exc:
            log.warning("skipped: %s", exc)
            continue
        xs.append(prepare(image, spec, normalised=False)[0])
        ys.append(float(row.view == LATERAL))
    return torch.from_numpy(np.stack(xs)), torch.tensor(ys)


def strong_augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flips (a lateral faces either way), crops to 65-100% of the side, ±15° rotation, then photometric jitter
    and, for half the batch, a blur."""
    n = x.shape[0]
    angle = (torch.rand(n, generator=gen) * 30 - 15) * math.pi / 180
    scale = 0.65 + 0.35 * torch.rand(n, generator=gen)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = (torch.rand(n, 2, generator=gen) - 0.5) * 2 * (1 - scale)[:, None]
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    x = photometric(warp(x, theta), gen)
    blurred = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    keep = (torch.rand(n, 1, 1, 1, generator=gen) < 0.5).float()
    return keep * x + (1 - keep) * blurred


def balanced_batch(labels: torch.Tensor, size: int, share: float, gen: torch.Generator) -> torch.Tensor:
    lateral, frontal = torch.nonzero(labels == 1).flatten(), torch.nonzero(labels == 0).flatten()
    k = max(1, round(size * share))
    return torch.cat([lateral[torch.randint(len(lateral), (k,), generator=gen)],
                      frontal[torch.randint(len(frontal), (size - k,), generator=gen)]])


class ViewTask(Task):
    """100 sampled steps a round, each a batch balanced between laterals and frontal images; no score (the last
    checkpoint is the model)."""

    unit = "checkpoint"
    EVERY = 100

    def __init__(self, cfg: ViewTrainConfig, x: torch.Tensor, y: torch.Tensor, net: torch.nn.Module,
                 ranks: Ranks = Ranks()):
        self.cfg, self.x, self.y, self.net, self.ranks = cfg, x, y, net, ranks

    def batches(self, round: int):
        cfg, size = self.cfg, self.ranks.part(self.cfg.batch_size)
        for step in range(round * self.EVERY, min((round + 1) * self.EVERY, cfg.steps)):
            gen = self.ranks.generator(cfg.seed, step)
            idx = balanced_batch(self.y, size, cfg.lateral_share, gen)
            yield normalise_batch(strong_augment(self.x[idx], gen), cfg.spec), self.y[idx]

    def loss(self, model, batch) -> torch.Tensor:
        x, y = batch
        return F.binary_cross_entropy_with_logits(model(x).squeeze(1), y)

    def measure(self, round: int, loss: float) -> dict:
        return {"step": min((round + 1) * self.EVERY, self.cfg.steps), "loss": loss, "score": float("nan")}

    def line(self, entry: dict) -> str:
        return f"step {entry['step']}/{self.cfg.steps}  loss {entry['loss']:.4f}"

    def fields(self) -> dict:
        return {**checkpoint_fields(self.net), "labels": [LATERAL], "input": asdict(self.cfg.spec),
                "task": VIEW_CLASSIFICATION}


def train_view_classifier(cfg: ViewTrainConfig) -> Path:
    """Train for ``steps`` (no checkpoint is chosen on held-out images: the last one is the model), checkpointing
    every 100 steps to ``out/last.pt``; re-running resumes. Writes ``out/final.pt`` when done. Under ``torchrun``,
    data parallel on CPUs (gloo)."""
    ranks = distributed.start(gpu=False)
    out = start_run(cfg, ranks.main)
    say = distributed.sayer(ranks)
    rows = view_rows(cfg.sources)
    train_rows = [r for r in rows if r.split == "train" and r.patient not in cfg.holdout]
    x, y = load_views(train_rows, cfg.spec)
    if not (y == 1).any() or not (y == 0).any():
        raise ValueError("the training rows need both frontal and lateral images")
    say(f"train {int((y == 1).sum())} laterals, {int((y == 0).sum())} frontal images; "
        f"held-out patients: {', '.join(cfg.holdout) or 'none'}" + (f"; {ranks.world} processes" if ranks.distributed
                                                                    else ""))
    net = build("view-cnn")
    model = torch.nn.parallel.DistributedDataParallel(net) if ranks.distributed else net
    rounds = -(-cfg.steps // ViewTask.EVERY)
    stop_after = -(-cfg.stop_after // ViewTask.EVERY) if cfg.stop_after else None
    fit(ViewTask(cfg, x, y, net, ranks), net, Plan(rounds, cfg.steps, cfg.lr, stop_after=stop_after), out,
        model=model, ranks=ranks, say=say)
    last = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
    distributed.stop(ranks)
    if last["round"] + 1 < rounds:
        return out / "last.pt"
    if ranks.main:
        last["held_out_patients"] = list(cfg.holdout)
        atomic_save(last, out / "final.pt")
    return out / "final.pt"


# the options of radsight train this task reads (TrainRequest.ignored names the others given)
READS = {"holdout", "input_size", "iterations", "batch_size"}


def from_request(r: TrainRequest) -> str:
    """``radsight train --task view``."""
    chosen = train_view_classifier(ViewTrainConfig(
        sources=r.datasets, out=r.out, holdout=list(r.holdout), input_size=r.input_size or 64,
        steps=r.iterations or 1500, batch_size=r.batch_size or 48, seed=r.seed, threads=r.threads,
        stop_after=r.stop_after))
    return f"checkpoint: {chosen}"
