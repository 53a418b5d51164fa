"""Where and how fast a training step runs: the device (each ``torchrun`` rank its own GPU), mixed precision
(bf16 on CPUs and GPUs, fp16 with loss scaling on GPUs) and the channels-last memory layout."""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Accel:
    device: torch.device
    precision: str = "fp32"
    channels_last: bool = False

    @classmethod
    def choose(cls, device: str = "auto", precision: str = "fp32", channels_last: bool = False,
               local_rank: int = 0) -> Accel:
        """``device``: auto (a GPU when one is visible), cpu or cuda; under torchrun, rank ``local_rank`` of a
        machine takes GPU ``local_rank``. ValueError for a combination that cannot run here."""
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device {device}: choose auto, cpu or cuda")
        if precision not in PRECISIONS:
            raise ValueError(f"--precision {precision}: choose {', '.join(PRECISIONS)}")
        gpu = torch.cuda.is_available()
        if device == "cuda" and not gpu:
            raise ValueError("--device cuda: no GPU is visible to PyTorch here")
        if device == "cpu" or not gpu:
            if precision == "fp16":
                raise ValueError("--precision fp16 needs a GPU (its loss scaling is for CUDA); bf16 runs on CPUs too")
            return cls(torch.device("cpu"), precision, channels_last)
        chosen = torch.device("cuda", local_rank)
        torch.cuda.set_device(chosen)
        return cls(chosen, precision, channels_last)

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def place(self, module: torch.nn.Module) -> torch.nn.Module:
        module.to(self.device)
        return module.to(memory_format=torch.channels_last) if self.channels_last else module

    def inputs(self, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """A batch on the device (images channels-last when asked; other tensors as they are)."""
        moved = tuple(t.to(self.device, non_blocking=True) for t in tensors)
        if not self.channels_last:
            return moved
        return tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in moved)

    def autocast(self) -> AbstractContextManager:
        dtype = PRECISIONS[self.precision]
        return torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None)

    def scaler(self) -> torch.amp.GradScaler:
        """Loss scaling for fp16 on a GPU; a pass-through otherwise."""
        return torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
