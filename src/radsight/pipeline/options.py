"""What an analysis is run with: one set of options for ``radsight analyze``, Ray's actors and the service."""
from __future__ import annotations

from dataclasses import dataclass

from radsight.explain import DEFAULT_METHOD
from radsight.models.store import DEFAULT_LUNG_MODEL, DEFAULT_MODEL, DEFAULT_TRIAGE_MODEL, DEFAULT_VIEW_MODEL


@dataclass(frozen=True)
class PredictorOptions:
    """The models and methods a :class:`~radsight.pipeline.predictor.Predictor` is built with (``model`` ...
    ``threads``), and what each analysis asks of it: ``heatmaps_for`` (labels that get heatmaps and boxes below
    their thresholds), ``allow_ood`` (analyze what the out-of-distribution gate refuses), ``dicom_out`` (DICOM
    results for DICOM input). ``device``: auto, cpu or cuda, for every ONNX Runtime session of the predictor.
    ``deferred_images``: the computed views and the overlay of non-DICOM input (whose results go to no PACS) are
    named in the results and made when first asked (the service's ``service.deferred``)."""

    model: str = DEFAULT_MODEL
    lung_model: str | None = DEFAULT_LUNG_MODEL
    bone_model: str | None = None
    bone_views: bool = False
    view_model: str | None = DEFAULT_VIEW_MODEL
    triage_model: str | None = DEFAULT_TRIAGE_MODEL  # None: the classifier's own triage output
    method: str = DEFAULT_METHOD
    layer: str | None = None
    alternates: tuple[str, ...] = ()
    heatmaps_for: tuple[str, ...] = ()
    allow_ood: bool = False
    dicom_out: bool = False
    device: str = "auto"
    threads: int = 0
    deferred_images: bool = False
    int8: bool = False  # each model's registered int8 variant where there is one

    def predictor(self):
        """A :class:`~radsight.pipeline.predictor.Predictor` with these options."""
        from radsight.pipeline.predictor import Predictor
        return Predictor(self.model, threads=self.threads, lung_model=self.lung_model, bone_model=self.bone_model,
                         bone_views=self.bone_views, method=self.method, layer=self.layer,
                         alternates=self.alternates, view_model=self.view_model, device=self.device,
                         triage_model=self.triage_model, defer_views=self.deferred_images, int8=self.int8)
