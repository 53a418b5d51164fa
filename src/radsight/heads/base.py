"""The head seam: what radsight reads a film for, one small object a task.

A head says which models it reads (their config ``task``), which of them ships as its default, how it turns its
model's named outputs into its typed result (``read``), its section of the JSON document, what it draws on the
overlay, the DICOM content it contributes (SEG segments), how it is measured and how it is trained. The stages
beside it ask the heads in :data:`radsight.heads.registry.HEADS` instead of naming each task:
``radsight train --task`` and ``radsight evaluate --task`` take a head's task word, the overlay draws every head's
part, the DICOM Segmentation holds every head's segments. docs/architecture.md adds a head as a worked example.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from radsight.core import ModelRef, Prediction


@dataclass(frozen=True)
class Segment:
    """One structure a head outlines, for the DICOM Segmentation: its label, SNOMED CT code (value, scheme,
    meaning) and its mask on the image's pixel grid."""

    label: str
    code: tuple[str, str, str]
    mask: np.ndarray  # bool (H, W)
    model: ModelRef
    laterality: tuple[str, str, str] | None = None  # a modifier of the code (SNOMED CT Right or Left)
    organ: bool = True  # category Organ; else Anatomical Structure (a bone)


# draw(draw, prediction, scale, width, height): on an overlay picture ``width`` x ``height``, ``scale`` times the
# image's pixels (PIL ImageDraw)
Draw = Callable[[object, Prediction, float, int, int], None]


@dataclass(frozen=True)
class Head:
    """``task``: the word of ``radsight train --task`` and ``radsight evaluate --task``; ``model_tasks``: the
    ``ModelConfig.task`` values of the models it reads; ``default_model``: its shipped model, used by analyze,
    evaluate and serve when none is named; ``read``: the function that turns its model's outputs into its typed
    result; ``section``: its key in the JSON document (None: it adds none); ``draw``: its part of the overlay;
    ``segments``: its structures for the DICOM Segmentation; ``train``/``evaluate``: ``"module:function"`` run by
    ``radsight train``/``radsight evaluate`` with the command's options (``TrainRequest``/``EvaluateRequest``);
    training needs radsight[train], evaluation runs on the base install.

    ``on_each_image``: the predictor runs the head's default model (when installed) on each image it reads, and
    puts ``read(cfg, outputs, image)`` in the prediction's ``sections[section]`` (a head with several
    ``sections`` reads a dict of them): a new head needs no other code in the predictor or the writer.
    ``heatmap``: (name, fn(session, image) -> map): a map ``--heatmaps-for NAME`` asks for, put in the
    prediction's heatmaps under that name. ``reads_lungs``: ``read`` also takes ``lungs=``, the plausible lung
    labels on the anatomy grid (None without them). The heads of the first release are wired into the predictor
    by hand, since they feed one another (the lungs crop the classifier's input, the view decides what is read,
    the gate scores the classifier's features)."""

    task: str
    summary: str
    model_tasks: tuple[str, ...] = ()
    default_model: str | None = None
    read: Callable | None = None
    section: str | None = None
    sections: tuple[str, ...] = ()
    draw: Draw | None = None
    segments: Callable[[Prediction], list[Segment]] | None = None
    train: str | None = None
    evaluate: str | None = None
    on_each_image: bool = False
    heatmap: tuple[str, Callable] | None = None
    reads_lungs: bool = False
