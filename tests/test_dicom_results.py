"""DICOM results from the CLI: SR, lung SEG and overlay SC for the real example CR, valid by dciodvfy."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import pydicom
import pytest
from typer.testing import CliRunner

from radsight.cli import app

from conftest import chest_phantom, corpus_file, server_unavailable


@pytest.fixture(scope="module")
def example_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("dicom-out")
    result = CliRunner().invoke(app, ["analyze", corpus_file("RG1_UNCR.dcm"), "--dicom-out", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_cli_writes_sr_seg_and_sc_for_the_example_cr(example_results):
    doc = json.loads((example_results / "RG1_UNCR.json").read_text())
    assert doc["dicom_results"][:3] == ["RG1_UNCR.sr.dcm", "RG1_UNCR.seg.dcm", "RG1_UNCR.sc.dcm"]
    source = pydicom.dcmread(corpus_file("RG1_UNCR.dcm"), stop_before_pixels=True)
    sr, seg, sc = (pydicom.dcmread(example_results / name) for name in doc["dicom_results"][:3])
    for ds in (sr, seg, sc):
        assert ds.StudyInstanceUID == source.StudyInstanceUID and "NOT FOR DIAGNOSTIC USE" in ds.SeriesDescription
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and seg.NumberOfFrames == 2
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["right lung", "left lung"]
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    frames = seg.pixel_array
    assert frames.shape == (2, source.Rows, source.Columns) and frames[0].sum() > 0 and frames[1].sum() > 0
    right_x = np.nonzero(frames[0])[1].mean()
    assert right_x < np.nonzero(frames[1])[1].mean()  # the patient's right lung on the image's left (PA)
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
    assert {source.SOPInstanceUID, seg.SOPInstanceUID} <= evidence  # the SR lists the SEG as evidence


@pytest.mark.parametrize("kind", ["sr", "seg", "sc"])
def test_dciodvfy_reports_no_errors(example_results, kind):
    if shutil.which("dciodvfy") is None:
        server_unavailable("needs dciodvfy (dicom3tools; scripts/test.sh installs it)")
    run = subprocess.run(["dciodvfy", str(example_results / f"RG1_UNCR.{kind}.dcm")], capture_output=True, text=True)
    errors = [line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")]
    assert not errors, errors


def test_dicom_out_on_a_png_writes_no_dicom(tmp_path, tiny_model):
    from PIL import Image
    Image.fromarray((chest_phantom() * 255).astype(np.uint8)).save(tmp_path / "x.png")
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "x.png"), "--model", str(tiny_model), "--allow-ood",
                                      "--dicom-out", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert not list((tmp_path / "o").glob("*.dcm")) and "dicom_results" not in json.loads((tmp_path / "o" / "x.json").read_text())


def test_a_header_without_study_identity_fails_that_file_only(tmp_path, tiny_model):
    from conftest import make_dicom
    good, bad = tmp_path / "in" / "good.dcm", tmp_path / "in" / "bad.dcm"
    good.parent.mkdir()
    make_dicom(good, chest_phantom())
    make_dicom(bad, chest_phantom())
    ds = pydicom.dcmread(bad)
    del ds.StudyInstanceUID
    ds.save_as(bad)
    result = CliRunner().invoke(app, ["analyze", str(tmp_path / "in"), "--model", str(tiny_model), "--allow-ood",
                                      "--no-anatomy", "--dicom-out", "--out", str(tmp_path / "o")])
    assert "bad.dcm: analyzed, but no DICOM results could be made" in result.output and "Traceback" not in result.output
    assert (tmp_path / "o" / "good.sr.dcm").is_file() and (tmp_path / "o" / "bad.json").is_file()
