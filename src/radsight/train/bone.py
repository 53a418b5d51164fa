"""Bone suppression training: a conditional GAN on radiograph / soft-tissue pairs.

The seed system's recipe: a U-Net generator with a self-attention block, a spectrally normalised patch
discriminator, two time-scale updates (the discriminator learns faster), progressive multi-scale training
(whole films at low resolution first, then crops at full resolution), and L1 + SSIM + adversarial (hinge)
losses. The generator predicts the bone image; soft tissue = radiograph - bone. Checkpoints every
``checkpoint_every`` steps, the best by validation PSNR; re-running resumes exactly.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import Progress

from radsight.data.pairs import Pair, read_pairs, select
from radsight.evaluate.image_quality import psnr
from radsight.inputs.preprocess import InputSpec, resize
from radsight.io import load_image
from radsight.models.config import BONE_SUPPRESSION
from radsight.train import distributed
from radsight.train.data import random_affine, warp
from radsight.train.fit import atomic_save
from radsight.train.loop import start_run
from radsight.train.registry import build, checkpoint_fields
from radsight.train.request import TrainRequest

BONE_OUTPUT = "bone"


@dataclass
class BoneTrainConfig:
    manifest: str
    images: str
    out: str
    targets: str | None = None  # default: ``targets`` beside ``images``
    stages: str = "128:200,256:400,512:400"  # size:steps, in order; sizes above ``crop`` train on random crops;
    # sizes above the training films' own resolution are lowered to it (the exported size is the last stage's)
    crop: int = 256
    base_width: int = 16
    disc_width: int = 32
    batch_size: int = 4
    lr_g: float = 2e-4  # two time-scale update rule: the discriminator's rate is higher
    lr_d: float = 6e-4
    l1_weight: float = 100.0
    ssim_weight: float = 10.0
    adv_weight: float = 0.5
    seed: int = 0
    threads: int = 0
    checkpoint_every: int = 100
    stop_after: int | None = None  # stop (resumably) after this many steps in all
    kind: str | None = None  # train only on rows of this kind (e.g. bse-jsrt)

    native: int | None = None  # the training films' longest side, once known: no stage goes above it

    @property
    def schedule(self) -> list[tuple[int, int]]:
        try:
            stages = [(int(s), int(n)) for s, n in (part.split(":") for part in self.stages.split(","))]
        except ValueError:
            raise ValueError(f"stages {self.stages!r}: expected size:steps[,size:steps...]") from None
        if any(size < 16 or size % 16 or steps < 1 for size, steps in stages):
            raise ValueError(f"stages {self.stages!r}: sizes must be multiples of 16 and steps positive")
        top = max(16, self.native // 16 * 16) if self.native else None
        return [(min(size, top) if top else size, steps) for size, steps in stages]

    @property
    def size(self) -> int:
        """The final stage's size: the resolution the model is exported at."""
        return self.schedule[-1][0]

    @property
    def spec(self) -> InputSpec:
        return InputSpec(size=self.size, mean=0.5, std=0.25, channels=1)


def load_pairs(pairs: list[Pair], size: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Radiographs and targets under the pixel contract, resized to ``size`` (N, 1, size, size) in [0, 1], and
    the films' longest side."""
    xs, ys, native = [], [], 0
    for pair in pairs:
        image, target = load_image(pair.image), load_image(pair.target)
        if (image.height, image.width) != (target.height, target.width):
            raise ValueError(f"{pair.image.name}: image {image.width}x{image.height} and target "
                             f"{target.width}x{target.height} differ in size")
        native = max(native, image.height, image.width)
        xs.append(resize(image.pixels, size, size))
        ys.append(resize(target.pixels, size, size))
    if not xs:
        raise ValueError("no pairs to load")
    return torch.from_numpy(np.stack(xs)[:, None]), torch.from_numpy(np.stack(ys)[:, None]), native


def ssim_loss(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1 - mean SSIM (11-tap Gaussian window, sigma 1.5) for batches in [0, 1]."""
    taps = torch.arange(11, dtype=a.dtype) - 5
    g = torch.exp(-taps ** 2 / (2 * 1.5 ** 2))
    g = (g / g.sum()).to(a.device)
    blur = lambda x: F.conv2d(F.conv2d(x, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a ** 2, blur(b * b) - mu_b ** 2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    value = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return 1 - value.mean()


def _batch(x: torch.Tensor, y: torch.Tensor, size: int, crop: int, batch: int, gen: torch.Generator
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """A random batch at ``size``: the same small affine warp and linear contrast on both images, then a crop."""
    idx = torch.randint(0, len(x), (batch,), generator=gen)
    xb, yb = x[idx], y[idx]
    if xb.shape[-1] != size:
        xb = F.interpolate(xb, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        yb = F.interpolate(yb, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    theta = random_affine(batch, gen)
    xb, yb = warp(xb, theta), warp(yb, theta)
    gain = (0.85 + 0.3 * torch.rand(batch, 1, 1, 1, generator=gen))
    shift = 0.1 * torch.rand(batch, 1, 1, 1, generator=gen) - 0.05
    xb, yb = xb * gain + shift, yb * gain + shift  # bone = x - y scales with the gain and keeps its sign
    if size > crop:
        top, left = (int(v) for v in torch.randint(0, size - crop + 1, (2,), generator=gen))
        xb, yb = xb[..., top:top + crop, left:left + crop], yb[..., top:top + crop, left:left + crop]
    return xb, yb


def _normalise(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    return (x - spec.mean) / spec.std


@torch.no_grad()
def suppress(net: torch.nn.Module, x: torch.Tensor, spec: InputSpec, batch: int = 4) -> torch.Tensor:
    """Soft tissue (N, 1, S, S) for radiographs in [0, 1]."""
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    out = [(xb.to(device) - net(_normalise(xb.to(device), spec))).cpu() for xb in x.split(batch)]
    net.train(was_training)
    return torch.cat(out)


def validation_psnr(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, spec: InputSpec) -> float:
    soft = suppress(net, x, spec).numpy()
    return float(np.mean([psnr(s[0], t[0]) for s, t in zip(soft, y.numpy())]))


def train_bone_suppression(cfg: BoneTrainConfig) -> Path:
    """Train; return the checkpoint chosen on the val split (the last one when there is no val split). Under
    ``torchrun``, data parallel: each rank draws its share of every batch from its own generator, the generator
    and the discriminator are each averaged across ranks, and rank 0 alone writes."""
    ranks = distributed.start()
    out = start_run(cfg, ranks.main)
    say = distributed.sayer(ranks)
    pairs = read_pairs(Path(cfg.manifest), Path(cfg.images), Path(cfg.targets) if cfg.targets else None)
    pairs = select(pairs, kind=cfg.kind) if cfg.kind else pairs
    x, y, cfg.native = load_pairs(select(pairs, "train"), max(s for s, _ in cfg.schedule))
    top = max(s for s, _ in cfg.schedule)
    if x.shape[-1] != top:  # the films are smaller than the largest stage asked for
        x, y = (F.interpolate(t, size=(top, top), mode="bilinear", antialias=True, align_corners=False) for t in (x, y))
    val = select(pairs, "val")
    xv, yv, _ = load_pairs(val, cfg.size) if val else (None, None, 0)
    device = torch.device("cuda", ranks.local) if torch.cuda.is_available() else torch.device("cpu")
    say(f"train {len(x)} pairs, val {len(val)} pairs; stages {','.join(f'{s}:{n}' for s, n in cfg.schedule)}; "
        f"device {device}" + (f"; {ranks.world} processes" if ranks.distributed else ""))

    gen_net = build("bone-generator", in_chans=1, base=cfg.base_width).to(device)
    disc = build("patch-discriminator", in_chans=2, base=cfg.disc_width).to(device)
    # under torchrun each network is averaged by its own wrapper; the generator's step reads the discriminator
    # itself, so that step synchronises the generator's gradients only
    ids = [device.index] if device.type == "cuda" else None
    gen_step, disc_step = (torch.nn.parallel.DistributedDataParallel(n, device_ids=ids) if ranks.distributed else n
                           for n in (gen_net, disc))
    opt_g = torch.optim.Adam(gen_net.parameters(), lr=cfg.lr_g, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr_d, betas=(0.5, 0.999))
    last, step, best, history = out / "last.pt", 0, -float("inf"), []
    if last.exists():
        state = torch.load(last, map_location=device, weights_only=False)
        gen_net.load_state_dict(state["model"])
        disc.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["optimizer"])
        opt_d.load_state_dict(state["optimizer_d"])
        step, best, history = state["step"], state["best"], state["history"]
        say(f"resuming at step {step}")
    plan = [size for size, steps in cfg.schedule for _ in range(steps)]
    stop = min(len(plan), cfg.stop_after or len(plan))
    gen_net.train()
    disc.train()
    with Progress(disable=not ranks.main) as progress:
        task = progress.add_task("training", total=len(plan), completed=step)
        while step < stop:
            gen = ranks.generator(cfg.seed, step)
            xb, yb = (t.to(device) for t in _batch(x, y, plan[step], cfg.crop, ranks.part(cfg.batch_size), gen))
            soft = xb - gen_step(_normalise(xb, cfg.spec))
            # discriminator: hinge loss on real and generated soft tissue, conditioned on the radiograph
            d_loss = F.relu(1 - disc_step(xb, yb)).mean() + F.relu(1 + disc_step(xb, soft.detach())).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            l1, structural = F.l1_loss(soft, yb), ssim_loss(soft.clamp(0, 1), yb.clamp(0, 1))
            g_loss = cfg.l1_weight * l1 + cfg.ssim_weight * structural - cfg.adv_weight * disc(xb, soft).mean()
            opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            opt_g.step()
            step += 1
            progress.advance(task)
            if step % cfg.checkpoint_every == 0 or step == stop:
                score = validation_psnr(gen_net, xv, yv, cfg.spec) if xv is not None else float("nan")
                history.append({"step": step, "size": plan[step - 1], "l1": l1.item(), "ssim_loss": structural.item(),
                                "d_loss": d_loss.item(), "val_psnr": score})
                if ranks.main:
                    progress.console.print(f"step {step}/{len(plan)}  size {plan[step - 1]}  L1 {l1.item():.5f}  "
                                           f"1-SSIM {structural.item():.4f}  D {d_loss.item():.3f}  "
                                           f"val PSNR {score:.2f}")
                state = {"model": gen_net.state_dict(), "discriminator": disc.state_dict(),
                         "optimizer": opt_g.state_dict(), "optimizer_d": opt_d.state_dict(), "step": step,
                         "best": max(best, score), "history": history, "task": BONE_SUPPRESSION,
                         **checkpoint_fields(gen_net), "labels": [BONE_OUTPUT], "input": asdict(cfg.spec)}
                if score > best:
                    best = score
                    if ranks.main:
                        atomic_save(state, out / "best.pt")
                if ranks.main:
                    atomic_save(state, last)
                ranks.barrier()
    if ranks.main:
        (out / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    distributed.stop(ranks)
    return out / "best.pt" if xv is not None and (out / "best.pt").exists() else last


# the options of radsight train this task reads (TrainRequest.ignored names the others given)
READS = {"targets", "stages", "kind", "batch_size"}


def from_request(r: TrainRequest) -> str:
    """``radsight train --task bone-suppression``."""
    manifest, images = r.one_dataset()
    return "chosen checkpoint: " + str(train_bone_suppression(BoneTrainConfig(
        manifest=manifest, images=images, out=r.out, targets=r.targets, stages=r.stages, kind=r.kind,
        batch_size=r.batch_size or 4, seed=r.seed, threads=r.threads, stop_after=r.stop_after)))
