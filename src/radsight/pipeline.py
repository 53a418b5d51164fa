"""The predictor: the one module that knows every stage.

image I/O -> lung model (anatomy, CTR, thorax crop) -> pixel contract -> classifier -> operating thresholds
-> CAM -> boxes -> triage -> outputs.
"""
from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np

from radsight.anatomy import cardiothoracic_ratio, label_lungs, lung_fields, thorax_box
from radsight.core import Anatomy, Finding, InputError, ModelRef, Prediction, Radiograph, Triage
from radsight.data.manifest import Manifest
from radsight.explain.boxes import BoxConfig, heatmap_boxes
from radsight.explain.cam import cam_heatmap, working_size
from radsight.io import expand_inputs, load_image
from radsight.models.config import TRIAGE_LABEL, ModelConfig
from radsight.models.store import DEFAULT_LUNG_MODEL, DEFAULT_MODEL, get_model
from radsight.preprocess import center_square, resize, to_model_input
from radsight.report import write_outputs
from radsight.runtime import Classifier, Segmenter
from radsight.triage import priority, threshold_scaled


ANATOMY_GRID = 512  # lung outlines are measured on a grid this long: finer than heatmaps need
Crop = tuple[int, int, int, int]  # x, y, width, height in original pixels
T, R = TypeVar("T"), TypeVar("R")


class ThoraxCropper:
    """The lung model: anatomy for the reader, and the thorax crop for models whose input region is "thorax"."""

    def __init__(self, lung_model: str | ModelConfig = DEFAULT_LUNG_MODEL, threads: int = 0):
        self.cfg = lung_model if isinstance(lung_model, ModelConfig) else get_model(lung_model)
        self.segmenter = Segmenter(self.cfg, threads=threads)

    def anatomy(self, image: Radiograph) -> tuple[Anatomy, np.ndarray]:
        """Lung fields and CTR, and the lung labels on the anatomy grid (0 none, 1 right, 2 left)."""
        prob = self.segmenter(to_model_input(image.pixels, self.cfg.input)[None])[0, 0].astype(np.float32)
        labels, reason = label_lungs(resize(prob, *working_size(image.height, image.width, ANATOMY_GRID)))
        anatomy = Anatomy(model=ModelRef(self.cfg.name, self.cfg.version), plausible=reason is None, reason=reason)
        if reason is None:
            anatomy.lungs = lung_fields(labels, image.height, image.width, image.meta.pixel_spacing_mm)
            anatomy.ctr = cardiothoracic_ratio(labels, image.height, image.width, image.meta.view_position)
        return anatomy, labels

    def box(self, image: Radiograph, found: tuple[Anatomy, np.ndarray] | None = None) -> Crop | None:
        """Where the thorax lies; None (the whole image) when the lungs are not plausible."""
        anatomy, labels = found or self.anatomy(image)
        return thorax_box(labels, image.height, image.width) if anatomy.plausible else None


class Predictor:
    def __init__(self, model: str | ModelConfig = DEFAULT_MODEL, boxes: BoxConfig = BoxConfig(), threads: int = 0,
                 lung_model: str | ModelConfig | None = DEFAULT_LUNG_MODEL):
        self.cfg = model if isinstance(model, ModelConfig) else get_model(model)
        self.model = Classifier(self.cfg, threads=threads)
        self.boxes = boxes
        self.lungs = ThoraxCropper(lung_model, threads) if lung_model is not None else None
        if self.cfg.input.region == "thorax" and self.lungs is None:
            raise ValueError(f"model {self.cfg.name} reads the thorax region and needs a lung model")

    def classifier_input(self, image: Radiograph, found: tuple[Anatomy, np.ndarray] | None = None
                         ) -> tuple[np.ndarray, Crop | None]:
        """The model input (C, S, S) under the pixel contract, and the crop it was taken from, if any."""
        spec = self.cfg.input
        crop = None
        if spec.region == "thorax":
            crop = self.lungs.box(image, found)
        elif spec.crop == "center":
            crop = center_square(image.height, image.width)
        return to_model_input(cut(image.model_pixels(spec.pixels), crop), spec), crop

    def predict(self, image: Radiograph, explain: Collection[str] = ()) -> Prediction:
        """Probabilities for every finding; heatmaps and boxes for positive findings and those in ``explain``."""
        found = self.lungs.anatomy(image) if self.lungs else None
        x, crop = self.classifier_input(image, found)
        probs, cams = self.model(x[None])
        prediction = self._assemble(image, probs[0], cams[0], explain, crop)
        if found is not None:
            prediction.anatomy, prediction.lung_mask = found
        return prediction

    def scores(self, images: list[Radiograph]) -> np.ndarray:
        """Probabilities (N, labels) for a batch, without explanations."""
        return self.model(np.stack([self.classifier_input(im)[0] for im in images]))[0]

    def _assemble(self, image: Radiograph, probs: np.ndarray, cams: np.ndarray, explain: Collection[str],
                  crop: Crop | None) -> Prediction:
        cfg, index = self.cfg, {label: i for i, label in enumerate(self.cfg.labels)}
        findings, heatmaps = [], {}
        grid = working_size(image.height, image.width)
        for name in cfg.findings:
            p, threshold = float(probs[index[name]]), cfg.threshold(name)
            finding = Finding(name=name, probability=p, threshold=threshold, positive=p >= threshold)
            if finding.positive or name in explain:
                heat = _full_heatmap(cams[index[name]], grid, crop, image)
                heatmaps[name] = heat
                finding.boxes = heatmap_boxes(heat, image.height, image.width, p, self.boxes)
            findings.append(finding)
        if TRIAGE_LABEL in index:
            abnormal, triage_threshold = float(probs[index[TRIAGE_LABEL]]), cfg.threshold(TRIAGE_LABEL)
        else:  # no triage output: the finding furthest past its own threshold, on a scale where each is 0.5
            abnormal, triage_threshold = max(threshold_scaled(f.probability, f.threshold) for f in findings), 0.5
        triage = Triage(abnormal_probability=abnormal, threshold=triage_threshold,
                        priority=priority(abnormal, triage_threshold, findings))
        return Prediction(source=image.source, width=image.width, height=image.height,
                          model=ModelRef(cfg.name, cfg.version), triage=triage, findings=findings,
                          meta=image.meta, heatmaps=heatmaps, classifier_crop=list(crop) if crop else None)


def cut(pixels: np.ndarray, crop: Crop | None) -> np.ndarray:
    """The pixels inside ``crop`` (all of them when it is None)."""
    if crop is None:
        return pixels
    x, y, w, h = crop
    return pixels[y:y + h, x:x + w]


def _full_heatmap(cam: np.ndarray, grid: tuple[int, int], crop: Crop | None, image: Radiograph) -> np.ndarray:
    """The CAM on the whole image's grid; a CAM of a crop lies inside the crop, zero elsewhere."""
    if crop is None:
        return cam_heatmap(cam, *grid)
    sy, sx = grid[0] / image.height, grid[1] / image.width
    x0, y0 = round(crop[0] * sx), round(crop[1] * sy)
    x1, y1 = max(x0 + 1, round((crop[0] + crop[2]) * sx)), max(y0 + 1, round((crop[1] + crop[3]) * sy))
    heat = np.zeros(grid, np.float32)
    heat[y0:y1, x0:x1] = cam_heatmap(cam, y1 - y0, x1 - x0)
    return heat


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


def analyze_files(paths: list[Path], out_dir: Path, predictor: Predictor, workers: int = 1) -> Iterator[Outcome]:
    """Analyze each file, writing its outputs; one bad file yields an error outcome and the rest go on.

    Outcomes come in input order. With ``workers`` > 1, that many files are analyzed at once on threads
    sharing ``predictor``; give it ``threads=threads_per_worker(workers)`` so they share the cores out.
    """
    stems: set[str] = set()
    jobs = [(path, _unique_stem(path, stems)) for path in paths]  # a file's name never depends on its neighbours

    def one(job: tuple[Path, str]) -> Outcome:
        path, stem = job
        try:
            image = load_image(path)
            prediction = predictor.predict(image)
        except InputError as exc:
            return Outcome(path, error=exc)
        return Outcome(path, prediction, write_outputs(image, prediction, out_dir, stem))
    return ordered_map(one, jobs, workers)


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map(fn, items)`` on ``workers`` threads, results in order, at most twice ``workers`` items in flight."""
    if workers <= 1:
        yield from map(fn, items)
        return
    pool, pending = ThreadPoolExecutor(workers, thread_name_prefix="radsight"), deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # an error, Ctrl-C or a consumer that stops early: files not yet started are not analyzed
        pool.shutdown(wait=True, cancel_futures=True)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers(files: int) -> int:
    """Files analyzed at once: one a core, no more than there are files."""
    return max(1, min(files, cpu_cores()))


def threads_per_worker(workers: int) -> int:
    """ONNX Runtime threads for each of ``workers`` concurrent analyses: the cores shared out (0: all of them)."""
    return 0 if workers <= 1 else max(1, cpu_cores() // workers)


def _unique_stem(path: Path, used: set[str]) -> str:
    stem, n = path.stem or path.name, 1
    candidate = stem
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


__all__ = ["Outcome", "Predictor", "analyze", "analyze_files", "default_workers", "expand_inputs", "ordered_map",
           "score_manifest", "threads_per_worker"]
