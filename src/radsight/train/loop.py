"""Multi-label training: masked BCE, AdamW + cosine schedule, per-epoch checkpoints, resume; one process, or
several under ``torchrun`` (data parallel; see ``distributed.py``)."""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from radsight.core import FINDINGS
from radsight.data.manifest import read_manifest
from radsight.evaluate.metrics import mean_auroc
from radsight.inputs.preprocess import InputSpec
from radsight.models.config import TRIAGE_LABEL
from radsight.models.store import DEFAULT_BONE_MODEL, LUNG_UNET_MODEL
from radsight.pipeline.inputs import InputBuilder
from radsight.train import distributed
from radsight.train.accel import Accel
from radsight.train.data import augment, load_split, normalise_batch
from radsight.train.fit import Plan, Task, fit
from radsight.train.registry import build, checkpoint_fields
from radsight.train.request import TrainRequest
from radsight.train.scalp import ScalpModel, partners, patient_batches, scalp_loss
from radsight.train.shards import ShardStream, read_index, read_split
from radsight.train.studies import load_studies, oversample_laterals, study_rows
from radsight.train.twoview import TwoViewDenseNet, init_lateral_from_frontal


@dataclass
class TrainConfig:
    manifest: str
    images: str
    out: str
    architecture: str = "densenet-small"
    input_size: int = 64
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 0  # 0: torch's default
    stop_after: int | None = None  # stop (resumably) once this many epochs are done
    region: str = "image"  # or "thorax": train on the lungs' bounding box, found by lung_model
    sources: tuple[str, ...] = ("original",)  # input channels: original, lung_masked, bone_suppressed
    lung_model: str = LUNG_UNET_MODEL  # the recipes of the shipped classifiers read its masks
    bone_model: str = DEFAULT_BONE_MODEL
    task: str = "findings"  # or "abnormal": binary pretraining, normal vs any finding
    init_from: str | None = None  # a checkpoint whose weights start this run (a head of another shape is not)
    also: list[tuple[str, str]] = field(default_factory=list)  # more (manifest, images) sources, trained on too
    views: tuple[str, ...] = ("frontal",)  # ("frontal", "lateral"): a two-view architecture, studies as inputs
    view_dropout: float = 0.3  # two views: share of training studies whose lateral is hidden (as if absent)
    lateral_share: float = 0.1  # two views: studies with a lateral are repeated to about this share of an epoch
    shards: str | None = None  # packed shards (radsight data pack): train streamed, val read; manifests unused
    scalp: float | None = None  # λ of SCALP (radsight.train.scalp): λ·BCE + (1 − λ)·contrastive; None: BCE alone
    device: str = "auto"  # auto (a GPU when one is visible; under torchrun one a rank), cpu or cuda
    precision: str = "fp32"  # fp32, bf16 (CPU or GPU) or fp16 (GPU, with loss scaling)
    channels_last: bool = False  # the NHWC memory layout (faster convolutions on recent GPUs)

    def __post_init__(self) -> None:
        self.views = tuple(self.views)
        if self.views not in (("frontal",), ("frontal", "lateral")):
            raise ValueError(f"views {','.join(self.views)}: choose frontal, or frontal,lateral")
        if self.scalp is not None and not (0 < self.scalp <= 1 and not self.two_view and not self.shards):
            raise ValueError(f"--scalp {self.scalp}: give λ in (0, 1]; SCALP trains a single-view classifier on "
                             "images held in memory (not --views frontal,lateral, not --shards)")
        if self.shards and (self.two_view or self.also):
            raise ValueError("shards hold single-view images of every dataset packed: train two-view studies, or "
                             "several manifests, from folders, or pack the manifests together")
        if self.two_view and (self.region != "image" or tuple(self.sources) != ("original",)):
            raise ValueError("a two-view model reads the original image of each view (region image, sources "
                             "original): the lung and bone models are trained on frontal films only")

    @property
    def two_view(self) -> bool:
        return "lateral" in self.views

    @property
    def labels(self) -> list[str]:
        return [TRIAGE_LABEL] if self.task == "abnormal" else [*FINDINGS, TRIAGE_LABEL]

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.input_size, mean=0.5, std=0.25, channels=len(self.sources), region=self.region,
                         sources=tuple(self.sources))

    def input_builder(self, note: str) -> InputBuilder:
        """What makes this run's inputs from a radiograph, as the predictor will (``note``: where it is used)."""
        return InputBuilder(self.spec, note, self.source_models,
                            self.lung_model if self.region == "thorax" or "lung_masked" in self.sources else None)

    @property
    def source_models(self) -> dict[str, str]:
        return {source: model for source, model in (("lung_masked", self.lung_model),
                                                     ("bone_suppressed", self.bone_model)) if source in self.sources}


def masked_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """BCE over known labels only (NaN = unknown, as in torchxrayvision)."""
    known = ~torch.isnan(targets)
    return F.binary_cross_entropy_with_logits(logits[known], targets[known])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


Inputs = torch.Tensor | tuple[torch.Tensor, ...]  # one view; or frontal, lateral and lateral_present


def rows_of(x: Inputs, idx) -> Inputs:
    return tuple(t[idx] for t in x) if isinstance(x, tuple) else x[idx]


def count(x: Inputs) -> int:
    return len(x[0]) if isinstance(x, tuple) else len(x)


def network_inputs(x: Inputs, spec: InputSpec, gen: torch.Generator | None = None,
                   view_dropout: float = 0.0) -> tuple[torch.Tensor, ...]:
    """What the network is called with: normalised images (augmented when ``gen`` is given); for two views,
    ``view_dropout`` of the studies lose their lateral."""
    if not isinstance(x, tuple):
        return (normalise_batch(augment(x, gen) if gen is not None else x, spec),)
    front, side, present = x
    if gen is not None:
        front, side = augment(front, gen), augment(side, gen)
        present = present * (torch.rand(present.shape, generator=gen) >= view_dropout).float()
    return normalise_batch(front, spec), normalise_batch(side, spec), present


@torch.no_grad()
def predict(net: torch.nn.Module, x: Inputs, spec: InputSpec, batch_size: int = 128,
            accel: Accel = Accel(torch.device("cpu"))) -> np.ndarray:
    net.eval()
    out = []
    for i in range(0, count(x), batch_size):
        with accel.autocast():
            logits = net(*accel.inputs(network_inputs(rows_of(x, slice(i, i + batch_size)), spec)))
        out.append(torch.sigmoid(logits.float()).cpu())
    return torch.cat(out).numpy()


def train(cfg: TrainConfig) -> Path:
    """Train, checkpointing every epoch to ``out/last.pt`` and the best by val AUROC to ``out/best.pt``.

    Re-running with the same ``out`` resumes from ``last.pt``; each epoch's shuffling and augmentation
    come from a generator seeded by (seed, epoch), so a resumed run matches an uninterrupted one.

    Under ``torchrun`` each of N processes takes 1/N of every global batch of ``batch_size``, gradients are
    averaged across them, validation is split and gathered, and rank 0 alone writes files. A checkpoint holds no
    trace of N, so a run resumes on any number of processes.
    """
    ranks = distributed.start(gpu=cfg.device != "cpu" and torch.cuda.is_available())
    out = start_run(cfg, ranks.main)
    spec = cfg.spec
    builder = cfg.input_builder(f"trained in {cfg.out}")
    columns = _target_columns(cfg)
    if cfg.shards:
        data = Streamed(Path(cfg.shards), spec, cfg.source_models)
        x_val, y_val = read_split(Path(cfg.shards), "val")
    else:
        for rank_turn in (True, False):  # rank 0 reads the images and caches them; the others read its cache
            if ranks.main == rank_turn:
                (x_train, y_train, p_train), (x_val, y_val, _) = (
                    _load(cfg, builder, split, out / f"inputs-{split}.pt") for split in ("train", "val"))
            ranks.barrier()
        data = InMemory(x_train, y_train, p_train if cfg.scalp else None)
    say = distributed.sayer(ranks)
    laterals = f" ({data.laterals} of them with a lateral, repeats included)" if cfg.two_view else ""
    say(f"train {len(data)} {'studies' if cfg.two_view else 'images'}{laterals}"
        + (f" streamed from {len(data.stream.urls)} shards" if cfg.shards else "")
        + f", val {count(x_val)} (patient-wise split); inputs {', '.join(spec.sources)}"
        + (f"; {ranks.world} processes" if ranks.distributed else ""))

    accel = Accel.choose(cfg.device, cfg.precision, cfg.channels_last, ranks.local)
    net = build(cfg.architecture, num_classes=len(cfg.labels), in_chans=spec.channels)
    if cfg.two_view != isinstance(net, TwoViewDenseNet):
        raise ValueError(f"architecture {cfg.architecture} reads {'two views' if not cfg.two_view else 'one view'};"
                         f" --views {','.join(cfg.views)} needs a {'two-view' if cfg.two_view else 'single-view'} one")
    if cfg.init_from and not (out / "last.pt").exists():
        say(f"starting from {cfg.init_from}: {init_weights(net, Path(cfg.init_from))}")
    trainee = accel.place(ScalpModel(net) if cfg.scalp else net)
    model = torch.nn.parallel.DistributedDataParallel(trainee, device_ids=[accel.device.index] if accel.cuda else None) \
        if ranks.distributed else trainee
    task = ClassifierTask(cfg, data, (x_val, y_val[:, columns]), columns, net, ranks, accel)
    plan = Plan(rounds=cfg.epochs, steps=cfg.epochs * -(-len(data) // cfg.batch_size), lr=cfg.lr,
                weight_decay=cfg.weight_decay, stop_after=cfg.stop_after)
    last = fit(task, net, plan, out, trainee, model, ranks, accel, say)
    if ranks.main and last is not None:
        (out / "history.json").write_text(json.dumps(last["history"], indent=2) + "\n")
    distributed.stop(ranks)
    return out / "best.pt"


class ClassifierTask(Task):
    """An epoch a round; the score is the val mean AUROC over the findings (or the triage output alone)."""

    unit = "epoch"

    def __init__(self, cfg: TrainConfig, data, val: tuple[Inputs, torch.Tensor], columns: list[int], net,
                 ranks, accel: Accel):
        self.cfg, self.data, self.val, self.columns, self.net = cfg, data, val, columns, net
        self.ranks, self.accel = ranks, accel

    def batches(self, round: int):
        """The epoch's batches, each with the generator that augments it: the epoch's order is the same on every
        rank, the augmentation each rank's own."""
        cfg, ranks = self.cfg, self.ranks
        gen = torch.Generator().manual_seed(cfg.seed * 100_003 + round)
        batches = self.data.epoch(round, cfg.seed, ranks, cfg.batch_size, gen)
        if ranks.distributed:
            gen = ranks.generator(cfg.seed, round)
        return ((gen, *batch) for batch in batches)

    def loss(self, model, batch) -> torch.Tensor:
        """With SCALP, a batch also holds each image's partner of the same patient and its targets."""
        gen, x, y, *partner = batch
        cfg, spec, accel, columns = self.cfg, self.cfg.spec, self.accel, self.columns
        if partner:
            logits, z = model(*accel.inputs((*network_inputs(x, spec, gen), *network_inputs(partner[0], spec, gen))))
            y, y_partner = accel.inputs((y[:, columns], partner[1][:, columns]))
            return scalp_loss(logits.float(), z.float(), y, y_partner, masked_bce, cfg.scalp)
        logits = model(*accel.inputs(network_inputs(x, spec, gen, cfg.view_dropout)))
        return masked_bce(logits.float(), y[:, columns].to(accel.device))

    def measure(self, round: int, loss: float) -> dict:
        (x_val, y_val), ranks = self.val, self.ranks
        scored = slice(0, len(FINDINGS)) if self.cfg.task == "findings" else slice(0, 1)
        mine = rows_of(x_val, slice(ranks.rank, None, ranks.world))
        probs = ranks.gather_rows(torch.from_numpy(predict(self.net, mine, self.cfg.spec, accel=self.accel)),
                                  count(x_val))
        auc = mean_auroc(y_val.numpy()[:, scored], probs.numpy()[:, scored])
        return {"epoch": round, "loss": loss, "val_mean_auroc": auc, "score": auc}

    def line(self, entry: dict) -> str:
        return f"epoch {entry['epoch'] + 1}/{self.cfg.epochs}  loss {entry['loss']:.4f}  val mean AUROC " \
               f"{entry['val_mean_auroc']:.3f}"

    def fields(self) -> dict:
        cfg = self.cfg
        return {**checkpoint_fields(self.net), "labels": cfg.labels, "input": asdict(cfg.spec),
                "source_models": cfg.source_models, "views": list(cfg.views)}


class InMemory:
    """A training split held in memory: an epoch is a permutation from its generator (the same on every rank),
    shared out by ``ranks.share``. With ``patients`` (SCALP), batches hold one image a patient and each image
    comes with a partner of the same patient: batches are (x, y, partner x, partner y)."""

    def __init__(self, x: Inputs, y: torch.Tensor, patients: torch.Tensor | None = None):
        self.x, self.y = x, y
        self.patients = None if patients is None else patients.tolist()
        self.by_patient: dict[int, list[int]] = {}
        for i, patient in enumerate(self.patients or []):
            self.by_patient.setdefault(patient, []).append(i)

    def __len__(self) -> int:
        return count(self.x)

    @property
    def laterals(self) -> int:
        return int(self.x[2].sum())

    def epoch(self, epoch: int, seed: int, ranks, batch_size: int, gen: torch.Generator):
        order = torch.randperm(count(self.x), generator=gen)
        if self.patients is None:
            return ((rows_of(self.x, idx), self.y[idx]) for idx in ranks.share(order, batch_size))
        batches = [ranks.split(torch.tensor(b)) for b in patient_batches(order.tolist(), self.patients, batch_size)]
        pairs = [(idx, partners(idx, self.by_patient, self.patients, gen)) for idx in batches]  # drawn in order
        return ((self.x[idx], self.y[idx], self.x[mate], self.y[mate]) for idx, mate in pairs)


class Streamed:
    """A training split streamed from shards (``radsight.train.shards``), packed for this input."""

    def __init__(self, root: Path, spec: InputSpec, source_models: dict[str, str]):
        read_index(root, spec, source_models)
        self.stream = ShardStream(root, "train")

    def __len__(self) -> int:
        return len(self.stream)

    def epoch(self, epoch: int, seed: int, ranks, batch_size: int, gen: torch.Generator):
        return self.stream.epoch(epoch, seed, ranks, batch_size)


def _load(cfg: TrainConfig, builder: InputBuilder, split: str, cache: Path
          ) -> tuple[Inputs, torch.Tensor, torch.Tensor | None]:
    """One split of every source: images, or for two views studies (``radsight.train.studies``); targets; each
    image's patient as a number (None for studies)."""
    sources = [(cfg.manifest, cfg.images), *cfg.also]
    if cfg.two_view:
        x, y = load_studies([r for r in study_rows(sources) if r.split == split], builder, cache)
        return (*(oversample_laterals(x, y, cfg.lateral_share) if split == "train" else (x, y)), None)
    parts = [load_split(read_manifest(Path(m), Path(i)).select(split), builder,
                        cache if n == 0 else cache.with_name(f"{cache.stem}-{n}.pt")) for n, (m, i) in enumerate(sources)]
    offsets = np.cumsum([0] + [int(p.max()) + 1 if len(p) else 0 for _, _, p in parts])  # patients differ by dataset
    return (torch.cat([x for x, _, _ in parts]), torch.cat([y for _, y, _ in parts]),
            torch.cat([p + int(o) for (_, _, p), o in zip(parts, offsets)]))


def _target_columns(cfg: TrainConfig) -> list[int]:
    """Columns of load_split's targets (14 findings, then any finding) that the task trains on."""
    return [len(FINDINGS)] if cfg.task == "abnormal" else list(range(len(FINDINGS) + 1))


def init_weights(net: torch.nn.Module, checkpoint: Path) -> str:
    """Copy every tensor of ``checkpoint`` whose name and shape match ``net``'s; say what was left out."""
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    except Exception as exc:  # not a torch file, truncated...: one line naming the file
        raise ValueError(f"{checkpoint}: not a readable checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{checkpoint}: not a radsight checkpoint (no 'model' weights)")
    own = net.state_dict()
    taken = {k: v for k, v in state["model"].items() if k in own and own[k].shape == v.shape}
    if not taken:
        raise ValueError(f"{checkpoint}: no tensor matches this architecture")
    net.load_state_dict(taken, strict=False)
    if isinstance(net, TwoViewDenseNet) and not any(k.startswith("lateral") for k in taken):
        init_lateral_from_frontal(net)  # a single-view checkpoint: the lateral branch starts as the frontal one
        taken.update({k: None for k in own if k.startswith("lateral.")})
    skipped = sorted(set(own) - set(taken))
    return f"{len(taken)} tensors taken" + (f", {len(skipped)} left at their initial values ({', '.join(skipped[:4])})"
                                           if skipped else "")


def start_run(cfg, main: bool = True) -> Path:
    """Create the run folder, record the config (``main``: the process that writes files), set threads and
    seeds."""
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    if main:
        (out / "train_config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    return out


# the options of radsight train this task reads (TrainRequest.ignored names the others given)
READS = {"shards", "scalp", "device", "precision", "channels_last", "views", "region", "sources", "bone_model",
         "init_from", "architecture", "input_size", "epochs", "batch_size", "lr"}


def from_request(r: TrainRequest) -> str:
    """``radsight train --task findings`` (one view or two) and ``--task abnormal`` (binary pretraining)."""
    (manifest, images), also = r.datasets[0], r.datasets[1:]
    cfg = TrainConfig(manifest=manifest, images=images, out=r.out, architecture=r.architecture,
                      input_size=r.input_size or 64, epochs=r.epochs, batch_size=r.batch_size or 32, lr=r.lr,
                      seed=r.seed, threads=r.threads, stop_after=r.stop_after, region=r.region, sources=r.sources,
                      bone_model=r.bone_model,
                      task="abnormal" if r.task == "abnormal" else "findings",
                      init_from=r.init_from, also=also, views=r.views, shards=r.shards, scalp=r.scalp,
                      device=r.device, precision=r.precision, channels_last=r.channels_last)
    return f"best checkpoint: {train(cfg)}"
