"""PSPNet (Zhao et al. 2017) as torchxrayvision's ChestX-Det anatomy model is built: a dilated ResNet (a 3-conv
stem, bottleneck stages with output stride 8), a pyramid pooling module (average pools to 6, 3, 2 and 1 cells),
and a 1x1 classifier upsampled bilinearly to the input. Module names follow the publisher's checkpoint, so its
weights load as they are; written for radsight from the paper and the checkpoint's layout."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# torchxrayvision's ChestX-Det targets, in output order
PSPNET_TARGETS = ("Left Clavicle", "Right Clavicle", "Left Scapula", "Right Scapula", "Left Lung", "Right Lung",
                  "Left Hilus Pulmonis", "Right Hilus Pulmonis", "Heart", "Aorta", "Facies Diaphragmatica",
                  "Mediastinum", "Weasand", "Spine")


class ConvNorm(nn.Module):
    """Convolution (no bias) and batch norm, with a ReLU when ``relu``; held as ``cbr_unit`` or ``cb_unit``."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                 relu: bool = True):
        super().__init__()
        layers = [nn.Conv2d(cin, cout, kernel, stride, padding, dilation=dilation, bias=False), nn.BatchNorm2d(cout)]
        self.unit_name = "cbr_unit" if relu else "cb_unit"
        setattr(self, self.unit_name, nn.Sequential(*layers, nn.ReLU(inplace=True)) if relu else nn.Sequential(*layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.unit_name)(x)


class Bottleneck(nn.Module):
    """1x1 down, 3x3 (strided or dilated), 1x1 up; a projected shortcut (``cb4``) where the shape changes."""

    def __init__(self, cin: int, mid: int, cout: int, stride: int, dilation: int, project: bool):
        super().__init__()
        self.cbr1 = ConvNorm(cin, mid, 1)
        self.cbr2 = ConvNorm(mid, mid, 3, stride, dilation, dilation)
        self.cb3 = ConvNorm(mid, cout, 1, relu=False)
        self.cb4 = ConvNorm(cin, cout, 1, stride, relu=False) if project else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.cb4 is None else self.cb4(x)
        return F.relu(self.cb3(self.cbr2(self.cbr1(x))) + shortcut)


class Stage(nn.Module):
    def __init__(self, blocks: int, cin: int, mid: int, cout: int, stride: int, dilation: int):
        super().__init__()
        stride = 1 if dilation > 1 else stride
        self.layers = nn.Sequential(Bottleneck(cin, mid, cout, stride, dilation, project=True),
                                    *[Bottleneck(cout, mid, cout, 1, dilation, project=False)
                                      for _ in range(blocks - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class PyramidPooling(nn.Module):
    """The features, and each of them average-pooled to ``cells`` x ``cells`` (a kernel of size // cells, as the
    publisher pools), reduced to a quarter of the channels and upsampled back, concatenated."""

    def __init__(self, channels: int, cells: tuple[int, ...] = (6, 3, 2, 1)):
        super().__init__()
        self.cells = cells
        self.path_module_list = nn.ModuleList(ConvNorm(channels, channels // len(cells), 1) for _ in cells)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2:]
        out = [x]
        for path, n in zip(self.path_module_list, self.cells):
            kernel = (int(h / n), int(w / n))
            pooled = path(F.avg_pool2d(x, kernel, stride=kernel))
            out.append(F.interpolate(pooled, size=(h, w), mode="bilinear", align_corners=False))
        return torch.cat(out, dim=1)


class PSPNet(nn.Module):
    def __init__(self, num_classes: int = len(PSPNET_TARGETS), blocks: tuple[int, ...] = (3, 4, 23, 3)):
        super().__init__()
        self.arch_kwargs = {"num_classes": num_classes, "blocks": tuple(blocks)}
        self.convbnrelu1_1 = ConvNorm(3, 64, 3, 2, 1)
        self.convbnrelu1_2 = ConvNorm(64, 64, 3, 1, 1)
        self.convbnrelu1_3 = ConvNorm(64, 128, 3, 1, 1)
        self.res_block2 = Stage(blocks[0], 128, 64, 256, 1, 1)
        self.res_block3 = Stage(blocks[1], 256, 128, 512, 2, 1)
        self.res_block4 = Stage(blocks[2], 512, 256, 1024, 1, 2)
        self.res_block5 = Stage(blocks[3], 1024, 512, 2048, 1, 4)
        self.pyramid_pooling = PyramidPooling(2048)
        self.cbr_final = ConvNorm(4096, 512, 3, 1, 1)
        self.classification = nn.Conv2d(512, num_classes, 1)
        # the publisher's auxiliary training head: kept so its checkpoint loads whole, unused at inference
        self.convbnrelu4_aux = ConvNorm(1024, 256, 3, 1, 1)
        self.aux_cls = nn.Conv2d(256, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        x = self.convbnrelu1_3(self.convbnrelu1_2(self.convbnrelu1_1(x)))
        x = F.max_pool2d(x, 3, 2, 1)
        x = self.res_block5(self.res_block4(self.res_block3(self.res_block2(x))))
        x = self.classification(self.cbr_final(self.pyramid_pooling(x)))
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def blocks_of(state: dict[str, torch.Tensor]) -> tuple[int, ...]:
    """The number of bottlenecks in each stage of a PSPNet checkpoint."""
    return tuple(len({k.split(".")[2] for k in state if k.startswith(f"res_block{i}.layers.")}) for i in range(2, 6))


class XrvAnatomy(nn.Module):
    """The publisher's network behind radsight's pixel contract: one channel in [0, 1] (what torchxrayvision's
    [-1024, 1024] maps to before this model), repeated to three and ImageNet-normalised; out, the logits of
    ``keep`` (radsight's structures, in its order)."""

    def __init__(self, net: PSPNet, keep: list[int]):
        super().__init__()
        self.net, self.keep = net, keep
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x.repeat(1, 3, 1, 1) - self.mean) / self.std)[:, self.keep]
