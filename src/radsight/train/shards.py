"""Datasets as WebDataset tar shards, for training on more images than memory (or local disk) holds.

``pack`` reads each image once through the same I/O and input builder as training from folders does, and writes
the model input (before normalisation, 16-bit) with its targets and patient id, a few thousand samples a shard;
``index.json`` names the shards of each split, their sample count and the input contract they were made for.
``ShardStream`` streams a split back: shards shuffled each epoch and split over the ranks, samples through a
shuffle buffer, every rank the same number of batches. One process sees every sample once an epoch; N ranks see
about one epoch between them (a rank whose shards run out starts them again).
"""
from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import asdict
from itertools import islice
from pathlib import Path

import numpy as np
import torch
import webdataset as wds

from radsight.core import FINDINGS, InputError
from radsight.data.manifest import read_manifest
from radsight.inputs.preprocess import InputSpec
from radsight.io import load_image
from radsight.io.atomic import atomic_text
from radsight.models.config import TRIAGE_LABEL
from radsight.pipeline.inputs import InputBuilder
from radsight.train.distributed import Ranks, log

FORMAT = "radsight-shards/1"
INDEX = "index.json"
SCALE = 65535  # inputs in [0, 1] are stored as uint16


def pack(sources: list[tuple[str, str]], builder: InputBuilder, out: Path, splits: tuple[str, ...] = ("train", "val"),
         shard_size: int = 2000, source_models: dict[str, str] | None = None) -> dict:
    """Write every split of the (manifest, images) ``sources`` as shards under ``out``; the index written. An image
    that cannot be read is skipped with a line, as training from folders does."""
    out.mkdir(parents=True, exist_ok=True)
    index = {"format": FORMAT, "spec": asdict(builder.spec), "source_models": source_models or {},
             "labels": [*FINDINGS, TRIAGE_LABEL], "splits": {}}
    for split in splits:
        count = skipped = 0
        with wds.ShardWriter(str(out / f"{split}-%06d.tar"), maxcount=shard_size, verbose=0) as sink:
            for n, (manifest_csv, images) in enumerate(sources):
                manifest = read_manifest(Path(manifest_csv), Path(images)).select(split)
                targets = np.concatenate([manifest.labels, manifest.abnormal()[:, None]], axis=1)
                for row in range(len(manifest)):
                    try:
                        x = builder.build(load_image(manifest.path(row)), normalised=False).x
                    except InputError as exc:
                        log.warning("skipped: %s", exc)
                        skipped += 1
                        continue
                    sink.write({"__key__": f"{n}-{row:08d}", "input.npy": np.round(x * SCALE).astype(np.uint16),
                                "target.json": {"y": [None if math.isnan(v) else float(v) for v in targets[row]],
                                                "patient": manifest.patient_ids[row], "image": manifest.images[row]}})
                    count += 1
        index["splits"][split] = {"shards": sorted(p.name for p in out.glob(f"{split}-*.tar")), "count": count,
                                  "skipped": skipped}
    atomic_text(out / INDEX, json.dumps(index, indent=2) + "\n")
    return index


def read_index(root: Path, spec: InputSpec | None = None, source_models: dict[str, str] | None = None) -> dict:
    """The shards' index; ValueError when there is none, or when it was packed for another input than ``spec``
    (size, region, sources) or other source models."""
    try:
        index = json.loads((root / INDEX).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{root}: no shard index ({INDEX}); make one with radsight data pack") from exc
    if index.get("format") != FORMAT:
        raise ValueError(f"{root}: shards of format {index.get('format')!r}, not {FORMAT}")
    if spec is not None:
        packed = {k: index["spec"].get(k) for k in ("size", "region", "sources")}
        wanted = {"size": spec.size, "region": spec.region, "sources": list(spec.sources)}
        if packed != wanted or (source_models is not None and index["source_models"] != source_models):
            raise ValueError(f"{root}: packed for input {packed} with {index['source_models']}, not {wanted} with "
                             f"{source_models}: pack again with these options")
    return index


def _decode(sample: dict) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(sample["input.npy"].astype(np.float32) / SCALE)
    y = torch.tensor([np.nan if v is None else v for v in sample["target.json"]["y"]], dtype=torch.float32)
    return x, y


def _samples(urls: list[str]) -> Iterator[dict]:
    every = lambda names: names  # noqa: E731 - the ranks' shards are chosen here, not by webdataset
    return iter(wds.WebDataset(urls, shardshuffle=False, nodesplitter=every, workersplitter=every,
                               empty_check=False).decode())


def read_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split in shard order, as tensors (validation): inputs (N, sources, S, S), targets (N, labels)."""
    index = read_index(root)
    pairs = [_decode(s) for s in _samples([str(root / name) for name in index["splits"][split]["shards"]])]
    if not pairs:
        raise ValueError(f"{root}: no {split} samples")
    return torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])


class ShardStream:
    """One split of packed shards, streamed; ``buffer``: samples held for shuffling."""

    def __init__(self, root: Path, split: str, buffer: int = 1000):
        index = read_index(root)
        if split not in index["splits"]:
            raise ValueError(f"{root}: no {split} split packed")
        self.urls = [str(root / name) for name in index["splits"][split]["shards"]]
        self.count, self.buffer = index["splits"][split]["count"], buffer
        if not self.count:
            raise ValueError(f"{root}: the {split} split has no samples")

    def __len__(self) -> int:
        return self.count

    def epoch(self, epoch: int, seed: int, ranks: Ranks, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's batches of one epoch: as many, and as large, as ``ranks.share`` makes of ``count`` samples,
        so every rank takes the same number of steps."""
        sizes = [len(b) for b in ranks.share(torch.arange(self.count), batch_size)]
        samples = self._rank_samples(epoch, seed, ranks)
        for size in sizes:
            pairs = [_decode(next(samples)) for _ in range(size)]
            yield torch.stack([x for x, _ in pairs]), torch.stack([y for _, y in pairs])

    def _rank_samples(self, epoch: int, seed: int, ranks: Ranks) -> Iterator[dict]:
        """Endless: pass after pass over this rank's shards (every rank the same shard order, from the seed and
        epoch; with fewer shards than ranks, every rank reads them all and keeps every world-th sample)."""
        for n in range(1 << 30):
            urls = list(self.urls)
            random.Random(f"{seed}/{epoch}/{n}").shuffle(urls)
            few = len(urls) < ranks.world
            mine = urls if few else urls[ranks.rank::ranks.world]
            stream = islice(_samples(mine), ranks.rank if few else 0, None, ranks.world if few else 1)
            given = 0
            for sample in _shuffled(stream, self.buffer, random.Random(f"{seed}/{epoch}/{n}/{ranks.rank}")):
                given += 1
                yield sample
            if not given:
                raise ValueError(f"rank {ranks.rank} of {ranks.world} has no samples: fewer samples than ranks")


def _shuffled(samples: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """A shuffle buffer: each sample out is drawn at random from the next ``size`` in."""
    held: list[dict] = []
    for sample in samples:
        held.append(sample)
        if len(held) >= size:
            i = rng.randrange(len(held))
            held[i], held[-1] = held[-1], held[i]
            yield held.pop()
    rng.shuffle(held)
    yield from held
