"""Mutated DICOM, PNG and JPEG files (seeded byte flips, truncations, duplicated and zeroed runs in header and
pixel data) never crash or hang a reader, a batch or the service. Long runs: scripts/fuzz_inputs.py."""
import io

import numpy as np
import pytest
from PIL import Image
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless
from typer.testing import CliRunner

from conftest import chest_phantom, make_dicom
from radsight.io import load_image
from radsight.io.mutate import fuzz, mutate


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    """Small valid files in each encoding the readers support."""
    root, pixels = tmp_path_factory.mktemp("seeds"), chest_phantom(96, 80)
    out = {f"{name}.dcm": make_dicom(root / f"{name}.dcm", pixels, transfer_syntax=ts).read_bytes()
           for name, ts in [("explicit", ExplicitVRLittleEndian), ("j2k", JPEG2000Lossless), ("rle", RLELossless),
                            ("jls", JPEGLSLossless)]}
    out["mono1.dcm"] = make_dicom(root / "m1.dcm", pixels, photometric="MONOCHROME1", window=(2000, 3000)).read_bytes()
    for name, array, fmt in [("a8.png", np.round(pixels * 255).astype(np.uint8), "PNG"),
                             ("a16.png", np.round(pixels * 4095).astype(np.uint16), "PNG"),
                             ("a.jpg", np.round(pixels * 255).astype(np.uint8), "JPEG")]:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format=fmt)
        out[name] = buffer.getvalue()
    return out


def test_mutations_are_reproducible_and_cover_every_kind(originals):
    data = originals["explicit.dcm"]
    assert mutate(data, 7) == mutate(data, 7)
    kinds = {(m.kind, m.region) for m in (mutate(data, seed)[1] for seed in range(200))}
    assert len(kinds) == 8


def test_readers_never_crash_or_hang_on_mutants(originals, tmp_path):
    report = fuzz(originals, load_image, cases=1500, folder=tmp_path, seed=0, time_limit=10.0)
    assert report.outcomes["crash"] == 0, "\n".join(report.crashes)
    assert report.outcomes["hang"] == 0
    assert report.outcomes["input_error"] > 0 and report.outcomes["ok"] > 0


def test_a_folder_of_mutants_is_analyzed_to_the_end(originals, tiny_model, tmp_path):
    from radsight.cli import app
    folder = tmp_path / "in"
    folder.mkdir()
    for seed in range(120):
        name = sorted(originals)[seed % len(originals)]
        (folder / f"{seed:03d}-{name}").write_bytes(mutate(originals[name], seed)[0])
    for name, data in originals.items():
        (folder / f"zz-good-{name}").write_bytes(data)  # the good files come after the mutants
    result = CliRunner().invoke(app, ["analyze", str(folder), "--model", str(tiny_model), "--out",
                                      str(tmp_path / "out"), "-q"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    for name in originals:
        assert (tmp_path / "out" / f"zz-good-{name.rsplit('.', 1)[0]}.json").is_file()


def test_the_service_answers_mutants_with_4xx_never_500(originals, tiny_model, tmp_path):
    pytest.importorskip("fastapi", reason="needs radsight[serve]")
    from fastapi.testclient import TestClient

    from radsight.service.app import Settings, create_app
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", token="t", model=str(tiny_model)))) as client:
        for seed in range(60):
            name = sorted(originals)[seed % len(originals)]
            r = client.post("/api/studies", headers={"Authorization": "Bearer t"},
                            files={"file": (name, mutate(originals[name], seed)[0])})
            assert r.status_code in (202, 400, 413, 422), (seed, name, r.status_code, r.text)
