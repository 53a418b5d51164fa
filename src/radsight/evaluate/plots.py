"""Evaluation figures (matplotlib's object API: no pyplot, no global backend)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve


def _grid(n: int, size: float = 2.6) -> tuple[Figure, list]:
    cols = min(5, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(cols * size, rows * size), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _roc(ax, y: np.ndarray, s: np.ndarray, label: str, **style) -> None:
    keep = ~np.isnan(y) & ~np.isnan(s)
    if len(np.unique(y[keep])) == 2:
        fpr, tpr, _ = roc_curve(y[keep], s[keep])
        ax.plot(fpr, tpr, label=label, **style)


def roc_all(path: Path, labels: list[str], y: np.ndarray, s: np.ndarray, aucs: dict[str, float | None]) -> None:
    fig = Figure(figsize=(7, 6.5), layout="constrained")
    ax = fig.subplots()
    palette = colormaps["tab20"]  # 20 distinct colours; past 10 curves the line style changes too
    for j, name in enumerate(labels):
        if aucs.get(name) is not None:
            _roc(ax, y[:, j], s[:, j], f"{name} ({aucs[name]:.3f})", lw=1.2, color=palette((2 * j) % 20 + j // 10 % 2),
                 ls="-" if j < 10 else "--")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC per finding (AUROC)", aspect="equal")
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=120)


def roc_versus(path: Path, labels: list[str], y: np.ndarray, s: np.ndarray, ref: np.ndarray,
               names: tuple[str, str]) -> None:
    fig, axes = _grid(len(labels))
    for j, (ax, name) in enumerate(zip(axes, labels)):
        _roc(ax, y[:, j], s[:, j], names[0], lw=1.2)
        _roc(ax, y[:, j], ref[:, j], names[1], lw=1.2, ls="--")
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)


def reliability_grid(path: Path, curves: dict[str, dict]) -> None:
    fig, axes = _grid(len(curves))
    for ax, (name, c) in zip(axes, curves.items()):
        pts = [(p, o) for p, o in zip(c["predicted"], c["observed"]) if p is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, lw=1)
        ax.plot([0, 1], [0, 1], ls=":", c="grey", lw=0.8)
        ax.set(xlim=(0, 1), ylim=(0, 1))
        ax.set_title(f"{name} (ECE {c['ece']:.3f})", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.supxlabel("predicted probability", fontsize=9)
    fig.supylabel("observed frequency", fontsize=9)
    fig.savefig(path, dpi=110)
