"""The age and sex network: a U-Net's encoder (so that it can start from a segmentation model's encoder), one more
strided stage, global average pooling, and two heads: a distribution over whole years of age and a logit for
female sex. ``AgeSexOutputs`` wraps it for export: the estimate is the distribution's expectation."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from radsight.train.unet import double_conv

AGE_BINS = 101  # whole years 0..100


class AgeSexNet(nn.Module):
    def __init__(self, in_chans: int = 1, base: int = 12, depth: int = 4, width: int = 256, dropout: float = 0.3):
        super().__init__()
        self.arch_kwargs = {"in_chans": in_chans, "base": base, "depth": depth, "width": width, "dropout": dropout}
        widths = [base * 2 ** i for i in range(depth + 1)]
        # named as UNet's encoder (down.i), so a U-Net's convolutions load as they are
        self.down = nn.ModuleList([double_conv(in_chans, widths[0])] +
                                  [double_conv(widths[i], widths[i + 1]) for i in range(depth)])
        self.top = nn.Sequential(nn.Conv2d(widths[-1], width, 3, 2, 1, bias=False), nn.BatchNorm2d(width),
                                 nn.ReLU(inplace=True))
        self.drop = nn.Dropout(dropout)
        self.age_head = nn.Linear(width, AGE_BINS)
        self.sex_head = nn.Linear(width, 1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
        return self.top(x)

    def forward_head(self, fmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        pooled = self.drop(fmap.mean((2, 3)))
        return self.age_head(pooled), self.sex_head(pooled)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Age logits over whole years (N, 101) and the female logit (N, 1)."""
        return self.forward_head(self.forward_features(x))


def expected_age(age_logits: torch.Tensor) -> torch.Tensor:
    """The expectation in years (N,) of the distribution the logits give."""
    years = torch.arange(age_logits.shape[1], dtype=age_logits.dtype, device=age_logits.device)
    return (age_logits.softmax(1) * years).sum(1)


class AgeSexOutputs(nn.Module):
    """Export form: ``age`` (N, 1) in years (before bias correction) and ``female_logit`` (N, 1)."""

    def __init__(self, net: AgeSexNet):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, female = self.net(x)
        return expected_age(logits)[:, None], female
