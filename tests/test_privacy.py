"""No patient data in logs or on the console: the DICOM libraries quote header values in their warnings."""
from __future__ import annotations

import logging
import subprocess
import sys
import time

import pydicom
import pytest

from radsight.io.library_warnings import quiet_libraries, redact

from conftest import chest_phantom, make_dicom, start_serve

NAMES = ("Zebulon", "Quixote")


def named_film(path):
    """A film whose header names a patient and a referring physician the libraries warn about: a person name of
    six components (pydicom) and one of a single component (highdicom)."""
    ds = pydicom.dcmread(make_dicom(path.with_suffix(".seed.dcm"), chest_phantom()))
    ds.PatientName = "Zebulon^Quixote^A^B^C^D"
    ds.ReferringPhysicianName = "Quixote"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_redact_replaces_every_quoted_value():
    assert redact('The string "Quixote" is unlikely; \'Zebulon\' too') == 'The string "…" is unlikely; "…" too'


def test_library_warnings_are_logged_redacted_at_debug(caplog):
    import warnings
    log = logging.getLogger("radsight.test")
    with caplog.at_level(logging.DEBUG, logger="radsight.test"), quiet_libraries(log) as notes:
        warnings.warn('The string "Quixote" is unlikely to represent the intended person name')
    assert notes == ['The string "…" is unlikely to represent the intended person name']
    assert [r.levelno for r in caplog.records] == [logging.DEBUG] and "Quixote" not in caplog.text


def test_no_name_reaches_the_console_of_analyze(tmp_path):
    film = named_film(tmp_path / "film.dcm")
    run = subprocess.run([sys.executable, "-m", "radsight", "analyze", str(film), "--dicom-out", "--allow-ood",
                          "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "out" / "film.sr.dcm").is_file()
    assert not [n for n in NAMES if n in run.stdout + run.stderr], run.stdout + run.stderr


def test_no_name_reaches_the_service_log(tmp_path):
    pytest.importorskip("fastapi", reason="needs radsight[serve]")
    import httpx
    film = named_film(tmp_path / "film.dcm")
    log = tmp_path / "serve.log"
    server, url = start_serve(tmp_path / "data", log, "--no-bone-views")
    try:
        job = httpx.post(url + "/api/studies", files={"file": ("film.dcm", film.read_bytes())},
                         headers={"Authorization": "Bearer t"}, timeout=60).json()["id"]
        deadline = time.time() + 120
        while httpx.get(f"{url}/api/studies/{job}", headers={"Authorization": "Bearer t"}).json()["status"] not in (
                "done", "failed") and time.time() < deadline:
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    text = log.read_text()
    assert f"study {job} done" in text
    assert not [n for n in NAMES if n in text], text[-3000:]
    assert "highdicom" not in text  # its INFO lines are left out of normal runs
