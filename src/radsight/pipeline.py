"""The predictor: the one module that knows every stage.

image I/O -> pixel contract -> ONNX model -> operating thresholds -> CAM -> boxes -> triage -> outputs.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from radsight.core import Finding, InputError, ModelRef, Prediction, Radiograph, Triage
from radsight.data.manifest import Manifest
from radsight.explain.boxes import BoxConfig, heatmap_boxes
from radsight.explain.cam import cam_heatmap, working_size
from radsight.io import expand_inputs, load_image
from radsight.models.config import TRIAGE_LABEL, ModelConfig
from radsight.models.store import DEFAULT_MODEL, get_model
from radsight.preprocess import to_model_input
from radsight.report import write_outputs
from radsight.runtime import OnnxModel
from radsight.triage import priority


class Predictor:
    def __init__(self, model: str | ModelConfig = DEFAULT_MODEL, boxes: BoxConfig = BoxConfig(), threads: int = 0):
        self.cfg = model if isinstance(model, ModelConfig) else get_model(model)
        self.model = OnnxModel(self.cfg, threads=threads)
        self.boxes = boxes

    def predict(self, image: Radiograph, explain: Collection[str] = ()) -> Prediction:
        """Probabilities for every finding; heatmaps and boxes for positive findings and those in ``explain``."""
        probs, cams = self.model(to_model_input(image.pixels, self.cfg.input)[None])
        return self._assemble(image, probs[0], cams[0], explain)

    def scores(self, images: list[Radiograph]) -> np.ndarray:
        """Probabilities (N, labels) for a batch, without explanations."""
        batch = np.stack([to_model_input(im.pixels, self.cfg.input) for im in images])
        return self.model(batch)[0]

    def _assemble(self, image: Radiograph, probs: np.ndarray, cams: np.ndarray, explain: Collection[str]) -> Prediction:
        cfg, index = self.cfg, {label: i for i, label in enumerate(self.cfg.labels)}
        findings, heatmaps = [], {}
        grid = working_size(image.height, image.width)
        for name in cfg.findings:
            p, threshold = float(probs[index[name]]), cfg.threshold(name)
            finding = Finding(name=name, probability=p, threshold=threshold, positive=p >= threshold)
            if finding.positive or name in explain:
                heat = cam_heatmap(cams[index[name]], *grid)
                heatmaps[name] = heat
                finding.boxes = heatmap_boxes(heat, image.height, image.width, p, self.boxes)
            findings.append(finding)
        if TRIAGE_LABEL in index:
            abnormal = float(probs[index[TRIAGE_LABEL]])
        else:  # models without a triage output: the most likely finding stands in
            abnormal = max(f.probability for f in findings)
        triage_threshold = cfg.threshold(TRIAGE_LABEL)
        triage = Triage(abnormal_probability=abnormal, threshold=triage_threshold,
                        priority=priority(abnormal, triage_threshold, findings))
        return Prediction(source=image.source, width=image.width, height=image.height,
                          model=ModelRef(cfg.name, cfg.version), triage=triage, findings=findings,
                          meta=image.meta, heatmaps=heatmaps)


def score_manifest(predictor: Predictor, manifest: Manifest, batch_size: int = 32,
                   on_progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[InputError]]:
    """Probabilities for every manifest image (NaN rows for images that cannot be read)."""
    out = np.full((len(manifest), len(predictor.cfg.labels)), np.nan)
    errors: list[InputError] = []
    for start in range(0, len(manifest), batch_size):
        rows, images = [], []
        for i in range(start, min(start + batch_size, len(manifest))):
            try:
                images.append(load_image(manifest.path(i)))
                rows.append(i)
            except InputError as exc:
                errors.append(exc)
        if images:
            out[rows] = predictor.scores(images)
        if on_progress:
            on_progress(min(start + batch_size, len(manifest)) - start)
    return out, errors


@lru_cache(maxsize=4)
def _predictor(model: str) -> Predictor:
    return Predictor(model)


def analyze(path: str | os.PathLike, model: str = DEFAULT_MODEL) -> Prediction:
    """Analyze one DICOM, PNG or JPEG file. Raises :class:`InputError` for input that cannot be analyzed."""
    return _predictor(model).predict(load_image(path))


@dataclass
class Outcome:
    path: Path
    prediction: Prediction | None = None
    json_path: Path | None = None
    error: InputError | None = None


def analyze_files(paths: list[Path], out_dir: Path, predictor: Predictor) -> Iterator[Outcome]:
    """Analyze each file, writing its outputs; one bad file yields an error outcome and the rest go on."""
    stems: set[str] = set()
    for path in paths:
        try:
            image = load_image(path)
            prediction = predictor.predict(image)
        except InputError as exc:
            yield Outcome(path, error=exc)
            continue
        stem = _unique_stem(path, stems)
        yield Outcome(path, prediction, write_outputs(image, prediction, out_dir, stem))


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem or path.name, 1
    candidate = stem
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


__all__ = ["Outcome", "Predictor", "analyze", "analyze_files", "expand_inputs", "score_manifest"]
