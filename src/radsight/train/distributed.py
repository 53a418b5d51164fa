"""Data-parallel training under ``torchrun``: the process group (gloo on CPUs, NCCL on GPUs), each rank's share
of an epoch, results gathered across ranks, and rank 0 alone writing files.

Without ``torchrun`` (no WORLD_SIZE in the environment) everything here is the single-process identity, so the
training loop has one shape for 1 or N processes.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger("radsight.train")


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local: int = 0  # the rank among this machine's processes (its GPU)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def share(self, order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
        """This rank's batches of an epoch's ``order``: every global batch of ``batch_size`` split evenly over the
        ranks (a batch that does not divide is padded by wrapping round, as DistributedSampler pads), so each rank
        takes the same number of steps and the optimiser sees the global batches one process would."""
        return [self.split(order[start:start + batch_size]) for start in range(0, len(order), batch_size)]

    def split(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's share of one global batch (padded by wrapping round so that every share has one size)."""
        size = -(-len(batch) // self.world) * self.world
        return batch.repeat(-(-size // len(batch)))[:size][self.rank::self.world]

    def generator(self, seed: int, step: int) -> torch.Generator:
        """A step's random draws on this rank: one process's own stream, or under torchrun each rank its own."""
        return torch.Generator().manual_seed(seed * 100_003 + step + (7_919 * (self.rank + 1) if self.distributed
                                                                      else 0))

    def part(self, batch_size: int) -> int:
        """This rank's share of a global batch of ``batch_size`` samples drawn at random (rounded up)."""
        return -(-batch_size // self.world)

    def gather_rows(self, rows: torch.Tensor, total: int) -> torch.Tensor:
        """Rows computed rank by rank on ``range(rank, total, world)``, put back in order on every rank."""
        if not self.distributed:
            return rows
        parts = [None] * self.world
        dist.all_gather_object(parts, rows)
        out = torch.empty((total, *rows.shape[1:]), dtype=rows.dtype)
        for r, part in enumerate(parts):
            out[r::self.world] = part
        return out

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()


def start(gpu: bool | None = None) -> Ranks:
    """Join the process group ``torchrun`` describes in the environment; a single process without it. ``gpu``:
    whether the ranks train on GPUs (NCCL) or CPUs (gloo); None: on GPUs when any is visible."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    if not dist.is_initialized():
        gpu = torch.cuda.is_available() if gpu is None else gpu
        if gpu:  # NCCL talks between GPUs: each rank takes its own before joining
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if gpu else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def stop(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def sayer(ranks: Ranks):
    """Rank 0's progress lines, on the ``radsight.train`` logger; the other ranks say nothing."""
    return log.info if ranks.main else (lambda *args, **kwargs: None)
