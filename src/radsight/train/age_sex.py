"""Age and sex training: one network, two outputs (a distribution over whole years of age, a female logit).

The age loss is the distribution's KL divergence from a Gaussian label around the stated age plus a Huber loss on
its expectation (label distribution learning, which trains more stably than regression alone on few films); the
sex loss is BCE where the sex is known. Every dataset's ``train`` rows train and its ``val`` rows choose the
checkpoint (score: sex AUROC − age MAE / 10) and fit the bias correction the model config stores
(:func:`radsight.heads.age_sex.fit_calibration`). A manifest's empty ``age``/``sex`` cells are filled from
``metadata`` (NIH's Data_Entry table).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import track
from sklearn.metrics import roc_auc_score

from radsight.core import InputError
from radsight.data.demographics import Demographics, read_demographics
from radsight.heads.age_sex import fit_calibration
from radsight.inputs.preprocess import InputSpec, prepare
from radsight.io import load_image
from radsight.models.config import AGE_SEX
from radsight.train import distributed
from radsight.train.age_net import AGE_BINS, expected_age
from radsight.train.data import augment, normalise_batch
from radsight.train.distributed import Ranks, log
from radsight.train.fit import Plan, Task, atomic_save, fit
from radsight.train.loop import start_run
from radsight.train.registry import build, checkpoint_fields
from radsight.train.request import TrainRequest
from radsight.train.unet import unet_from_onnx


@dataclass
class AgeSexTrainConfig:
    sets: list[tuple[str, str]]  # (manifest, images)
    out: str
    metadata: str | None = None
    init_from: str | None = None  # a U-Net's ONNX file (its encoder) or a checkpoint
    input_size: int = 256
    epochs: int = 30
    batch_size: int = 16
    lr: float = 1e-3
    label_sigma: float = 3.0  # years: the width of the Gaussian age label
    seed: int = 0
    threads: int = 0
    stop_after: int | None = None

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.input_size, mean=0.5, std=0.25, channels=1)


@dataclass
class Films:
    x: torch.Tensor  # (N, 1, S, S) in [0, 1]
    age: torch.Tensor  # (N,) years, NaN unknown
    female: torch.Tensor  # (N,) 1/0, NaN unknown
    names: list[str] = field(default_factory=list)


def read_films(cfg: AgeSexTrainConfig, split: str) -> Films:
    """The ``split`` rows with a known age of every set, read through the inference pixel contract."""
    xs, ages, sexes, names = [], [], [], []
    for manifest, images in cfg.sets:
        rows: Demographics = read_demographics(Path(manifest), Path(images),
                                               Path(cfg.metadata) if cfg.metadata else None).split(split)
        for i in track(range(len(rows)), description=f"reading {split} of {Path(manifest).parent.name}",
                       transient=True):
            if np.isnan(rows.age[i]):
                continue
            try:
                xs.append(prepare(load_image(rows.path(i)), cfg.spec, normalised=False)[0])
            except InputError as exc:
                log.warning("skipped: %s", exc)
                continue
            ages.append(rows.age[i])
            sexes.append(rows.female[i])
            names.append(rows.images[i])
    if not xs:
        raise ValueError(f"no {split} rows with an age (give --metadata for manifests without an age column)")
    return Films(torch.from_numpy(np.stack(xs)), torch.tensor(ages, dtype=torch.float32),
                 torch.tensor(sexes, dtype=torch.float32), names)


def age_loss(logits: torch.Tensor, age: torch.Tensor, sigma: float) -> torch.Tensor:
    """KL divergence from a Gaussian over whole years around ``age``, plus a Huber loss (δ 2 years, in tens of
    years) on the expectation."""
    years = torch.arange(AGE_BINS, dtype=logits.dtype, device=logits.device)
    target = torch.softmax(-0.5 * ((years[None] - age[:, None]) / sigma) ** 2, 1)
    kl = F.kl_div(logits.log_softmax(1), target, reduction="batchmean")
    return kl + F.huber_loss(expected_age(logits), age, delta=2.0) / 10


def sex_loss(logit: torch.Tensor, female: torch.Tensor) -> torch.Tensor:
    known = ~torch.isnan(female)
    if not known.any():
        return logit.sum() * 0
    return F.binary_cross_entropy_with_logits(logit[known], female[known])


def predict(net: torch.nn.Module, x: torch.Tensor, spec: InputSpec, batch: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Raw age estimates (N,) and P(female) (N,) of films in [0, 1]."""
    net.eval()
    ages, females = [], []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            logits, female = net(normalise_batch(x[start:start + batch], spec))
            ages.append(expected_age(logits))
            females.append(torch.sigmoid(female[:, 0]))
    return torch.cat(ages).numpy(), torch.cat(females).numpy()


def sex_auroc(p_female: np.ndarray, female: np.ndarray) -> float:
    known = ~np.isnan(female)
    if len(set(female[known])) < 2:
        return float("nan")
    return float(roc_auc_score(female[known], p_female[known]))


class AgeSexTask(Task):
    unit = "epoch"

    def __init__(self, cfg: AgeSexTrainConfig, train: Films, val: Films, net: torch.nn.Module,
                 ranks: Ranks = Ranks()):
        self.cfg, self.train, self.val, self.net, self.ranks = cfg, train, val, net, ranks

    def batches(self, round: int):
        cfg = self.cfg
        order = torch.randperm(len(self.train.age), generator=torch.Generator().manual_seed(cfg.seed * 7_919 + round))
        for step, idx in enumerate(self.ranks.share(order, cfg.batch_size)):
            gen = self.ranks.generator(cfg.seed, round * 100_000 + step)
            x = augment(self.train.x[idx], gen)
            yield normalise_batch(x, cfg.spec), self.train.age[idx], self.train.female[idx]

    def loss(self, model, batch) -> torch.Tensor:
        x, age, female = batch
        logits, female_logit = model(x)
        return age_loss(logits, age, self.cfg.label_sigma) + sex_loss(female_logit[:, 0], female)

    def measure(self, round: int, loss: float) -> dict:
        raw, p_female = predict(self.net, self.val.x, self.cfg.spec)
        mae = float(np.mean(np.abs(raw - self.val.age.numpy())))
        auroc = sex_auroc(p_female, self.val.female.numpy())
        return {"epoch": round + 1, "loss": loss, "val_age_mae": mae, "val_sex_auroc": auroc,
                "score": (0 if np.isnan(auroc) else auroc) - mae / 10}

    def line(self, entry: dict) -> str:
        return (f"epoch {entry['epoch']}/{self.cfg.epochs}  loss {entry['loss']:.4f}  val age MAE "
                f"{entry['val_age_mae']:.2f} y (uncorrected)  sex AUROC {entry['val_sex_auroc']:.3f}")

    def fields(self) -> dict:
        return {**checkpoint_fields(self.net), "labels": ["age", "female"], "input": asdict(self.cfg.spec),
                "task": AGE_SEX}


def train_age_sex(cfg: AgeSexTrainConfig) -> Path:
    """Train, keep the best epoch by the validation score, and store in ``best.pt`` the bias correction and sex
    check fitted on the validation films (``fitted``). Re-running resumes. Under ``torchrun``, data parallel."""
    ranks = distributed.start()
    out = start_run(cfg, ranks.main)
    say = distributed.sayer(ranks)
    train, val = read_films(cfg, "train"), read_films(cfg, "val")
    say(f"training on {len(train.age)} films (mean age {float(train.age.mean()):.1f}); {len(val.age)} validation "
        f"films choose the epoch and fit the bias correction")
    net = build("age-sex-net")
    if cfg.init_from and not (out / "last.pt").exists():
        if cfg.init_from.endswith(".onnx"):
            say(unet_from_onnx(net, Path(cfg.init_from)))
        else:
            from radsight.train.loop import init_weights
            say(init_weights(net, Path(cfg.init_from)))
    model = torch.nn.parallel.DistributedDataParallel(net) if ranks.distributed else net
    steps = cfg.epochs * len(ranks.share(torch.arange(len(train.age)), cfg.batch_size))
    fit(AgeSexTask(cfg, train, val, net, ranks), net, Plan(cfg.epochs, steps, cfg.lr, stop_after=cfg.stop_after),
        out, model=model, ranks=ranks, say=say)
    distributed.stop(ranks)
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    if ranks.main:
        net.load_state_dict(best["model"])
        raw, p_female = predict(net, val.x, cfg.spec)
        try:
            fitted = fit_calibration(raw, val.age.numpy(), p_female, val.female.numpy())
        except ValueError as exc:  # a model that has not learned age yet: its estimates stay uncorrected
            log.warning("no bias correction fitted: %s", exc)
            fitted = {}
        best["fitted"] = {**fitted, "train_mean_age": float(train.age.mean())}
        atomic_save(best, out / "best.pt")
        say(f"fitted on {len(val.age)} validation films: {best['fitted']}")
    return out / "best.pt"


# the options of radsight train this task reads (TrainRequest.ignored names the others given)
READS = {"metadata", "init_from", "input_size", "epochs", "batch_size", "lr"}


def from_request(r: TrainRequest) -> str:
    """``radsight train --task age-sex``."""
    chosen = train_age_sex(AgeSexTrainConfig(
        sets=list(r.datasets), out=r.out, metadata=r.metadata, init_from=r.init_from, input_size=r.input_size or 256,
        epochs=r.epochs, batch_size=r.batch_size or 16, lr=r.lr, seed=r.seed, threads=r.threads,
        stop_after=r.stop_after))
    return f"chosen checkpoint: {chosen}"
