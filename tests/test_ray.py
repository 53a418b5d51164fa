"""``radsight analyze --engine ray`` on a local Ray: the same JSON as the local engine, byte for byte; resumable."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import chest_phantom
from radsight.cli import app

ray = pytest.importorskip("ray", reason="the Ray engine needs radsight[ray]")


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
    try:
        on_ray = CliRunner().invoke(app, ["analyze", *common, "--engine", "ray", "--out", str(tmp_path / "ray")])
        assert on_ray.exit_code == 0, on_ray.output
        assert "analyzed 6 of 7 images on Ray" in on_ray.output and "broken.png" in on_ray.output
        names = sorted(p.name for p in (tmp_path / "local").iterdir())
        assert names == sorted(p.name for p in (tmp_path / "ray").iterdir()) and "0-2.json" in names
        for name in names:
            if name.endswith(".json"):
                assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "ray" / name).read_bytes(), name
        again = CliRunner().invoke(app, ["analyze", *common, "--engine", "ray", "--out", str(tmp_path / "ray")])
        assert "analyzed 0 of 7 images on Ray" in again.output and "6 already analyzed" in again.output
    finally:
        ray.shutdown()
