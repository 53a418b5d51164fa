"""What ``radsight train`` was asked: every option of the command, for the head's trainer to take what it reads."""
from __future__ import annotations

from dataclasses import dataclass, fields

from radsight.models.store import DEFAULT_BONE_MODEL

COMMON = {"task", "datasets", "out", "seed", "threads", "stop_after"}  # what every training task reads


@dataclass(frozen=True)
class TrainRequest:
    task: str  # the head's task word
    datasets: list[tuple[str, str]]  # (manifest, images), one or more; ("", "") with shards
    out: str
    shards: str | None = None
    scalp: float | None = None
    device: str = "auto"
    precision: str = "fp32"
    channels_last: bool = False
    views: tuple[str, ...] = ("frontal",)
    masks: tuple[str, ...] = ()  # one mask folder per dataset
    targets: str | None = None
    stages: str = "128:200,256:400,512:400"
    kind: str | None = None
    holdout: tuple[str, ...] = ()
    val: tuple[str, ...] = ()
    iterations: int | None = None
    checkpoint_every: int = 50
    region: str = "image"
    sources: tuple[str, ...] = ("original",)
    bone_model: str = DEFAULT_BONE_MODEL
    init_from: str | None = None
    simulated_share: float = 0.5  # nodules: the share of each batch from nodule-free films with simulated ones
    metadata: str | None = None  # age-sex: a metadata table filling the manifests' empty age/sex cells
    architecture: str = "densenet-small"
    input_size: int | None = None
    epochs: int = 40
    batch_size: int | None = None
    lr: float = 1e-3
    seed: int = 0
    threads: int = 0
    stop_after: int | None = None

    def ignored(self, reads: set[str]) -> list[str]:
        """The options given (other than their defaults) that a task reading ``reads`` would ignore, as
        ``--option`` names."""
        return [f"--{f.name.replace('_', '-')}" for f in fields(self)
                if f.name not in COMMON | reads and getattr(self, f.name) != f.default]

    def one_dataset(self) -> tuple[str, str]:
        """The one (manifest, images) of a task that trains on one; ValueError for several."""
        if len(self.datasets) > 1:
            raise ValueError(f"--task {self.task} trains on one manifest")
        return self.datasets[0]
