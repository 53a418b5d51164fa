"""Bone suppression networks: the conditional GAN's generator and patch discriminator, and the
convolutional autoencoder of Gusarev et al. 2017 (for published weights).

The generator reads the normalised radiograph and returns the **bone image** in display grey units
(radiograph minus soft tissue). Its last convolution starts at zero, so an untrained generator is the
identity (no bone removed), and training only has to learn the few grey levels the ribs add. The
pipeline subtracts the bone image, scaled up, from the film at its own resolution, so the soft-tissue
view keeps the film's fine structure.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _conv_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.GroupNorm(min(8, cout), cout), nn.LeakyReLU(0.2),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.GroupNorm(min(8, cout), cout), nn.LeakyReLU(0.2),
    )


class SelfAttention(nn.Module):
    """SAGAN self-attention over the feature map's positions, added back with a learned gate (starts at 0)."""

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 8)
        self.query, self.key = nn.Conv2d(channels, inner, 1), nn.Conv2d(channels, inner, 1)
        self.value = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        q = self.query(x).flatten(2).transpose(1, 2)  # (n, hw, inner)
        k = self.key(x).flatten(2)  # (n, inner, hw)
        attn = torch.softmax(q @ k / k.shape[1] ** 0.5, dim=-1)  # (n, hw, hw)
        out = (self.value(x).flatten(2) @ attn.transpose(1, 2)).view(n, c, h, w)
        return x + self.gamma * out


class BoneGenerator(nn.Module):
    """U-Net with skip connections and self-attention at the bottleneck; output: the bone image (N, 1, S, S)."""

    def __init__(self, in_chans: int = 1, base: int = 16, depth: int = 4):
        super().__init__()
        self.arch_kwargs = {"in_chans": in_chans, "base": base, "depth": depth}
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([_conv_block(in_chans, widths[0])] +
                                  [_conv_block(widths[i], widths[i + 1]) for i in range(depth)])
        self.attention = SelfAttention(widths[-1])
        self.up = nn.ModuleList([_conv_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], 1, 3, padding=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.multiple = 2 ** depth  # input sides must be a multiple of this

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2))
            skips.append(x)
        x = self.attention(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False), skip], 1))
        return self.head(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN critic with spectral normalisation on every convolution; reads (radiograph, soft tissue)."""

    def __init__(self, in_chans: int = 2, base: int = 32, layers: int = 3):
        super().__init__()
        self.arch_kwargs = {"in_chans": in_chans, "base": base, "layers": layers}
        mods: list[nn.Module] = []
        cin = in_chans
        for i in range(layers):
            cout = base * 2 ** i
            mods += [spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)]
            cin = cout
        mods += [spectral_norm(nn.Conv2d(cin, cin, 3, 1, 1)), nn.LeakyReLU(0.2),
                 spectral_norm(nn.Conv2d(cin, 1, 3, 1, 1))]
        self.net = nn.Sequential(*mods)

    def forward(self, image: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, soft], 1))


class GusarevAutoencoder(nn.Module):
    """Gusarev et al. 2017: three 5x5 stride-2 convolutions (16-32-64), three transposed convolutions back,
    ReLU after each, sigmoid output; the soft-tissue image in [0, 1]. Key names as public BSE-JSRT code has them
    (``enc1``..``enc3``, ``dec3``..``dec1``)."""

    def __init__(self, in_chans: int = 1, width: int = 16):
        super().__init__()
        self.arch_kwargs = {"in_chans": in_chans, "width": width}
        w = width
        self.enc1, self.enc2, self.enc3 = (nn.Conv2d(a, b, 5, 2, 2) for a, b in ((in_chans, w), (w, 2 * w), (2 * w, 4 * w)))
        self.dec3, self.dec2, self.dec1 = (nn.ConvTranspose2d(a, b, 5, 2, 2, output_padding=1)
                                           for a, b in ((4 * w, 2 * w), (2 * w, w), (w, in_chans)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in (self.enc1, self.enc2, self.enc3, self.dec3, self.dec2, self.dec1):
            x = F.relu(layer(x))
        return torch.sigmoid(x)
