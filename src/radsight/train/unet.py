"""A small U-Net (Ronneberger et al. 2015) for lung fields; trained from scratch, no pretrained encoder."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """Encoder-decoder with skip connections; ``forward`` returns one logit map per class at input size."""

    def __init__(self, in_chans: int = 1, num_classes: int = 1, base: int = 16, depth: int = 4):
        super().__init__()
        self.arch_kwargs = {"in_chans": in_chans, "num_classes": num_classes, "base": base, "depth": depth}
        widths = [base * 2 ** i for i in range(depth + 1)]
        self.down = nn.ModuleList([double_conv(in_chans, widths[0])] +
                                  [double_conv(widths[i], widths[i + 1]) for i in range(depth)])
        self.up = nn.ModuleList([double_conv(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth))])
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], 1))
        return self.head(x)


def unet_from_onnx(net: torch.nn.Module, path: Path) -> str:
    """Start ``net`` (a U-Net, or a network with a U-Net's encoder) from an exported U-Net's ONNX weights, whose batch norms were folded into the
    convolutions: each convolution takes the folded weights, its batch norm the folded bias with unit scale and
    zero mean, so the network computes what the file does. The head is taken only where its shape matches; a lung
    model's one lung channel starts both lung channels."""
    import onnx
    from onnx import numpy_helper
    weights = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in onnx.load(str(path)).graph.initializer}
    state, taken = net.state_dict(), 0
    for name, value in weights.items():
        if name.endswith(".weight_bias") or not name.endswith(".weight") or name.startswith("head"):
            continue
        module = name[: -len(".weight")]
        prefix, index = module.rsplit(".", 1)
        norm = f"{prefix}.{int(index) + 1}"
        if state.get(name) is None or state[name].shape != value.shape or f"{norm}.running_var" not in state:
            continue
        eps = dict(net.named_modules())[norm].eps
        state[name] = value
        state[f"{norm}.weight"] = torch.ones_like(state[f"{norm}.weight"])
        state[f"{norm}.bias"] = weights[f"{name}_bias"]
        state[f"{norm}.running_mean"] = torch.zeros_like(state[f"{norm}.running_mean"])
        state[f"{norm}.running_var"] = torch.full_like(state[f"{norm}.running_var"], 1 - eps)
        taken += 1
    head_w, head_b = weights.get("head.weight"), weights.get("head.bias")
    if head_w is not None and head_b is not None and "head.weight" in state \
            and head_w.shape[1:] == state["head.weight"].shape[1:]:
        for channel in range(min(2, state["head.weight"].shape[0])) if head_w.shape[0] == 1 else ():
            state["head.weight"][channel], state["head.bias"][channel] = head_w[0], head_b[0]
    if not taken:
        raise ValueError(f"{path}: no convolution matches this U-Net")
    net.load_state_dict(state)
    return f"{taken} convolutions taken from {path}"
