"""radsight serve --worker-processes: the same results as the worker threads, what the intake read handed over on
disk, and a worker process that dies replaced, its study analyzed again."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import chest_phantom, make_dicom

pytest.importorskip("fastapi", reason="needs radsight[serve]")
pytest.importorskip("highdicom", reason="needs radsight[serve]")
from fastapi.testclient import TestClient  # noqa: E402

from radsight.core import Radiograph  # noqa: E402
from radsight.pipeline.options import PredictorOptions  # noqa: E402
from radsight.service import waiting  # noqa: E402
from radsight.service.app import Settings, create_app  # noqa: E402
from radsight.service.db import StudyStore  # noqa: E402
from radsight.service.handover import Handover  # noqa: E402
from radsight.service.intake import Decoded, upload_path  # noqa: E402
from radsight.service.worker_processes import WorkerProcesses  # noqa: E402

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(tmp_path: Path, model: Path, processes: bool, workers: int = 1) -> Settings:
    options = PredictorOptions(model=str(model), allow_ood=True, bone_views=False)
    return Settings(data_dir=tmp_path / "data", token=TOKEN, predictor=options, workers=workers,
                    worker_processes=processes)


def test_worker_processes_write_what_worker_threads_write_and_take_the_intakes_reading(tmp_path, tiny_model,
                                                                                       monkeypatch):
    monkeypatch.setattr(waiting, "RECHECK_SECONDS", 3600.0)  # a waiting client hears of the outcome, never rereads
    source = make_dicom(tmp_path / "study.dcm", chest_phantom())
    documents = {}
    for processes in (False, True):
        settings = _settings(tmp_path / str(processes), tiny_model, processes)
        with TestClient(create_app(settings)) as client:
            job = client.post("/api/studies", files={"file": ("x.dcm", source.read_bytes())},
                              headers=AUTH).json()["id"]
            study = client.get(f"/api/studies/{job}?wait=30", headers=AUTH).json()
            assert study["status"] == "done", study["error"]
        documents[processes] = study["result"]
        assert documents[processes].pop("source") == job
        written = settings.data_dir / "results" / job
        assert {"study.json", "study.sr.dcm", "study.seg.dcm", "study.sc.dcm"} <= {p.name for p in written.iterdir()}
    assert documents[True] == documents[False]
    handed = settings.data_dir / "handover"
    assert handed.is_dir() and not any(handed.iterdir())  # handed over, then taken by the worker process


class _Checks:
    """A predictor's check store: what ``checked`` gives and ``reuse_check`` receives."""

    def __init__(self, made=None):
        self.made, self.reused = made, []

    def checked(self, image):
        return self.made

    def reuse_check(self, image, check):
        self.reused.append((image, check))


def test_the_handover_carries_the_reading_and_check_and_falls_back_to_the_file(tmp_path):
    data = tmp_path / "data"
    upload = upload_path(data, "s1")
    upload.parent.mkdir(parents=True)
    make_dicom(upload, chest_phantom(seed=3))
    decoded, image = Decoded(), Radiograph(np.full((8, 8), 0.5, np.float32), "incoming/x.part")
    decoded.keep(upload, image)
    Handover(data, _Checks(made=("inputs", {"probabilities": np.ones(3)})), decoded).put("s1")
    worker = _Checks()
    read = Handover(data, worker).read(upload)
    assert read.pixels.shape == (8, 8) and read.source == str(upload)  # the intake's reading, not the file's
    assert worker.reused[0][0] is read and worker.reused[0][1][0] == "inputs"
    assert not (data / "handover" / "s1.pkl").exists()
    again = Handover(data, worker).read(upload)  # nothing handed over: the file is read
    assert again.pixels.shape != (8, 8) and len(worker.reused) == 1
    decoded.keep(upload, image)
    server = Handover(data, _Checks(made=None), decoded)
    server.put("s1")
    server.drop("s1")  # the study did not enter the store
    assert not any((data / "handover").iterdir())


def test_a_worker_process_that_dies_is_replaced_and_its_study_analyzed_again(tmp_path, tiny_model):
    settings = _settings(tmp_path, tiny_model, processes=True)
    settings.data_dir.mkdir(parents=True)
    store = StudyStore(settings.data_dir / "radsight.sqlite")
    study = store.add("x.dcm", "upload")
    (settings.data_dir / "uploads").mkdir()
    make_dicom(upload_path(settings.data_dir, study), chest_phantom(seed=4))
    assert store.claim().id == study  # as if the first process had taken it ...
    workers = WorkerProcesses(settings, store)
    workers.start()
    try:
        workers._held[0].value = study.encode()
        first = workers._processes[0]
        first.kill()  # ... and died analyzing it
        deadline = time.time() + 120
        while time.time() < deadline and store.get(study).status != "done":
            time.sleep(0.2)
        assert store.get(study).status == "done" and store.get(study).attempts == 2
        assert workers._processes[0] is not first and workers._processes[0].is_alive()
        assert json.loads((settings.data_dir / "results" / study / "study.json").read_text())["source"] == study
    finally:
        workers.stop()
    assert not any(p.is_alive() for p in workers._processes)
