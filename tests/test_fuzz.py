"""Mutated DICOM, PNG and JPEG files (seeded byte flips, truncations, duplicated and zeroed runs in header and
pixel data) never crash or hang a reader, a batch or the service. Long runs: scripts/fuzz_inputs.py."""
import pytest
from typer.testing import CliRunner

from radsight.io import load_image

from conftest import fuzz_originals
from mutate import fuzz, mutate


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> dict[str, bytes]:
    return fuzz_originals(tmp_path_factory.mktemp("seeds"))


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

    from radsight.pipeline.options import PredictorOptions
    from radsight.service.app import Settings, create_app
    with TestClient(create_app(Settings(data_dir=tmp_path / "data", token="t",
                                                 predictor=PredictorOptions(model=str(tiny_model))))) as client:
        for seed in range(60):
            name = sorted(originals)[seed % len(originals)]
            r = client.post("/api/studies", headers={"Authorization": "Bearer t"},
                            files={"file": (name, mutate(originals[name], seed)[0])})
            assert r.status_code in (202, 400, 413, 422), (seed, name, r.status_code, r.text)
