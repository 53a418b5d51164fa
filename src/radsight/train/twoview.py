"""The seed system's dual-branch classifier: a frontal and a lateral branch, each the first dense blocks of a
DenseNet, whose feature maps are joined and read by the remaining dense blocks and the head.

The two maps are joined side by side (frontal | lateral, along the width), not stacked as channels: the
remaining blocks still read both views (their receptive fields span the joined map), and each position of the
last feature map belongs to one view, so the class activation map splits into one exact map per view and the
logit stays its mean plus the bias, with no gradients. Rows stay aligned: both films run head to foot.

A study without a lateral sets ``lateral_present`` to 0: the lateral half is then a learned "lateral absent"
map, whatever the lateral input holds, so a frontal-only study gets the same result however it is fed.
Module names of the frontal path and the head are those of :class:`~radsight.train.nets.DenseNet`, so a
single-view checkpoint starts the frontal branch, the shared blocks and the head (``init_from``).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from radsight.train.nets import VARIANTS, DenseNet, DenseNetConfig, WithCams


class TwoViewDenseNet(DenseNet):
    """``fuse_after``: how many dense blocks each branch has (1 to all; all: only the final norm is shared)."""

    def __init__(self, cfg: DenseNetConfig, fuse_after: int):
        super().__init__(cfg)
        blocks = len(cfg.block_config)
        if not 1 <= fuse_after <= blocks:
            raise ValueError(f"fuse_after must be 1 to {blocks}")
        names = list(self.features._modules)
        last = f"transition{fuse_after}" if fuse_after < blocks else f"denseblock{fuse_after}"
        self.split = names.index(last) + 1
        self.lateral = copy.deepcopy(self.features[:self.split])
        channels = _channels_after(cfg, fuse_after)
        self.lateral_absent = nn.Parameter(torch.zeros(channels))
        self.arch_kwargs = {**cfg.to_dict(), "fuse_after": fuse_after}

    def forward_features(self, image: torch.Tensor, lateral: torch.Tensor | None = None,
                         lateral_present: torch.Tensor | None = None) -> torch.Tensor:
        """The joined last feature map (N, C, h, 2w): columns [0, w) from the frontal, [w, 2w) from the lateral."""
        frontal = self.features[:self.split](image)
        absent = self.lateral_absent.view(1, -1, 1, 1).expand_as(frontal)
        if lateral is None:
            side = absent
        elif self.training:  # the branch reads real laterals only: no compute, and no batch statistics, on blanks
            side, rows = absent.clone(), lateral_present.view(-1) > 0
            if rows.any():
                side[rows] = self.lateral(lateral[rows])
        else:  # the graph that is exported: every row through the branch, masked
            present = lateral_present.view(-1, 1, 1, 1)
            side = present * self.lateral(lateral) + (1 - present) * absent
        return F.relu(self.features[self.split:](torch.cat([frontal, side], 3)))

    def forward(self, image: torch.Tensor, lateral: torch.Tensor | None = None,
                lateral_present: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_head(self.forward_features(image, lateral, lateral_present))


def _channels_after(cfg: DenseNetConfig, blocks: int) -> int:
    n = cfg.num_init_features
    for i, layers in enumerate(cfg.block_config[:blocks]):
        n += layers * cfg.growth_rate
        if i != len(cfg.block_config) - 1:
            n //= 2
    return n


class TwoViewWithCams(WithCams):
    """Export wrapper of a two-view network: three named inputs, logits and the joined CAMs."""

    def forward(self, image: torch.Tensor, lateral: torch.Tensor, lateral_present: torch.Tensor):
        return self.logits_and_cams(self.net.forward_features(image, lateral, lateral_present))


def init_lateral_from_frontal(net: TwoViewDenseNet) -> None:
    """Start the lateral branch from the frontal branch's weights (after a single-view ``init_from``)."""
    net.lateral.load_state_dict(net.features[:net.split].state_dict())


def densenet_small_twoview(fuse_after: int = 3, **overrides) -> TwoViewDenseNet:
    """densenet-small's blocks behind a stride-2 stem: a quarter of its multiply-adds a view, and a 4x4 map a view
    at 64 px (the seed system fused after the third of four blocks, as ``fuse_after`` does by default)."""
    fields = {**VARIANTS["densenet-small"].to_dict(), "stem": "half", **overrides}
    return TwoViewDenseNet(DenseNetConfig(**{**fields, "block_config": tuple(fields["block_config"])}), fuse_after)
