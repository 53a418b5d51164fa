"""``radsight analyze --engine ray`` on a local Ray: the same JSON as the local engine, byte for byte, for
images and for studies; resumable."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import generate_uid
from typer.testing import CliRunner

from radsight.cli import app

from conftest import chest_phantom, lateral_phantom, study_dicom

ray = pytest.importorskip("ray", reason="the Ray engine needs radsight[ray]")


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    yield
    ray.shutdown()


def test_ray_engine_writes_what_the_local_engine_writes_and_resumes(tiny_model, tmp_path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    for i in range(5):
        Image.fromarray((chest_phantom(160, 144, seed=i) * 255).astype(np.uint8)).save(folder / f"{i}.png")
    Image.fromarray((chest_phantom(160, 144, seed=9) * 255).astype(np.uint8)).save(folder / "sub" / "0.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    common = [str(folder), "--model", str(tiny_model), "--no-anatomy", "--allow-ood", "--heatmaps-for", "Mass"]
    local = CliRunner().invoke(app, ["analyze", *common, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    on_ray = CliRunner().invoke(app, ["analyze", *common, "--engine", "ray", "--out", str(tmp_path / "ray")])
    assert on_ray.exit_code == 0, on_ray.output
    assert "analyzed 6 of 7 images on Ray" in on_ray.output and "broken.png" in on_ray.output
    _same_files(tmp_path / "local", tmp_path / "ray")
    assert (tmp_path / "ray" / "0-2.json").is_file()
    again = CliRunner().invoke(app, ["analyze", *common, "--engine", "ray", "--out", str(tmp_path / "ray")])
    assert "analyzed 0 of 7 images on Ray" in again.output and "6 already analyzed" in again.output


def test_studies_on_ray_as_on_the_local_engine(twoview_model, tmp_path):
    folder, uid = tmp_path / "in", generate_uid()
    folder.mkdir()
    study_dicom(folder / "pa.dcm", chest_phantom(seed=1), uid, "PA")
    study_dicom(folder / "lat.dcm", lateral_phantom(seed=1), uid, "LL")
    study_dicom(folder / "alone.dcm", lateral_phantom(seed=2), generate_uid(), "LL")
    (folder / "broken.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00")
    common = [str(folder), "--model", str(twoview_model), "--no-anatomy"]
    local = CliRunner().invoke(app, ["analyze", *common, "--out", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    on_ray = CliRunner().invoke(app, ["analyze", *common, "--engine", "ray", "--out", str(tmp_path / "ray")])
    assert on_ray.exit_code == 0, on_ray.output
    assert "analyzed 1 of 3 studies on Ray" in on_ray.output and "needs a frontal view" in on_ray.output
    assert "broken.dcm" in on_ray.output
    _same_files(tmp_path / "local", tmp_path / "ray")
    assert (tmp_path / "ray" / f"{uid}.json").is_file()


def _same_files(a, b):
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    for name in names:
        if name.endswith(".json"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), name
