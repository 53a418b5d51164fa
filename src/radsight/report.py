"""Per-image outputs: the JSON document, heatmap PNGs and the overlay PNG."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from radsight.core import Prediction, Radiograph
from radsight.models.config import TRIAGE_LABEL
from radsight.render import render_overlay

# 1.1: "views" (soft-tissue and bone images); 1.2: "triage.urgent"; 1.3: "explanation", findings' "heatmaps",
# "triage.heatmap"; 1.4: "view" (the projection the image was read as, and how that was decided), "image"'s
# "view_code" and "patient_orientation"; study documents (``radsight.study``)
SCHEMA_VERSION = "1.4"
PNG_COMPRESSION = 1  # zlib level: overlays are noisy radiographs, where higher levels cost time, not bytes
DISCLAIMER = ("Research and demonstration software: not a medical device and not for diagnostic use. "
              "Findings must be confirmed by a qualified reader.")


def atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    write(tmp)
    os.replace(tmp, path)


def unique_stem(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... when ``used`` has it; the name returned joins ``used``."""
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def write_png(image: Image.Image, path: Path) -> None:
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG", compress_level=PNG_COMPRESSION))


@dataclass
class OutputFiles:
    """The names of the files written for one image, relative to its output folder."""

    json: str
    overlay: str | None = None
    heatmaps: dict[str, str] = field(default_factory=dict)  # finding -> file (the prediction's method)
    alternates: dict[str, dict[str, str]] = field(default_factory=dict)  # method -> finding -> file
    mask: str | None = None
    views: dict[str, str] = field(default_factory=dict)  # view name -> file
    dicom: list[str] = field(default_factory=list)  # DICOM results (SR, SEG, SC) written beside the JSON


def prediction_document(p: Prediction, files: OutputFiles | None = None) -> dict:
    """The JSON document: the prediction, and the files written beside it when ``files`` is given."""
    files = files or OutputFiles(json="")
    doc = {"schema_version": SCHEMA_VERSION, **p.to_dict()}
    for finding in doc["findings"]:
        name = finding["name"]
        finding["heatmap"] = files.heatmaps.get(name)
        finding["heatmaps"] = {p.explanation: finding["heatmap"]} if finding["heatmap"] else {}
        finding["heatmaps"].update((method, named[name]) for method, named in files.alternates.items()
                                   if name in named)
    doc["triage"]["heatmap"] = files.heatmaps.get(TRIAGE_LABEL)
    if doc["anatomy"] is not None:
        doc["anatomy"]["mask"] = files.mask
    model = None if p.views_model is None else {"name": p.views_model.name, "version": p.views_model.version}
    doc["views"] = [{"name": name, "file": files.views.get(name), "model": model} for name in p.views]
    doc["overlay"] = files.overlay
    if files.dicom:
        doc["dicom_results"] = files.dicom
    doc["disclaimer"] = DISCLAIMER
    return doc


def method_slug(method: str) -> str:
    """A method's name as it appears in file names ("gradcam++" -> "gradcampp")."""
    return method.replace("+", "p")


def grey_png(values: np.ndarray) -> Image.Image:
    """(H, W) in [0, 1] -> an 8-bit greyscale image."""
    return Image.fromarray(np.round(np.clip(values, 0, 1) * 255).astype(np.uint8), mode="L")


def write_outputs(image: Radiograph, p: Prediction, out_dir: Path, stem: str,
                  overlay: Image.Image | None = None, dicom: list[str] = ()) -> OutputFiles:
    """Write ``stem.json``, ``stem.overlay.png``, ``stem.heatmap.<Finding>.png`` (``.<method>.png`` for
    alternate methods), ``stem.lungs.png`` and ``stem.<view>.png``; return the names written.

    ``overlay`` is ``render_overlay(image, p)`` when the caller has already drawn it for another use; ``dicom``:
    the DICOM results already written beside it, listed in the JSON."""
    files = write_image_files(image, p, out_dir, stem, overlay)
    files.json, files.dicom = f"{stem}.json", list(dicom)
    text = json.dumps(prediction_document(p, files), indent=2)
    atomic_write(out_dir / files.json, lambda t: t.write_text(text + "\n"))
    return files


def write_image_files(image: Radiograph, p: Prediction, out_dir: Path, stem: str,
                      overlay: Image.Image | None = None) -> OutputFiles:
    """Every file of :func:`write_outputs` but the JSON; their names (``json`` left empty)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = OutputFiles(json="", overlay=f"{stem}.overlay.png")
    for label in [f.name for f in p.findings] + [TRIAGE_LABEL]:  # positives, and those asked for
        heat = p.heatmaps.get(label)
        if heat is not None:
            files.heatmaps[label] = f"{stem}.heatmap.{label}.png"
            write_png(grey_png(heat), out_dir / files.heatmaps[label])
        for method, heatmaps in p.alternates.items():
            if label in heatmaps:
                name = f"{stem}.heatmap.{label}.{method_slug(method)}.png"
                files.alternates.setdefault(method, {})[label] = name
                write_png(grey_png(heatmaps[label]), out_dir / name)
    if p.anatomy is not None and p.anatomy.plausible and p.lung_mask is not None:
        files.mask = f"{stem}.lungs.png"
        grey = Image.fromarray((p.lung_mask * 127).astype(np.uint8), mode="L")  # 0 none, 127 right, 254 left
        grey = grey.resize((p.width, p.height), Image.Resampling.NEAREST)
        write_png(grey, out_dir / files.mask)
    for name, view in p.views.items():
        files.views[name] = f"{stem}.{name}.png"
        write_png(grey_png(view), out_dir / files.views[name])
    write_png(render_overlay(image, p) if overlay is None else overlay, out_dir / files.overlay)
    return files
