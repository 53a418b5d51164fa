"""One registry of every trainable architecture, by name: an explicit table (a new architecture is one line here).

A checkpoint stores ``{"architecture": NAME, "arch_kwargs": {...}}``; :func:`build` rebuilds the network
from exactly that, so nothing is inferred from a checkpoint's keys.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import nn

from radsight.train.age_net import AgeSexNet
from radsight.train.bone_nets import BoneGenerator, GusarevAutoencoder, PatchDiscriminator
from radsight.train.nets import VARIANTS, densenet
from radsight.train.resnet import ResNet
from radsight.train.twoview import densenet_small_twoview
from radsight.train.unet import UNet
from radsight.train.view_net import ViewCNN

Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {
    **{variant: partial(densenet, variant) for variant in VARIANTS},
    "densenet-small-twoview": densenet_small_twoview,
    "resnet50": ResNet,
    "unet": UNet,
    "bone-generator": BoneGenerator,
    "patch-discriminator": PatchDiscriminator,
    "gusarev-autoencoder": GusarevAutoencoder,
    "view-cnn": ViewCNN,
    "age-sex-net": AgeSexNet,
}


def architectures() -> list[str]:
    return sorted(_BUILDERS)


def build(name: str, **kwargs) -> nn.Module:
    """A fresh network of the registered architecture ``name``; ``kwargs`` override its defaults."""
    if name not in _BUILDERS:
        raise KeyError(f"unknown architecture {name!r}; known: {', '.join(sorted(_BUILDERS))}")
    net = _BUILDERS[name](**kwargs)
    net.architecture = name
    if not hasattr(net, "arch_kwargs"):  # networks that know their full config set it themselves
        net.arch_kwargs = dict(kwargs)
    return net


def checkpoint_fields(net: nn.Module) -> dict:
    """What a checkpoint stores so that :func:`from_checkpoint` rebuilds ``net``."""
    return {"architecture": net.architecture, "arch_kwargs": dict(net.arch_kwargs)}


def from_checkpoint(state: dict) -> nn.Module:
    """The network a checkpoint describes, with its weights, in eval mode."""
    if "architecture" not in state or "arch_kwargs" not in state:
        raise ValueError("checkpoint names no architecture (architecture, arch_kwargs); re-train with this radsight")
    net = build(state["architecture"], **state["arch_kwargs"])
    net.load_state_dict(state["model"])
    return net.eval()

