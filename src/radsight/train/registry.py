"""One registry of every trainable architecture, by name.

A checkpoint stores ``{"architecture": NAME, "arch_kwargs": {...}}``; :func:`build` rebuilds the network
from exactly that, so nothing is inferred from a checkpoint's keys.
"""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

Builder = Callable[..., nn.Module]
_BUILDERS: dict[str, Builder] = {}


def register(name: str) -> Callable[[Builder], Builder]:
    def add(fn: Builder) -> Builder:
        if name in _BUILDERS:
            raise ValueError(f"architecture {name!r} is registered twice")
        _BUILDERS[name] = fn
        return fn
    return add


def architectures() -> list[str]:
    _load_all()
    return sorted(_BUILDERS)


def build(name: str, **kwargs) -> nn.Module:
    """A fresh network of the registered architecture ``name``; ``kwargs`` override its defaults."""
    _load_all()
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


def _load_all() -> None:
    """Import the modules whose builders register themselves."""
    from radsight.train import bone_nets, nets, resnet, twoview, unet, view  # noqa: F401
