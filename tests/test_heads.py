"""The head seam: every head is registered once; a new head needs its module, a training task, an evaluation
module and one registration line, and then reaches the prediction, the JSON, the overlay and the commands."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from radsight.cli import app
from radsight.core import Radiograph
from radsight.heads.base import Head, Segment
from radsight.heads.registry import HEADS, get_head, head_of
from radsight.models.store import get_model

from conftest import chest_phantom, make_dicom


def test_every_head_has_a_task_word_a_default_model_and_an_evaluation():
    assert list(HEADS) == ["findings", "abnormal", "anatomy", "bone-suppression", "view", "ood", "age-sex",
                           "nodules"]
    for head in HEADS.values():
        assert head.default_model and head.evaluate and head.read is not None
    assert get_head("lung-segmentation") is HEADS["anatomy"] and get_head("classification") is HEADS["findings"]
    assert head_of(get_model("radsight-lung-unet")).task == "anatomy"
    assert head_of(get_model("radsight-view-cnn")).task == "view"
    assert head_of(get_model("radsight-twoview-demo")).task == "findings"


@dataclass
class Brightness:
    mean: float
    logit: float


DRAWN: list[str] = []
ASKED: list[str] = []


def read_brightness(cfg, outputs, image: Radiograph) -> Brightness:
    return Brightness(float(image.pixels.mean()), float(outputs["logits"][0, 0]))


def draw_brightness(draw, prediction, scale, width, height) -> None:
    DRAWN.append(prediction.source)
    draw.rectangle([0, 0, 3, 3], outline=(255, 0, 0))


def segments_brightness(prediction) -> list[Segment]:
    mask = np.zeros((prediction.height, prediction.width), bool)
    mask[:10, :10] = True
    return [Segment("corner", ("39607008", "SCT", "Lung structure"), mask, prediction.model)]


def evaluate_brightness(request) -> str:
    ASKED.append(request.model)
    return f"brightness of {request.model}"


def test_a_new_head_needs_only_its_module_and_one_registration_line(monkeypatch, tiny_model, tmp_path):
    head = Head(task="brightness", summary="a toy head", model_tasks=("classification",),
                default_model=str(tiny_model), read=read_brightness, section="brightness", draw=draw_brightness,
                segments=segments_brightness, evaluate="test_heads:evaluate_brightness", on_each_image=True)
    monkeypatch.setitem(HEADS, "brightness", head)  # the registration line
    (tmp_path / "in").mkdir()
    source = make_dicom(tmp_path / "in" / "a.dcm", chest_phantom())
    result = CliRunner().invoke(app, ["analyze", str(source), "--model", str(tiny_model), "--out", str(tmp_path / "o"),
                                      "--no-anatomy", "--no-bone-views", "--allow-ood", "--dicom-out"])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "o" / "a.json").read_text())
    assert set(doc["brightness"]) == {"mean", "logit"} and 0 < doc["brightness"]["mean"] < 1
    assert DRAWN == [str(source)]  # drawn on the overlay
    assert "a.seg.dcm" in doc["dicom_results"]  # its segment is in the Segmentation
    import pydicom
    seg = pydicom.dcmread(tmp_path / "o" / "a.seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["corner"]
    evaluated = CliRunner().invoke(app, ["evaluate", "--task", "brightness", "--out", str(tmp_path / "e")])
    assert evaluated.exit_code == 0 and "brightness of" in evaluated.output and ASKED == [str(tiny_model)]
    trained = CliRunner().invoke(app, ["train", "--task", "brightness", "--manifest", str(source), "--images",
                                       str(Path(source).parent), "--out", str(tmp_path / "t")])
    assert trained.exit_code == 2 and "not trained here" in trained.output


def test_train_refuses_options_its_task_ignores(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("image,target,patient_id,split\n")
    result = CliRunner().invoke(app, ["train", "--task", "bone-suppression", "--epochs", "2", "--lr", "0.1",
                                      "--manifest", str(manifest), "--images", str(tmp_path), "--out",
                                      str(tmp_path / "run")])
    assert result.exit_code == 2 and "--epochs, --lr: not an option of --task bone-suppression" in result.output
