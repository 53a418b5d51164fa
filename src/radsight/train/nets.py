"""DenseNet-BC with torchvision's state-dict layout, small-input variants and a 512-px variant.

Key names follow torchvision (``features.denseblock1.denselayer1.norm1.weight``,
``classifier.weight``), so CheXNet-style checkpoints load without renaming. The ``small`` stem
(3x3 conv, stride 1, no max-pool) keeps an 8x8 final feature map for 64-px inputs, which is what
class activation maps are drawn from; ``densenet-small-256`` (strided stem, three blocks) keeps a 16x16
one at 256 px. The ``strided`` stem (the seed system's 512-px model: a 3x3 stride-2 convolution and a
stride-2 max-pool in front of the dense blocks) brings 512-px inputs to the first dense block at 128x128
with a quarter of the 7x7 stem's multiply-adds.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DenseNetConfig:
    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    stem: str = "imagenet"  # "imagenet": 7x7/2 conv + 3x3/2 max-pool; "small": 3x3/1 conv; "strided": 3x3/2 + pool;
    # "half": 3x3/2 conv
    in_chans: int = 3
    num_classes: int = 14
    drop_rate: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


VARIANTS: dict[str, DenseNetConfig] = {
    "densenet121": DenseNetConfig(),
    "densenet-small": DenseNetConfig(
        growth_rate=12, block_config=(4, 8, 12, 8), num_init_features=24, stem="small", in_chans=1
    ),
    "densenet121-512": DenseNetConfig(stem="strided"),
    # 256-px inputs: the strided stem and three dense blocks leave a 16x16 map, fine enough to draw boxes from
    "densenet-small-256": DenseNetConfig(
        growth_rate=12, block_config=(6, 12, 16), num_init_features=24, stem="strided", in_chans=1
    ),
}


class _DenseLayer(nn.Module):
    def __init__(self, in_features: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_features, bn_size * growth_rate, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))
        x = self.conv2(self.relu2(self.norm2(x)))
        return F.dropout(x, p=self.drop_rate, training=self.training) if self.drop_rate else x


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers: int, in_features: int, growth_rate: int, bn_size: int, drop_rate: float):
        super().__init__()
        for i in range(num_layers):
            layer = _DenseLayer(in_features + i * growth_rate, growth_rate, bn_size, drop_rate)
            self.add_module(f"denselayer{i + 1}", layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_features, out_features, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)


class DenseNet(nn.Module):
    def __init__(self, cfg: DenseNetConfig):
        super().__init__()
        self.cfg = cfg
        self.arch_kwargs = cfg.to_dict()
        if cfg.stem == "imagenet":
            stem = [("conv0", nn.Conv2d(cfg.in_chans, cfg.num_init_features, 7, 2, 3, bias=False)),
                    ("norm0", nn.BatchNorm2d(cfg.num_init_features)), ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(3, 2, 1))]
        elif cfg.stem == "strided":
            stem = [("conv0", nn.Conv2d(cfg.in_chans, cfg.num_init_features, 3, 2, 1, bias=False)),
                    ("norm0", nn.BatchNorm2d(cfg.num_init_features)), ("relu0", nn.ReLU(inplace=True)),
                    ("pool0", nn.MaxPool2d(2, 2))]
        elif cfg.stem == "half":
            stem = [("conv0", nn.Conv2d(cfg.in_chans, cfg.num_init_features, 3, 2, 1, bias=False)),
                    ("norm0", nn.BatchNorm2d(cfg.num_init_features)), ("relu0", nn.ReLU(inplace=True))]
        elif cfg.stem == "small":
            stem = [("conv0", nn.Conv2d(cfg.in_chans, cfg.num_init_features, 3, 1, 1, bias=False)),
                    ("norm0", nn.BatchNorm2d(cfg.num_init_features)), ("relu0", nn.ReLU(inplace=True))]
        else:
            raise ValueError(f"unknown stem {cfg.stem!r}")
        self.features = nn.Sequential()
        for name, module in stem:
            self.features.add_module(name, module)
        n = cfg.num_init_features
        for i, num_layers in enumerate(cfg.block_config):
            self.features.add_module(f"denseblock{i + 1}",
                                     _DenseBlock(num_layers, n, cfg.growth_rate, cfg.bn_size, cfg.drop_rate))
            n += num_layers * cfg.growth_rate
            if i != len(cfg.block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(n, n // 2))
                n //= 2
        self.features.add_module("norm5", nn.BatchNorm2d(n))
        self.num_features = n
        self.classifier = nn.Linear(n, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def head(self) -> nn.Linear:
        return self.classifier

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last feature map (N, C, h, w), after the final ReLU: what CAM is drawn from."""
        return F.relu(self.features(x))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(features.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class WithCams(nn.Module):
    """Export wrapper: logits and class activation maps from one forward pass.

    CAM_c = sum_k W[c, k] * F_k, so mean(CAM_c) + b_c equals the logit exactly (global average
    pooling is linear); the runtime then needs no gradients and no PyTorch.
    """

    def __init__(self, net: nn.Module, outputs: list[int] | None = None):
        """``net`` has ``forward_features`` and a linear ``head``; ``outputs`` keeps only those rows of it."""
        super().__init__()
        self.net = net
        rows = torch.arange(net.head.out_features) if outputs is None else torch.tensor(outputs)
        self.register_buffer("rows", rows, persistent=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits_and_cams(self.net.forward_features(x))

    def logits_and_cams(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weight, bias = self.net.head.weight[self.rows], self.net.head.bias[self.rows]
        cams = torch.einsum("nkhw,ck->nchw", features, weight)
        logits = cams.mean(dim=(2, 3)) + bias
        return logits, cams


def densenet(variant: str, **overrides) -> DenseNet:
    """One of :data:`VARIANTS`, with ``overrides`` of its config."""
    fields = {**VARIANTS[variant].to_dict(), **overrides}
    return DenseNet(DenseNetConfig(**{**fields, "block_config": tuple(fields["block_config"])}))
