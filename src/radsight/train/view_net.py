"""The view classifier's network: a small CNN that reads one view and gives one logit, P(lateral)."""
from __future__ import annotations

import torch
from torch import nn


class ViewCNN(nn.Module):
    """Four stride-2 3x3 conv/BN/ReLU stages (width, 2w, 4w, 4w), global average pooling, one logit (lateral)."""

    def __init__(self, width: int = 16, in_chans: int = 1):
        super().__init__()
        layers, n = [], in_chans
        for out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(n, out, 3, 2, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
            n = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(n, 1))
        self.arch_kwargs = {"width": width, "in_chans": in_chans}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)
