"""The training loop the classifier, the lung segmenter and the view classifier share (the bone GAN, with two
networks in turn, has its own): rounds of optimisation steps, each round ending with a measure and a checkpoint.

A round is an epoch (classifier) or the steps between two checkpoints (lung segmenter, view classifier). The task
gives a round's batches, drawn from generators seeded by the run's seed and the round or step so that a resumed
run matches an uninterrupted one, and the loss of a batch. ``fit`` owns the rest: AdamW with a one-cycle schedule,
mixed precision and loss scaling (``Accel``), resuming from ``last.pt`` at a round boundary, the round's score
(higher is better; NaN keeps the latest) choosing ``best.pt``, the history, and under ``torchrun`` the main rank
alone writing files.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from rich.progress import Progress

from radsight.io.atomic import atomic_write
from radsight.train.accel import Accel
from radsight.train.distributed import Ranks, log


class Task:
    """What differs between tasks. ``batches(round)``: that round's batches; ``loss(model, batch)``: a batch's loss
    (run under autocast); ``measure(round, loss)``: the round's history entry, with its ``score`` (NaN: none);
    ``line(entry)``: what is printed for it; ``fields()``: what a checkpoint holds besides the optimisation state;
    ``unit``: what a round is called."""

    unit = "round"

    def batches(self, round: int) -> Iterable:
        raise NotImplementedError

    def loss(self, model: torch.nn.Module, batch) -> torch.Tensor:
        raise NotImplementedError

    def measure(self, round: int, loss: float) -> dict:
        return {"round": round, "loss": loss, "score": float("nan")}

    def line(self, entry: dict) -> str:
        return f"round {entry['round'] + 1}  loss {entry['loss']:.4f}"

    def fields(self) -> dict:
        return {}


@dataclass
class Plan:
    """``rounds`` in the run, ``steps`` optimisation steps in all of them (the schedule's length); ``stop_after``
    rounds, then stop resumably."""

    rounds: int
    steps: int
    lr: float
    weight_decay: float = 1e-4
    stop_after: int | None = None


def fit(task: Task, net: torch.nn.Module, plan: Plan, out: Path, trainee: torch.nn.Module | None = None,
        model: torch.nn.Module | None = None, ranks: Ranks = Ranks(), accel: Accel = Accel(torch.device("cpu")),
        say=log.info) -> dict:
    """Train ``trainee`` (``net`` with any training-only parts; its parameters are optimised), calling ``model``
    (``trainee``, or its DistributedDataParallel wrapper); ``net`` is what checkpoints hold as ``model``. Returns the
    last round's checkpoint (None when there was nothing left to run)."""
    trainee = trainee or net
    model = model or trainee
    opt = torch.optim.AdamW(trainee.parameters(), lr=plan.lr, weight_decay=plan.weight_decay)
    # warm-up: 10%, and at least 2 steps where the run has room (OneCycleLR divides by each phase's length - 1)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=plan.lr, total_steps=plan.steps,
                                                pct_start=max(0.1, 2 / plan.steps) if plan.steps > 3 else 0.1)
    scaler = accel.scaler()
    start, best, history, state = 0, float("-inf"), [], None  # any first score is the best so far
    if (out / "last.pt").exists():
        state = torch.load(out / "last.pt", map_location="cpu", weights_only=False)
        net.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if "extra" in state and trainee is not net:
            trainee.load_state_dict({**trainee.state_dict(), **state["extra"]})
        start, best, history = state["round"] + 1, state["best"], state["history"]
        say(f"resuming after {task.unit} {start} of {plan.rounds} (best score so far {best:.3f})")
    with Progress(disable=not ranks.main) as progress:
        bar = progress.add_task("training", total=plan.rounds, completed=start)
        for round in range(start, min(plan.rounds, plan.stop_after or plan.rounds)):
            model.train()
            losses = []
            for batch in task.batches(round):
                with accel.autocast():
                    loss = task.loss(model, batch)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                losses.append(loss.item())
            mean = float(ranks.gather_rows(torch.tensor([np.mean(losses)]), ranks.world).mean())
            entry = task.measure(round, mean)
            history.append(entry)
            if ranks.main:
                progress.console.print(task.line(entry))
            extra = {k: v for k, v in trainee.state_dict().items() if not k.startswith("net.")} \
                if trainee is not net else None
            state = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "round": round, "best": max(best, entry["score"]), "history": history, **task.fields(),
                     **({"extra": extra} if extra else {})}
            if not entry["score"] <= best:  # NaN (no measure this round): keep the latest
                best = entry["score"]
                if ranks.main:
                    atomic_save(state, out / "best.pt")
            if ranks.main:
                atomic_save(state, out / "last.pt")
            ranks.barrier()  # no rank starts the next round (or resumes) before the checkpoint is whole
            progress.advance(bar)
    return state


def atomic_save(state: dict, path: Path) -> None:
    atomic_write(path, lambda tmp: torch.save(state, tmp))
