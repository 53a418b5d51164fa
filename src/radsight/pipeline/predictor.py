"""The predictor: one image's (or one study's) prediction, from its pixels to typed results.

lung model (anatomy, CTR, thorax crop, lung-masked view) -> bone model (soft-tissue and bone views) -> pixel
contract -> classifier -> operating thresholds -> explanation (CAM, Grad-CAM...) -> boxes -> triage, and the heads
run on each image (``radsight.heads``). It writes nothing: ``radsight.results`` writes.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from functools import lru_cache

import numpy as np
from scipy import ndimage

from radsight.core import InputError, ModelRef, OodCheck, Prediction, Radiograph, StudyPrediction, ViewCall, ViewResult
from radsight.data.manifest import Manifest
from radsight.explain import DEFAULT_METHOD, Explainer
from radsight.explain.boxes import BoxConfig, coarse_map, heatmap_boxes
from radsight.explain.cam import CAM
from radsight.explain.session import Explanations
from radsight.heads.anatomy import LungModel, thoracic_anatomy_absent
from radsight.heads.bone import COMPUTED_VIEWS, BoneModel
from radsight.heads.findings import read_findings, read_triage
from radsight.heads.lung_geometry import EvidenceRegions
from radsight.heads.ood import describe, load_gate
from radsight.heads.registry import HEADS
from radsight.heads.triage import TriageModel
from radsight.heads.view import FRONTAL, LATERAL, NO_VIEW, ViewModel, decide
from radsight.inputs.preprocess import Crop, prepare, working_size
from radsight.io import load_image
from radsight.models.config import TRIAGE_LABEL, ModelConfig
from radsight.models.store import (
    DEFAULT_LUNG_MODEL,
    DEFAULT_MODEL,
    DEFAULT_TRIAGE_MODEL,
    DEFAULT_VIEW_MODEL,
    get_model,
    int8_variant,
)
from radsight.pipeline.inputs import InputBuilder, Inputs, installed
from radsight.pipeline.recent import Recent
from radsight.runtime.memory import release_memory
from radsight.runtime.onnx import Classifier, Helper, shared_cpu_arena


class Predictor:
    """A classifier with the models that make its inputs and the reader's views.

    ``bone_model``: a bone suppression model whose soft-tissue and bone views are added to each prediction;
    ``bone_views``: the shipped one when none is given and it is installed. A classifier that reads the
    ``bone_suppressed`` source always uses the bone model its config names.

    ``method`` (``radsight.explain.METHODS``) makes the heatmaps and boxes, at the graph tensor ``layer`` (None:
    the last feature map); ``alternates``: other methods whose heatmaps are added (``prediction.alternates``);
    see :class:`~radsight.explain.session.Explanations`. ``device``: auto, cpu or cuda, for every session.
    ``triage_model``: a normal/abnormal model whose score gives the triage (``radsight.heads.triage.TriageModel``);
    the shipped one when installed and a lung model runs, unless the classifier triages alone (None).
    ``defer_views``: an image not read from DICOM gets its computed views' names (``prediction.views`` maps each to
    None) without the bone model's run, for a caller that makes them when first asked (the service's viewer);
    DICOM input keeps them, for its DICOM results carry them. ``int8``: each model whose int8 variant is registered
    (``NAME-int8``, made and checked by ``radsight models quantize``) runs as that variant.
    Predicts and writes nothing (``radsight.results`` writes).
    """

    def __init__(self, model: str | ModelConfig = DEFAULT_MODEL, boxes: BoxConfig = BoxConfig(), threads: int = 0,
                 lung_model: str | ModelConfig | None = DEFAULT_LUNG_MODEL,
                 bone_model: str | ModelConfig | None = None, bone_views: bool = False,
                 method: str = DEFAULT_METHOD, layer: str | None = None, alternates: Collection[str] = (),
                 view_model: str | ModelConfig | None = DEFAULT_VIEW_MODEL, device: str = "auto",
                 triage_model: str | ModelConfig | None = DEFAULT_TRIAGE_MODEL, defer_views: bool = False,
                 int8: bool = False):
        variant = int8_variant if int8 else (lambda m: m)
        model, lung_model, bone_model = variant(model), variant(lung_model), variant(bone_model)
        self.cfg = model if isinstance(model, ModelConfig) else get_model(model)
        self.model = Classifier(self.cfg, threads, device)
        self.boxes = boxes
        self.inputs = InputBuilder(self.cfg.input, self.cfg.name, self.cfg.source_models, lung_model, bone_model,
                                   threads, bone_views, device, int8)
        self.gate = load_gate(self.cfg)
        self.explanations = Explanations(self.cfg, method, layer, alternates)
        if self.cfg.reads_lateral and any(m.needs_torch for m in self.explanations.all):
            raise ValueError(f"model {self.cfg.name} reads two views: explain it with cam, gradcam or gradcam++ "
                             f"(their exact per-view maps), not with a gradient method or another layer")
        if view_model == DEFAULT_VIEW_MODEL:  # the shipped one is optional; one named by the caller is not
            view_model = installed(view_model)
        self.views = ViewModel(variant(view_model), threads, device) if view_model is not None else None
        if triage_model == DEFAULT_TRIAGE_MODEL:  # the shipped one is optional, and reads the lungs' thorax
            triage_model = installed(triage_model) if self.lungs is not None else None
        self.triage_model = TriageModel(variant(triage_model), threads, device) \
            if triage_model is not None and self.cfg.findings else None
        if self.triage_model and self.triage_model.reads_thorax and self.lungs is None:
            raise ValueError(f"triage model {self.triage_model.cfg.name} reads the thorax and needs a lung model")
        self.each_image = [(head, Helper(get_model(variant(head.default_model)), threads, device))
                           for head in HEADS.values() if head.on_each_image and installed(head.default_model)]
        self.defer_views = defer_views
        self._admitted = Recent()  # id(image) -> (image, inputs, classifier outputs) of admitted images

    @property
    def method(self) -> Explainer:
        return self.explanations.method

    @property
    def lungs(self) -> LungModel | None:
        return self.inputs.lungs

    @property
    def bone(self) -> BoneModel | None:
        return self.inputs.bone

    def classifier_input(self, image: Radiograph) -> tuple[np.ndarray, Crop | None]:
        """The model input (C, S, S) under the pixel contract, and the crop it was taken from, if any."""
        built = self.inputs.build(image)
        return built.x, built.crop

    def gate_vectors(self, image: Radiograph, out: dict[str, np.ndarray] | None = None,
                     framed: bool | None = None) -> dict[str, np.ndarray]:
        """What the out-of-distribution gate scores: the classifier's pooled features (from ``out``, the
        classifier's outputs for ``image``, or one classifier pass), a thumbnail and image statistics (read as
        the model's gate reads them, unless ``framed`` says how: a gate being fitted reads them framed)."""
        out = out if out is not None else self.model(self.inputs.build(image).x[None])
        framed = framed if framed is not None else self.gate.framed if self.gate else True
        return {"classifier": out["features"][0], **describe(image, framed)}

    def ood(self, image: Radiograph, built: Inputs | None = None,
            out: dict[str, np.ndarray] | None = None) -> OodCheck | None:
        """The out-of-distribution check: the gate's score (from ``out``, the classifier's outputs for ``built``,
        else one classifier pass), and a refusal whatever the score when the lung model finds no thorax in the image
        (``built``: its inputs with the anatomy, else built here). None when the model has no gate and the image
        is not refused for its anatomy."""
        built = built if built is not None else self.inputs.build(image, anatomy=True, views=False)
        check = self.gate.check(self.gate_vectors(image, out if out is not None else self.model(built.x[None]))) \
            if self.gate else None
        absent = thoracic_anatomy_absent(built.lungs) if built.lungs is not None else None
        if absent is None:
            return check
        return OodCheck(check.score if check else None, check.threshold if check else None, False, absent)

    def admit(self, image: Radiograph) -> None:
        """Raise :class:`InputError` when the gate finds ``image`` unlike the radiographs the model knows. What the
        check made (the lungs, the classifier's outputs) is kept a while for :meth:`predict` of this same object
        when it is admitted."""
        built, out = self._read(image)
        refuse_ood(self.ood(image, built, out), image.source)
        self._admitted.put(id(image), (image, built, out))

    def checked(self, image: Radiograph) -> tuple[Inputs, dict[str, np.ndarray]] | None:
        """What :meth:`admit` made for ``image`` (its inputs and the classifier's outputs), forgotten here: for
        :meth:`predict`, or another process's predictor (:meth:`reuse_check`); None when it kept nothing."""
        kept = self._admitted.take(id(image))  # the object itself is held, so its id was not reused
        return (kept[1], kept[2]) if kept is not None and kept[0] is image else None

    def reuse_check(self, image: Radiograph, check: tuple[Inputs, dict[str, np.ndarray]]) -> None:
        """Keep ``check`` (from :meth:`checked`, made by a predictor with the same models) for :meth:`predict` of
        ``image``, as if this predictor had admitted it."""
        self._admitted.put(id(image), (image, *check))

    def _read(self, image: Radiograph, method: Explainer | None = None) -> tuple[Inputs, dict[str, np.ndarray]]:
        """The image's inputs with its anatomy (without computed views) and the classifier's outputs for them, with
        those ``method`` (default: the predictor's) explains from: from :meth:`admit` when it read this object."""
        method = method or self.method
        kept = self.checked(image) if method is self.method else None
        if kept is not None:
            return kept
        built = self.inputs.build(image, anatomy=True, views=False)
        return built, self.model(built.x[None], self.explanations.outputs(method))

    def view_of(self, image: Radiograph) -> ViewCall | str:
        """The view ``image`` is read as (``radsight.heads.view.decide``), or why it has none."""
        return decide(image.meta, self.views.lateral_probability(image) if self.views else None,
                      self.views.threshold if self.views else 0.5)

    def readable_alone(self, image: Radiograph, built: Inputs | None = None) -> ViewCall | None:
        """The view of an image analyzed on its own; :class:`InputError` for a lateral or another view that
        cannot stand alone. None when nothing tells the view (no header view, no view classifier): frontal.
        ``built``: the image's inputs with the anatomy; an image the view classifier calls lateral in which the
        lung model finds no thorax is refused as not a chest radiograph instead."""
        call = self.view_of(image)
        if isinstance(call, str):
            if call == NO_VIEW:
                return None
            raise InputError(image.source, call)
        absent = thoracic_anatomy_absent(built.lungs) if built is not None and built.lungs is not None else None
        if call.view == LATERAL and call.source != "header" and absent:
            raise InputError(image.source, f"not like the frontal chest radiographs this model knows ({absent})")
        if call.view == LATERAL:
            raise InputError(image.source, f"lateral view ({_view_evidence(call)}); model {self.cfg.name} reads "
                             + ("a lateral only with its study's frontal view: send or analyze them together"
                                if self.cfg.reads_lateral else "frontal (PA/AP) views only"))
        return call

    def predict(self, image: Radiograph, explain: Collection[str] = (), method: Explainer | None = None) -> Prediction:
        """Probabilities for every finding; heatmaps and boxes for positive findings and those in ``explain``, by
        ``method`` (default: the predictor's); with "Abnormal" in ``explain``, the triage output's heatmap too
        (``heatmaps["Abnormal"]``); the out-of-distribution check (``prediction.ood``) when the model has a
        gate."""
        method = method or self.method
        built, out = self._read(image, method)
        view = self.readable_alone(image, built)
        self._views(image, built)
        lungs = built.plausible_lungs
        prediction = self._assemble(image, built.x, out, explain, built.crop, lungs, method)
        prediction.view = view
        prediction.ood = self.ood(image, built, out)
        self._attach_image_results(prediction, built, image, explain)
        return prediction

    def _views(self, image: Radiograph, built: Inputs) -> None:
        """The computed views on ``built``, unless they are deferred for ``image``."""
        if not (self.defer_views and not image.from_dicom):
            self.inputs.add_views(image, built)

    def study_views(self, images: list[Radiograph], name: str) -> tuple[list[ViewCall | str], int, int | None]:
        """Each image's view (or why it has none), the index of the frontal the model reads and of the lateral
        (None when the study has none or the model takes none): the first of each. :class:`InputError`
        (``name``) for a study without a frontal view."""
        calls = [self.view_of(image) for image in images]
        # nothing tells the views apart (no view classifier): an image whose header is silent counts as frontal
        calls = [ViewCall(FRONTAL, "header") if c == NO_VIEW else c for c in calls]
        first = {v: next((i for i, c in enumerate(calls) if isinstance(c, ViewCall) and c.view == v), None)
                 for v in (FRONTAL, LATERAL)}
        if first[FRONTAL] is None:
            raise InputError(name, "no frontal view in this study" + (
                f" (a lateral alone): model {self.cfg.name} needs a frontal view" if first[LATERAL] is not None
                else f": {'; '.join(c for c in calls if isinstance(c, str)) or 'no image could be read'}"))
        return calls, first[FRONTAL], first[LATERAL] if self.cfg.reads_lateral else None

    def admit_study(self, images: list[Radiograph], name: str, gate: bool = True) -> None:
        """What :meth:`admit` is for one image, for a study: :class:`InputError` when it has no frontal view or,
        with ``gate``, when the out-of-distribution gate refuses the frontal the model would read."""
        front = self.study_views(images, name)[1]
        if gate:
            self.admit(images[front])

    def predict_study(self, images: list[Radiograph], name: str, explain: Collection[str] = ()) -> StudyPrediction:
        """One result for the images of one study. Each image's view comes from its header, else from the view
        classifier; the model reads the study's first frontal and, when it takes laterals, its first lateral (a
        study without one is read with the lateral absent); every other image is listed with the reason it was
        not read (views come frontal, lateral, then the others). Heatmaps and boxes are per view, on that view's
        pixels. Raises :class:`InputError` (``name``) for a study without a frontal view."""
        calls, front, side = self.study_views(images, name)
        built, alone = self._read(images[front])
        self._views(images[front], built)
        lateral = prepare(images[side], self.cfg.input)[0][None] if side is not None else None
        out = alone if side is None else self.model(built.x[None], self.explanations.outputs(self.method), lateral)
        lungs = built.plausible_lungs
        shown = 1 + (side is not None)
        results = []
        order = [i for i in (front, side) if i is not None] + [i for i in range(len(images)) if i not in (front, side)]
        for i, image, call in ((i, images[i], calls[i]) for i in order):
            if i in (front, side):
                p = self._assemble(image, built.x, out, explain, built.crop if i == front else None,
                                   lungs if i == front else None, self.method, (int(i == side), shown))
                p.view = call
                if i == front:
                    self._attach_image_results(p, built, image, explain)
                results.append(ViewResult(image.source, call, True, p))
            else:
                results.append(ViewResult(image.source, call if isinstance(call, ViewCall) else None, False,
                                          reason=_unread_reason(call, self.cfg)))
        frontal = results[0].prediction
        frontal.ood = self.ood(images[front], built, alone)  # the gate knows frontal films read alone
        return StudyPrediction(name, frontal.model, frontal.triage,
                               [replace(f, boxes=[]) for f in frontal.findings], results, self.method.name, frontal.ood)

    def release_memory(self) -> None:
        """What a burst of analyses left allocated, back to the system: ONNX Runtime's shared CPU arena shrunk (by
        one run of the classifier) and the C heap trimmed. For a server whose queue ran dry."""
        if shared_cpu_arena():
            self.model.shrink_arena()
        release_memory()

    def _attach_image_results(self, prediction: Prediction, built, image: Radiograph,
                              explain: Collection[str] = ()) -> None:
        """The triage model's score, the anatomy (lung fields, CTR, mask), the computed views (soft tissue, bone) and
        the sections of the heads run on each image (``Head.on_each_image``), of the image read, with their maps
        named in ``explain``."""
        lungs = built.plausible_lungs
        if self.triage_model is not None:
            box = self.lungs.box(image, built.lungs) if built.lungs is not None else None
            probability, cam, crop = self.triage_model.score(image, box)
            prediction.triage = self.triage_model.triage(probability, prediction.triage.urgent)
            if TRIAGE_LABEL in explain:  # where the model that triaged sees "abnormal"
                prediction.heatmaps[TRIAGE_LABEL] = _full_heatmap(cam, working_size(image.height, image.width),
                                                                  crop, image, CAM())
        for head, session in self.each_image:
            outputs = session.run(prepare(image, session.cfg.input)[0][None])
            read = head.read(session.cfg, outputs, image, **({"lungs": lungs} if head.reads_lungs else {}))
            prediction.sections.update(read if head.sections else {head.section: read})
            if head.heatmap is not None and head.heatmap[0] in explain:
                prediction.heatmaps[head.heatmap[0]] = head.heatmap[1](session, image)
        if built.lungs is not None:
            prediction.anatomy, prediction.lung_mask = built.lungs.anatomy, built.lungs.labels
            prediction.structure_masks = built.lungs.masks
        if built.bone is not None:
            prediction.views = {"soft_tissue": built.bone.soft_tissue, "bone": built.bone.bone}
        elif self.bone is not None:  # deferred: named, made when first asked
            prediction.views = dict.fromkeys(COMPUTED_VIEWS)
        if self.bone is not None:
            prediction.views_model = ModelRef(self.bone.cfg.name, self.bone.cfg.version)

    def scores(self, images: list[Radiograph]) -> np.ndarray:
        """Probabilities (N, labels) for a batch, without explanations."""
        return self.model(np.stack([self.classifier_input(im)[0] for im in images]))["probabilities"]

    def _assemble(self, image: Radiograph, x: np.ndarray, out: dict[str, np.ndarray], explain: Collection[str],
                  crop: Crop | None, lungs: np.ndarray | None, method: Explainer,
                  part: tuple[int, int] = (0, 1)) -> Prediction:
        """``lungs``: plausible lung labels on the anatomy grid; boxes then lie inside each finding's region.
        ``part``: for a two-view model, which half of its joined maps is ``image``'s (0 frontal, 1 lateral) and how
        many halves hold a view (their maps are scaled together)."""
        cfg, probs = self.cfg, out["probabilities"][0]
        with_lateral = part[1] == 2  # a two-view study read with its lateral
        findings = read_findings(cfg, probs, with_lateral)
        shown = [f.name for f in findings if f.positive or f.name in explain]
        if TRIAGE_LABEL in explain and TRIAGE_LABEL in cfg.labels:  # where the model sees "abnormal" (no boxes)
            shown.append(TRIAGE_LABEL)
        grid = working_size(image.height, image.width)

        def heatmaps_by(m: Explainer) -> dict[str, np.ndarray]:
            raw = self.explanations.raw_maps(x, out, shown, m)
            if not cfg.reads_lateral:
                return {name: _full_heatmap(r, grid, crop, image, m) for name, r in raw.items()}
            half, shown_halves = part
            w = out["cams"].shape[-1] // 2
            return {name: _full_heatmap(r[..., half * w:(half + 1) * w], grid, crop, image, m,
                                        r[..., :shown_halves * w]) for name, r in raw.items()}
        heatmaps = heatmaps_by(method)
        alternates = {m.name: heatmaps_by(m) for m in self.explanations.alternates if m.name != method.name}
        regions = EvidenceRegions(lungs, grid) if lungs is not None else None
        cells = out["cams"].shape[-2], out["cams"].shape[-1] // (2 if cfg.reads_lateral else 1)
        withheld = coarse_map(cells, _thorax_share(lungs) if crop is None else (1.0, 1.0))
        for finding in findings:
            if finding.name in heatmaps and withheld is None:
                region = regions(finding.name) if regions else None
                finding.boxes = heatmap_boxes(_box_heat(heatmaps[finding.name], method), image.height,
                                              image.width, finding.probability, self.boxes, region)
        return Prediction(source=image.source, width=image.width, height=image.height,
                          model=ModelRef(cfg.name, cfg.version),
                          triage=read_triage(cfg, probs, findings, with_lateral),
                          findings=findings, meta=image.meta, heatmaps=heatmaps,
                          classifier_crop=list(crop) if crop else None,
                          explanation=method.name, alternates=alternates,
                          boxes_withheld=withheld if heatmaps.keys() - {TRIAGE_LABEL} else None)


def _unread_reason(call: ViewCall | str, cfg: ModelConfig) -> str:
    if isinstance(call, str):
        return call
    if call.view == LATERAL and not cfg.reads_lateral:
        return f"model {cfg.name} reads frontal views only"
    return f"the study's first {call.view} view was read; this one is another"


def _view_evidence(call: ViewCall) -> str:
    return call.header if call.source == "header" else f"view classifier, P(lateral) {call.classifier:.2f}"


def _full_heatmap(raw: np.ndarray, grid: tuple[int, int], crop: Crop | None, image: Radiograph,
                  method: Explainer, scale: np.ndarray | None = None) -> np.ndarray:
    """A method's raw map as a [0, 1] heatmap on the whole image's grid (scaled with ``scale``, a larger map it is
    part of, when given); a map of a crop lies inside the crop, zero elsewhere."""
    if crop is None:
        return method.heat(raw, *grid, scale)
    sy, sx = grid[0] / image.height, grid[1] / image.width
    x0, y0 = round(crop[0] * sx), round(crop[1] * sy)
    x1, y1 = max(x0 + 1, round((crop[0] + crop[2]) * sx)), max(y0 + 1, round((crop[1] + crop[3]) * sy))
    heat = np.zeros(grid, np.float32)
    heat[y0:y1, x0:x1] = method.heat(raw, y1 - y0, x1 - x0, scale)
    return heat


def _thorax_share(lungs: np.ndarray | None) -> tuple[float, float]:
    """The share of the image's height and width the lung fields span (the whole image when none are known)."""
    if lungs is None or not lungs.any():
        return 1.0, 1.0
    rows, cols = np.flatnonzero(lungs.any(axis=1)), np.flatnonzero(lungs.any(axis=0))
    return (rows[-1] - rows[0] + 1) / lungs.shape[0], (cols[-1] - cols[0] + 1) / lungs.shape[1]


def _box_heat(heat: np.ndarray, method: Explainer) -> np.ndarray:
    """The heat boxes are drawn from: pixel-level maps are smoothed to the scale of a finding first."""
    if not method.box_smoothing:
        return heat
    smooth = ndimage.gaussian_filter(heat, method.box_smoothing * max(heat.shape))
    peak = float(smooth.max())
    return smooth / peak if peak > 0 else smooth


def score_manifest(predictor: Predictor, manifest: Manifest, batch_size: int = 32,
                   on_progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, list[InputError]]:
    """Probabilities for every manifest image (NaN rows for images that cannot be read)."""
    out = np.full((len(manifest), len(predictor.cfg.labels)), np.nan)
    errors: list[InputError] = []
    for rows, images, covered in image_batches(manifest, batch_size, errors):
        if images:
            out[rows] = predictor.scores(images)
        if on_progress:
            on_progress(covered)
    return out, errors


def image_batches(manifest: Manifest, size: int, errors: list[InputError] | None = None
                  ) -> Iterator[tuple[list[int], list[Radiograph], int]]:
    """The manifest ``size`` rows at a time: the readable rows' numbers and images, and how many rows the batch
    covered; the others' errors go to ``errors``."""
    for start in range(0, len(manifest), size):
        rows, images = [], []
        for i in range(start, min(start + size, len(manifest))):
            try:
                images.append(load_image(manifest.path(i)))
                rows.append(i)
            except InputError as exc:
                if errors is not None:
                    errors.append(exc)
        yield rows, images, min(start + size, len(manifest)) - start


@lru_cache(maxsize=4)
def _predictor(model: str) -> Predictor:
    return Predictor(model)


def refuse_ood(check: OodCheck | None, source: str, what: str = "") -> None:
    """Raise :class:`InputError` (``source``) when ``check`` finds the image unlike the radiographs the model knows;
    ``what``: the image named in the reason ("frontal view " for a study's)."""
    if check is not None and not check.in_distribution:
        raise InputError(source, f"{what}not like the frontal chest radiographs this model knows ({check.why})")


def analyze(path: str | os.PathLike, model: str = DEFAULT_MODEL, allow_ood: bool = False) -> Prediction:
    """Analyze one DICOM, PNG or JPEG file. Raises :class:`InputError` for input that cannot be analyzed, and for
    an image the out-of-distribution gate refuses unless ``allow_ood`` (then ``prediction.ood`` says so)."""
    prediction = _predictor(model).predict(load_image(path))
    if not allow_ood:
        refuse_ood(prediction.ood, prediction.source)
    return prediction
