"""The image files of one read view: overlay, heatmaps (one a finding and method), lung mask, computed views
(a deferred view is named and written later, by :func:`write_views`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from radsight.core import Prediction, Radiograph
from radsight.io.atomic import atomic_write
from radsight.io.png import encode_png
from radsight.models.config import TRIAGE_LABEL
from radsight.results.document import OutputFiles
from radsight.results.render import render_overlay

VIEWER_LONGEST = 2048  # the viewer's copy of the radiograph


def write_png(image: Image.Image | np.ndarray, path: Path) -> None:
    """An 8-bit greyscale or RGB image (Pillow's, or its uint8 pixels) as a PNG file, written atomically."""
    data = encode_png(np.asarray(image))
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def method_slug(method: str) -> str:
    """A method's name as it appears in file names ("gradcam++" -> "gradcampp")."""
    return method.replace("+", "p")


def grey_bytes(values: np.ndarray) -> np.ndarray:
    """(H, W) in [0, 1] -> uint8 grey levels (what :func:`write_png` writes as they are)."""
    return np.round(np.clip(values, 0, 1) * 255).astype(np.uint8)


def grey_png(values: np.ndarray) -> Image.Image:
    """(H, W) in [0, 1] -> an 8-bit greyscale image."""
    return Image.fromarray(grey_bytes(values), mode="L")


def write_image_files(image: Radiograph, p: Prediction, out_dir: Path, stem: str,
                      overlay: Image.Image | None = None, draw_overlay: bool = True) -> OutputFiles:
    """``stem.overlay.png``, ``stem.heatmap.<Finding>.png`` (``.<method>.png`` for alternate methods),
    ``stem.lungs.png`` and ``stem.<view>.png``; their names (``json`` left empty). ``overlay``: the overlay when
    the caller has drawn it already; without ``draw_overlay`` it is named, not written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = OutputFiles(json="", overlay=f"{stem}.overlay.png")
    named = [f.name for f in p.findings] + [TRIAGE_LABEL]
    for label in named + [n for n in p.heatmaps if n not in named]:  # positives, those asked for, the heads' maps
        heat = p.heatmaps.get(label)
        if heat is not None:
            files.heatmaps[label] = f"{stem}.heatmap.{label}.png"
            write_png(grey_bytes(heat), out_dir / files.heatmaps[label])
        for method, heatmaps in p.alternates.items():
            if label in heatmaps:
                name = f"{stem}.heatmap.{label}.{method_slug(method)}.png"
                files.alternates.setdefault(method, {})[label] = name
                write_png(grey_bytes(heatmaps[label]), out_dir / name)
    if p.anatomy is not None and p.anatomy.plausible and p.lung_mask is not None:
        files.mask = f"{stem}.lungs.png"
        grey = Image.fromarray((p.lung_mask * 127).astype(np.uint8), mode="L")  # 0 none, 127 right, 254 left
        grey = grey.resize((p.width, p.height), Image.Resampling.NEAREST)
        write_png(grey, out_dir / files.mask)
    files.views = write_views(p.views, out_dir, stem)
    if draw_overlay:
        write_png(render_overlay(image, p) if overlay is None else overlay, out_dir / files.overlay)
    return files


def write_views(views: dict[str, np.ndarray | None], out_dir: Path, stem: str) -> dict[str, str]:
    """``stem.<view>.png`` for each computed view; a deferred one (None) is named, not written. Their names."""
    names = {}
    for name, view in views.items():
        names[name] = f"{stem}.{name}.png"
        if view is not None:
            write_png(grey_bytes(view), out_dir / names[name])
    return names


def write_viewer_copy(image: Radiograph, path: Path) -> None:
    """The radiograph as the web viewer shows it: 8-bit, its longest side at most :data:`VIEWER_LONGEST`."""
    im = grey_png(image.pixels)
    if max(im.size) > VIEWER_LONGEST:
        im.thumbnail((VIEWER_LONGEST, VIEWER_LONGEST), Image.Resampling.LANCZOS)
    write_png(im, path)
