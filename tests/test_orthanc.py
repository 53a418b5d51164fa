"""radsight serve with a real Orthanc (Debian's orthanc + orthanc-dicomweb) on loopback: a study stored in the
PACS is taken once stable, analyzed, and its SR and overlay come back into the same study over STOW-RS."""
from __future__ import annotations

import contextlib
import datetime
import io
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import chest_phantom, free_port, lateral_phantom, make_dicom, server_unavailable, study_dicom

pytest.importorskip("fastapi", reason="needs radsight[serve]")
hd = pytest.importorskip("highdicom", reason="needs radsight[serve]")
httpx = pytest.importorskip("httpx", reason="needs radsight[serve]")
from fastapi.testclient import TestClient  # noqa: E402

from radsight.core import FINDINGS  # noqa: E402
from radsight.pipeline.options import PredictorOptions  # noqa: E402
from radsight.service.app import Settings, create_app  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "orthanc.sh"


@pytest.fixture()
def orthanc(tmp_path):
    if shutil.which("Orthanc") is None and shutil.which("apt-get") is None:
        server_unavailable("needs Debian's orthanc and orthanc-dicomweb (scripts/orthanc.sh installs them)")
    port = free_port()
    started = subprocess.run(["bash", str(SCRIPT), str(tmp_path / "orthanc"), str(port), str(free_port())],
                             capture_output=True, text=True, timeout=600)
    if started.returncode != 0:
        server_unavailable(f"Orthanc could not be started here: {started.stderr.strip()[-300:]}")
    group = int(started.stdout.split()[-1])
    yield f"http://127.0.0.1:{port}"
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)


def test_orthanc_listens_on_loopback_only(orthanc):
    """Every listening socket of the processes scripts/orthanc.sh started is bound to 127.0.0.1 (seen with ss)."""
    if shutil.which("ss") is None:
        pytest.skip("needs ss (iproute2)")
    port = orthanc.rsplit(":", 1)[1]
    sockets = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout.splitlines()
    group = {line for line in sockets if "Orthanc" in line or "socat" in line}
    assert any(f"127.0.0.1:{port} " in line for line in group), sockets
    assert all(line.split()[3].startswith("127.0.0.1:") for line in group), group


def test_study_sent_to_orthanc_comes_back_with_sr_and_overlay(orthanc, tmp_path):
    source = make_dicom(tmp_path / "cxr.dcm")
    pacs = httpx.Client(base_url=orthanc, timeout=30)
    stored = pacs.post("/instances", content=source.read_bytes()).json()
    settings = Settings(data_dir=tmp_path / "data", token="t", orthanc_url=orthanc, poll_interval=0.3,
                        predictor=PredictorOptions(allow_ood=True))  # a phantom, not a film
    with TestClient(create_app(settings), headers={"Authorization": "Bearer t"}) as client:
        deadline = time.time() + 90
        while time.time() < deadline:
            series = pacs.get(f"/studies/{stored['ParentStudy']}/series", params={"expand": True}).json()
            if {s["MainDicomTags"].get("Modality") for s in series} >= {"SR", "OT"}:
                break
            time.sleep(0.3)
        else:
            pytest.fail(f"no SR and overlay in Orthanc after 90 s; worklist: {client.get('/api/worklist').json()}")
        time.sleep(1.0)  # more polls: radsight must not queue its own SR and overlay
        rows = client.get("/api/worklist").json()["studies"]
    assert len(rows) == 1 and rows[0]["status"] == "done"
    by_modality = {s["MainDicomTags"]["Modality"]: s for s in series}
    sr_bytes = pacs.get(f"/instances/{by_modality['SR']['Instances'][0]}/file").content
    sr = hd.sr.srread(io.BytesIO(sr_bytes))
    original = pydicom.dcmread(source)
    assert sr.StudyInstanceUID == original.StudyInstanceUID and sr.VerificationFlag == "UNVERIFIED"
    assert "NOT FOR DIAGNOSTIC USE" in sr.SeriesDescription
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == original.SOPInstanceUID
    groups = sr.content.get_image_measurement_groups() + sr.content.get_planar_roi_measurement_groups()
    names = {f.replace("_", " ") for f in FINDINGS}
    findings = [g for g in groups if g.finding_type.meaning in names]
    assert len(findings) == 14  # one per NIH finding, beside the other heads' groups (age, nodules)
    sc = pydicom.dcmread(io.BytesIO(pacs.get(f"/instances/{by_modality['OT']['Instances'][0]}/file").content))
    assert sc.SamplesPerPixel == 3 and sc.StudyInstanceUID == original.StudyInstanceUID


def test_a_study_is_taken_once_stable_with_both_views_and_analyzed_again_only_when_it_grows(orthanc, tmp_path,
                                                                                              twoview_model):
    """PA and lateral stored one after the other: one analysis of both, once Orthanc calls the study stable; its
    results stored back in the study start nothing; a radiograph added later makes a new analysis of all three."""
    uid = generate_uid()
    pacs = httpx.Client(base_url=orthanc, timeout=30)
    pa = study_dicom(tmp_path / "pa.dcm", chest_phantom(seed=1), uid, "PA")
    lateral = study_dicom(tmp_path / "lat.dcm", lateral_phantom(seed=1), uid, "LL")
    stored = [pacs.post("/instances", content=p.read_bytes()).json() for p in (pa, lateral)]
    settings = Settings(data_dir=tmp_path / "data", token="t", orthanc_url=orthanc, poll_interval=0.3,
                        predictor=PredictorOptions(model=str(twoview_model), lung_model=None, allow_ood=True))
    with TestClient(create_app(settings), headers={"Authorization": "Bearer t"}) as client:
        rows = _done(client, 1)
        assert rows[0]["study"]["view_position"] == "PA + LL"
        sr_series = [s for s in pacs.get(f"/studies/{stored[0]['ParentStudy']}/series", params={"expand": True}).json()
                     if s["MainDicomTags"].get("Modality") == "SR"]
        time.sleep(4)  # Orthanc calls the study stable again (radsight's results were added): nothing new is queued
        assert len(client.get("/api/worklist").json()["studies"]) == 1
        sr = pydicom.dcmread(io.BytesIO(pacs.get(f"/instances/{sr_series[0]['Instances'][0]}/file").content))
        evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                    for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
        assert evidence == {pydicom.dcmread(p).SOPInstanceUID for p in (pa, lateral)}
        second = study_dicom(tmp_path / "pa2.dcm", chest_phantom(seed=2), uid, "PA")
        pacs.post("/instances", content=second.read_bytes())
        rows = _done(client, 2)
    assert sorted(r["filename"][-4:] for r in rows) == ["(+1)", "(+2)"]  # PA + lateral; then with the second PA


def test_any_dicomweb_archive_is_polled_by_qido_rs(orthanc, tmp_path):
    """The same Orthanc, spoken to as a plain DICOMweb archive (--dicomweb): its study of today is found by QIDO-RS,
    taken once unchanged for stable_seconds, and its SR comes back by STOW-RS through dicomweb-client."""
    source = make_dicom(tmp_path / "cxr.dcm")
    ds = pydicom.dcmread(source)
    ds.StudyDate = datetime.date.today().strftime("%Y%m%d")
    ds.save_as(source)
    pacs = httpx.Client(base_url=orthanc, timeout=30)
    stored = pacs.post("/instances", content=source.read_bytes()).json()
    settings = Settings(data_dir=tmp_path / "data", token="t", dicomweb_url=f"{orthanc}/dicom-web", stable_seconds=1,
                        poll_interval=0.3, predictor=PredictorOptions(allow_ood=True))
    with TestClient(create_app(settings), headers={"Authorization": "Bearer t"}) as client:
        rows = _done(client, 1)
        time.sleep(2.0)  # more polls: the study with radsight's results in it has no new radiograph
        assert len(client.get("/api/worklist").json()["studies"]) == 1
    series = pacs.get(f"/studies/{stored['ParentStudy']}/series", params={"expand": True}).json()
    assert rows[0]["status"] == "done" and {s["MainDicomTags"].get("Modality") for s in series} >= {"SR", "OT"}


def _done(client, count: int, timeout: float = 90) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = client.get("/api/worklist").json()["studies"]
        if len(rows) >= count and all(r["status"] in ("done", "failed") for r in rows):
            return rows
        time.sleep(0.3)
    pytest.fail(f"{count} analyses not finished in {timeout} s: {rows}")
