"""Per-image outputs: the JSON document, heatmap PNGs and the overlay PNG."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from radsight.core import Prediction, Radiograph
from radsight.render import render_overlay

SCHEMA_VERSION = "1.0"
PNG_COMPRESSION = 1  # zlib level: overlays are noisy radiographs, where higher levels cost time, not bytes
DISCLAIMER = ("Research and demonstration software: not a medical device and not for diagnostic use. "
              "Findings must be confirmed by a qualified reader.")


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def write_png(image: Image.Image, path: Path) -> None:
    _atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=PNG_COMPRESSION))


def prediction_document(p: Prediction) -> dict:
    return {"schema_version": SCHEMA_VERSION, **p.to_dict(), "disclaimer": DISCLAIMER}


def write_outputs(image: Radiograph, p: Prediction, out_dir: Path, stem: str,
                  overlay: Image.Image | None = None) -> Path:
    """Write ``stem.json``, ``stem.overlay.png`` and ``stem.heatmap.<Finding>.png``; return the JSON path.

    ``overlay`` is ``render_overlay(image, p)`` when the caller has already drawn it for another use."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for finding in p.positives:
        heat = p.heatmaps.get(finding.name)
        if heat is not None:
            finding.heatmap = f"{stem}.heatmap.{finding.name}.png"
            write_png(Image.fromarray(np.round(heat * 255).astype(np.uint8), mode="L"), out_dir / finding.heatmap)
    if p.anatomy is not None and p.anatomy.plausible and p.lung_mask is not None:
        p.anatomy.mask = f"{stem}.lungs.png"
        grey = Image.fromarray((p.lung_mask * 127).astype(np.uint8), mode="L")  # 0 none, 127 right, 254 left
        grey = grey.resize((p.width, p.height), Image.Resampling.NEAREST)
        write_png(grey, out_dir / p.anatomy.mask)
    p.overlay = f"{stem}.overlay.png"
    write_png(render_overlay(image, p) if overlay is None else overlay, out_dir / p.overlay)
    json_path = out_dir / f"{stem}.json"
    text = json.dumps(prediction_document(p), indent=2)
    _atomic_write(json_path, lambda t: t.write_text(text + "\n"))
    return json_path
