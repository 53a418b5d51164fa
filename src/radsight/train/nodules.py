"""Nodule detection training: a U-Net whose two output maps are a centre heatmap (CenterNet's focal loss on a
Gaussian at each nodule's centre) and the log of the nodule's radius (L1 at its centre), on films with real nodules
and films without one into which nodules are simulated afresh at every draw (``train.nodule_sim``), placed where
the lung model finds lung. ``simulated``: the share of each batch drawn from films without nodules (0: real films
only, for the ablation). The checkpoint is chosen by the CPM on the val films; its operating point (the score
at 0.5 false positives per val film) is stored with it.
"""
from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from radsight.core import InputError
from radsight.evaluate.froc import Case, froc, threshold_at
from radsight.heads.anatomy import LungModel
from radsight.heads.lung_geometry import nodule_region
from radsight.heads.nodules import decode
from radsight.inputs.preprocess import InputSpec, prepare, resize
from radsight.io import load_image
from radsight.models.config import NODULE_DETECTION
from radsight.models.store import DEFAULT_LUNG_MODEL
from radsight.train.data import normalise_batch, photometric, random_affine, warp
from radsight.train.distributed import log
from radsight.train.fit import Plan, Task, atomic_save, fit
from radsight.train.loop import start_run
from radsight.train.nodule_sim import measured_contrast, simulate
from radsight.train.registry import build, checkpoint_fields
from radsight.train.request import TrainRequest
from radsight.train.unet import unet_from_onnx


@dataclass
class NoduleConfig:
    manifest: str  # image, split, nodule_x, nodule_y (pixels of the image as stored), nodule_size_mm
    images: str
    out: str
    spacing_mm: float = 0.7  # of the stored images (jsrt-scr: 0.7 mm at 512 px)
    lung_model: str = DEFAULT_LUNG_MODEL
    init_from: str | None = None
    simulated: float = 0.5
    input_size: int = 256
    iterations: int = 800
    checkpoint_every: int = 100
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    threads: int = 0
    stop_after: int | None = None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.input_size, mean=0.5, std=0.25, channels=1)


@dataclass
class Films:
    x: np.ndarray  # (N, S, S) in [0, 1]
    nodules: list[list[tuple[float, float, float]]]  # per film: (x, y, diameter mm) on the model grid
    regions: list[np.ndarray]  # where lung lies, on the model grid
    spacing_mm: float  # a model-grid pixel
    names: list[str] = field(default_factory=list)


def read_films(cfg: NoduleConfig, split: str) -> Films:
    lungs = LungModel(cfg.lung_model, cfg.threads)
    with open(cfg.manifest, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("split") == split]
    xs, nodules, regions, names, scale = [], [], [], [], 1.0
    for r in rows:
        try:
            image = load_image(Path(cfg.images) / r["image"])
        except InputError as exc:
            log.warning("skipped: %s", exc)
            continue
        scale = cfg.input_size / max(image.height, image.width)
        xs.append(prepare(image, cfg.spec, normalised=False)[0][0])
        found = lungs.segment(image)
        region = nodule_region(found.labels) if found.anatomy.plausible else np.zeros((1, 1), bool)
        regions.append(resize(region.astype(np.float32), cfg.input_size, cfg.input_size) >= 0.5)
        here = []
        if (r.get("nodule_x") or "").strip():
            here.append((float(r["nodule_x"]) * cfg.input_size / image.width,
                         float(r["nodule_y"]) * cfg.input_size / image.height, float(r["nodule_size_mm"])))
        nodules.append(here)
        names.append(r["image"])
    return Films(np.stack(xs), nodules, regions, cfg.spacing_mm / scale, names)


def targets(nodules: list[tuple[float, float, float]], size: int, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """A Gaussian peak of exactly 1 at each centre's nearest pixel (sigma a third of the radius, at least 1 px; a
    centre off the grid has none) and the log radius (px) where a peak is above one half (-inf elsewhere: no
    radius loss there)."""
    heat, radius = np.zeros((size, size), np.float32), np.full((size, size), -np.inf, np.float32)
    yy, xx = np.mgrid[:size, :size]
    for x, y, diameter in nodules:
        x, y = round(x), round(y)
        if not (0 <= x < size and 0 <= y < size):
            continue
        r = diameter / 2 / spacing_mm
        g = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * max(1.0, r / 3) ** 2)).astype(np.float32)
        heat = np.maximum(heat, g)
        radius = np.where(g > 0.5, np.log(max(r, 1.0)), radius)
    return heat, radius


def moved(nodules: list[tuple[float, float, float]], theta: np.ndarray, size: int) -> list[tuple[float, float, float]]:
    """Where nodules go when their film is warped by ``theta`` (an ``affine_grid`` matrix: output to input
    coordinates, align_corners False): centres through its inverse, diameters by its zoom."""
    a, t = theta[:, :2].astype(np.float64), theta[:, 2].astype(np.float64)
    inverse, zoom = np.linalg.inv(a), 1 / np.sqrt(abs(np.linalg.det(a)))
    out = []
    for x, y, diameter in nodules:
        u = inverse @ (np.array([(2 * x + 1) / size - 1, (2 * y + 1) / size - 1]) - t)
        out.append((((u[0] + 1) * size - 1) / 2, ((u[1] + 1) * size - 1) / 2, diameter * zoom))
    return out


def focal_loss(logits: torch.Tensor, heat: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4), over the number of centres."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    centre = heat >= 0.999
    pos = -((1 - p) ** 2 * torch.log(p))[centre].sum()
    neg = -((1 - heat) ** 4 * p ** 2 * torch.log(1 - p))[~centre].sum()
    return (pos + neg) / centre.sum().clamp(min=1)


class NoduleTask(Task):
    unit = "checkpoint"

    def __init__(self, cfg: NoduleConfig, train: Films, val: Films, contrasts: np.ndarray,
                 net: torch.nn.Module):
        self.cfg, self.train, self.val, self.contrasts, self.net = cfg, train, val, contrasts, net
        self.real = [i for i, n in enumerate(train.nodules) if n]
        self.clear = [i for i, n in enumerate(train.nodules) if not n]

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, list]:
        """One training film and its nodules: a real nodule film, or a film without one with 0-2 simulated."""
        if self.clear and (not self.real or rng.random() < self.cfg.simulated):
            i = int(rng.choice(self.clear))
            count = int(rng.choice([0, 1, 1, 2]))
            film, placed = simulate(self.train.x[i], self.train.regions[i], self.contrasts, self.train.spacing_mm,
                                    rng, count)
            return film, [(n.x, n.y, n.diameter_mm) for n in placed]
        i = int(rng.choice(self.real))
        return self.train.x[i], self.train.nodules[i]

    def batches(self, round: int):
        cfg, size = self.cfg, self.cfg.input_size
        for it in range(round * cfg.checkpoint_every, min((round + 1) * cfg.checkpoint_every, cfg.iterations)):
            rng = np.random.default_rng(cfg.seed * 1_000_003 + it)
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + it)
            drawn = [self.draw(rng) for _ in range(cfg.batch_size)]
            theta = random_affine(cfg.batch_size, gen)
            x = warp(torch.from_numpy(np.stack([film for film, _ in drawn]))[:, None], theta)
            maps = [targets(moved(nodules, theta[i].numpy(), size), size, self.train.spacing_mm)
                    for i, (_, nodules) in enumerate(drawn)]
            heat = torch.from_numpy(np.stack([h for h, _ in maps]))[:, None]
            radius = torch.from_numpy(np.stack([r for _, r in maps]))[:, None]
            yield normalise_batch(photometric(x, gen), cfg.spec), heat, radius

    def loss(self, model, batch) -> torch.Tensor:
        x, heat, radius = batch
        out = model(x)
        at = torch.isfinite(radius)
        size_loss = F.l1_loss(out[:, 1:][at], radius[at]) if at.any() else out.sum() * 0
        return focal_loss(out[:, :1], heat) + 0.1 * size_loss

    def cases(self, films: Films) -> list[Case]:
        self.net.eval()
        out = []
        with torch.no_grad():
            for i in range(len(films.names)):
                maps = self.net(normalise_batch(torch.from_numpy(films.x[i][None, None]), self.cfg.spec))[0].numpy()
                found = decode(maps[0], maps[1], films.regions[i])
                out.append(Case(films.nodules[i], [(x, y, s) for x, y, _, s in found], films.spacing_mm))
        return out

    def measure(self, round: int, loss: float) -> dict:
        result = froc(self.cases(self.val), bootstrap=0)
        return {"iteration": min((round + 1) * self.cfg.checkpoint_every, self.cfg.iterations), "loss": loss,
                "val_cpm": result["cpm"], "val_sensitivity_2": result["sensitivity"]["2"], "score": result["cpm"]}

    def line(self, entry: dict) -> str:
        return (f"iteration {entry['iteration']}/{self.cfg.iterations}  loss {entry['loss']:.4f}  val CPM "
                f"{entry['val_cpm']:.3f}  sensitivity at 2 FP/image {entry['val_sensitivity_2']:.2f}")

    def fields(self) -> dict:
        return {**checkpoint_fields(self.net), "labels": ["nodule"], "input": asdict(self.cfg.spec),
                "task": NODULE_DETECTION}


def real_contrasts(films: Films) -> np.ndarray:
    return np.asarray([measured_contrast(films.x[i], x, y, d / 2 / films.spacing_mm)
                       for i, found in enumerate(films.nodules) for x, y, d in found])


def train_nodules(cfg: NoduleConfig) -> Path:
    """Train, keep the checkpoint of the best val CPM, and store its operating point (``fitted.threshold``)."""
    out = start_run(cfg)
    train, val = read_films(cfg, "train"), read_films(cfg, "val")
    contrasts = real_contrasts(train)
    log.info(f"training on {len(train.names)} films ({sum(map(bool, train.nodules))} with a nodule; simulated "
             f"share {cfg.simulated}); real nodules' contrast median {np.median(contrasts):.3f}; "
             f"{len(val.names)} val films choose the checkpoint")
    net = build("unet", in_chans=1, num_classes=2, base=12)
    with torch.no_grad():  # centres are rare: start every pixel at P(centre) 0.01 (CenterNet's prior)
        net.head.bias[0] = float(np.log(0.01 / 0.99))
    if cfg.init_from and not (out / "last.pt").exists():
        log.info(unet_from_onnx(net, Path(cfg.init_from)))
    task = NoduleTask(cfg, train, val, contrasts, net)
    rounds = -(-cfg.iterations // cfg.checkpoint_every)
    stop_after = -(-cfg.stop_after // cfg.checkpoint_every) if cfg.stop_after else None
    fit(task, net, Plan(rounds, cfg.iterations, cfg.lr, stop_after=stop_after), out)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    net.load_state_dict(best["model"])
    best["fitted"] = {"threshold": min(threshold_at(task.cases(val), 0.5), 0.99),
                      "chosen_at": "0.5 false positives per val film"}
    atomic_save(best, out / "best.pt")
    return out / "best.pt"


READS = {"init_from", "input_size", "iterations", "checkpoint_every", "batch_size", "lr", "simulated_share"}


def from_request(r: TrainRequest) -> str:
    """``radsight train --task nodules``: jsrt-scr's manifest (nodule_x, nodule_y, nodule_size_mm)."""
    manifest, images = r.one_dataset()
    return "chosen checkpoint: " + str(train_nodules(NoduleConfig(
        manifest=manifest, images=images, out=r.out, init_from=r.init_from, simulated=r.simulated_share,
        input_size=r.input_size or 256,
        iterations=r.iterations or 800, checkpoint_every=r.checkpoint_every, batch_size=r.batch_size or 8,
        lr=r.lr, seed=r.seed, threads=r.threads, stop_after=r.stop_after)))
