"""SCALP: supervised contrastive learning with patient metadata, trained beside the findings' BCE.

A batch holds one image a patient. Each image is paired with another image of the same patient (itself,
augmented again, when the patient has no other) and both go through the network. Contrasting the pooled features
(through a projection head used in training only): an image's positives are its pair and every image sharing
a positive finding with it (or, both normal, sharing none); the rest of the batch are negatives.
loss = λ·BCE + (1 − λ)·SupCon (Khosla et al. 2020, temperature 0.1); λ = 0.8 in the SCALP paper.
Under ``torchrun`` each rank contrasts its own share of a batch.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

TEMPERATURE = 0.1


class ScalpModel(nn.Module):
    """The network with a projection head: ``forward(x, partner)`` gives ``x``'s logits and the unit embeddings of
    ``x`` and ``partner`` (2N, d). The head is not exported."""

    def __init__(self, net: nn.Module, dim: int = 64):
        super().__init__()
        width = net.head.in_features
        self.net = net
        self.projector = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, dim))

    def forward(self, x: torch.Tensor, partner: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.net.forward_features(torch.cat([x, partner]))
        logits = self.net.forward_head(features[:len(x)])
        return logits, F.normalize(self.projector(features.mean(dim=(2, 3))), dim=1)


def shared_labels(y: torch.Tensor) -> torch.Tensor:
    """(N, N) True where two images share a positive label; targets (N, findings + any finding) or (N, any finding),
    NaN unknown. Two images known normal (any finding 0) share "normal"."""
    positive = torch.nan_to_num(y[:, :-1] if y.shape[1] > 1 else y, nan=0.0) > 0.5
    marks = torch.cat([positive, (y[:, -1:] == 0)], dim=1).float()
    return marks @ marks.T > 0


def supcon(z: torch.Tensor, positives: torch.Tensor, temperature: float = TEMPERATURE) -> torch.Tensor:
    """Supervised contrastive loss of unit embeddings ``z`` (M, d); ``positives`` (M, M) bool, the diagonal ignored."""
    self_mask = torch.eye(len(z), dtype=torch.bool, device=z.device)
    logits = (z @ z.T / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = positives & ~self_mask
    counts = positives.sum(1)
    mean = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(1) / counts.clamp(min=1)
    return -mean[counts > 0].mean()


def scalp_loss(logits: torch.Tensor, z: torch.Tensor, y: torch.Tensor, y_partner: torch.Tensor, bce,
               weight: float) -> torch.Tensor:
    """``weight``·BCE(logits, y) + (1 − ``weight``)·SupCon over the images and their pairs (image k and pair k are
    the same patient's: always positives)."""
    n = len(y)
    positives = shared_labels(torch.cat([y, y_partner]))
    pair = torch.arange(2 * n, device=z.device)
    positives[pair, (pair + n) % (2 * n)] = True
    return weight * bce(logits, y) + (1 - weight) * supcon(z, positives)


def patient_batches(order: Sequence[int], patients: Sequence[int], batch_size: int) -> list[list[int]]:
    """``order`` cut into batches of at most one image a patient, as few as ``len(order) / batch_size`` allows: an
    image whose patient is already in the batch waits for the next one. Images still waiting when that many batches
    are full are left to a later epoch."""
    queue, batches = deque(order), []
    for _ in range(-(-len(order) // batch_size)):
        if not queue:
            break
        batch, seen, waiting = [], set(), []
        while queue and len(batch) < batch_size:
            i = queue.popleft()
            if patients[i] in seen:
                waiting.append(i)
            else:
                batch.append(i)
                seen.add(patients[i])
        queue.extendleft(reversed(waiting))
        batches.append(batch)
    return batches


def partners(idx: torch.Tensor, by_patient: dict[int, list[int]], patients: Sequence[int],
             gen: torch.Generator) -> torch.Tensor:
    """For each row, another row of the same patient drawn at random, or the row itself when there is none."""
    out = []
    for i in idx.tolist():
        others = [j for j in by_patient[patients[i]] if j != i]
        out.append(others[int(torch.randint(len(others), (1,), generator=gen))] if others else i)
    return torch.tensor(out, dtype=torch.long)
