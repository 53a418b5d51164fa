"""radsight serve through its HTTP API: auth, limits, validation, queue, results, DICOM out, restart."""
from __future__ import annotations

import dataclasses
import io
import json
import signal
import sqlite3
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import generate_uid

from conftest import chest_phantom, lateral_phantom, make_dicom, start_serve, stow_body, study_dicom

pytest.importorskip("fastapi", reason="needs radsight[serve]")
pytest.importorskip("highdicom", reason="needs radsight[serve]")
import httpx  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from radsight.pipeline.options import PredictorOptions  # noqa: E402
from radsight.service.app import Settings, create_app  # noqa: E402
from radsight.service.db import StudyStore  # noqa: E402

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _settings(tmp_path, **kw) -> Settings:
    chosen = {f.name for f in dataclasses.fields(PredictorOptions)} & set(kw)
    predictor = PredictorOptions(**{"allow_ood": True, **{k: kw.pop(k) for k in chosen}})  # phantoms, not films
    return Settings(data_dir=tmp_path / "data", token=TOKEN, predictor=predictor, **kw)


def _sign_in(client) -> None:
    """The web page's reader session: reads then carry its cookie; writes still need the bearer token."""
    assert client.post("/api/session", json={"token": TOKEN}).status_code == 204


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((pixels * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _wait(client, ids, timeout=60) -> dict:
    deadline, done = time.time() + timeout, {}
    while time.time() < deadline and len(done) < len(ids):
        for i in ids:
            s = client.get(f"/api/studies/{i}").json()
            if s["status"] in ("done", "failed"):
                done[i] = s
        time.sleep(0.1)
    assert len(done) == len(ids), f"not finished in {timeout} s"
    return done


def test_upload_analyze_and_read_back(tmp_path):
    dcm = make_dicom(tmp_path / "a.dcm")
    with TestClient(create_app(_settings(tmp_path))) as client:
        _sign_in(client)
        r1 = client.post("/api/studies", files={"file": ("a.dcm", dcm.read_bytes(), "application/dicom")}, headers=AUTH)
        r2 = client.post("/api/studies", files={"file": ("b.png", _png(chest_phantom(seed=5)), "image/png")},
                         headers=AUTH)
        assert r1.status_code == r2.status_code == 202
        ids = [r1.json()["id"], r2.json()["id"]]
        done = _wait(client, ids)
        study = done[ids[0]]
        assert study["status"] == "done" and study["error"] is None
        result = study["result"]
        assert {"findings", "triage", "model", "disclaimer"} <= set(result)
        assert result["source"] == ids[0]  # no file names or paths of the upload
        assert result["dicom_results"] == ["study.sr.dcm", "study.seg.dcm", "study.sc.dcm"]  # the lungs found: a SEG
        assert "dicom_results" not in done[ids[1]]["result"]
        image = client.get(f"/api/studies/{ids[0]}/files/image.png")
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
        assert client.get(f"/api/studies/{ids[0]}/files/..%2Fradsight.sqlite").status_code == 404
        sr = pydicom.dcmread(io.BytesIO(client.get(f"/api/studies/{ids[0]}/files/study.sr.dcm").content))
        assert sr.Modality == "SR" and sr.VerificationFlag == "UNVERIFIED"
        assert "NOT FOR DIAGNOSTIC USE" in sr.SeriesDescription
        assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
        assert sr.StudyInstanceUID == pydicom.dcmread(dcm).StudyInstanceUID
        assert "radsight" in [e.Manufacturer for e in sr.ContributingEquipmentSequence]
        sc = pydicom.dcmread(io.BytesIO(client.get(f"/api/studies/{ids[0]}/files/study.sc.dcm").content))
        assert sc.SamplesPerPixel == 3 and "NOT FOR DIAGNOSTIC USE" in sc.SeriesDescription
        rows = client.get("/api/worklist").json()["studies"]
        keys = [(["urgent", "high", "routine"].index(r["priority"]), -r["abnormal_probability"]) for r in rows]
        assert keys == sorted(keys)
        assert client.get("/").status_code == 200 and "Not for diagnostic use" in client.get("/").text


def test_the_service_and_analyze_write_the_same_document_and_dicom_names(tmp_path, tiny_model):
    from typer.testing import CliRunner

    from radsight.cli import app
    source = make_dicom(tmp_path / "study.dcm", chest_phantom())
    cli = CliRunner().invoke(app, ["analyze", str(source), "--model", str(tiny_model), "--out", str(tmp_path / "cli"),
                                   "--dicom-out", "--allow-ood", "--no-bone-views", "--also-explain",
                                   "cam,gradcam,gradcam++"])
    assert cli.exit_code == 0, cli.output
    with TestClient(create_app(_settings(tmp_path, model=str(tiny_model)))) as client:
        _sign_in(client)
        job = client.post("/api/studies", files={"file": ("x.dcm", source.read_bytes())}, headers=AUTH).json()["id"]
        served = _wait(client, [job])[job]["result"]
    local = json.loads((tmp_path / "cli" / "study.json").read_text())
    assert served.pop("source") == job and local.pop("source") == str(source)  # the only difference
    assert served == local
    assert served["dicom_results"][0] == "study.sr.dcm" and "study.sc.dcm" in served["dicom_results"]
    written = {p.name for p in (tmp_path / "cli").iterdir()}
    assert written <= {p.name for p in (tmp_path / "data" / "results" / job).iterdir()}


def test_bone_views_are_served_and_stored_as_derived_secondary_captures(tmp_path, tiny_bone_model):
    dcm = make_dicom(tmp_path / "a.dcm", chest_phantom(200, 180))
    with TestClient(create_app(_settings(tmp_path, bone_model=str(tiny_bone_model)))) as client:
        _sign_in(client)
        r = client.post("/api/studies", files={"file": ("a.dcm", dcm.read_bytes(), "application/dicom")}, headers=AUTH)
        study_id = r.json()["id"]
        result = _wait(client, [study_id])[study_id]["result"]
        assert [v["name"] for v in result["views"]] == ["soft_tissue", "bone"]
        assert result["dicom_results"] == ["study.sr.dcm", "study.seg.dcm", "study.sc.dcm", "study.soft_tissue.dcm",
                                           "study.bone.dcm"]
        for view in result["views"]:
            png = client.get(f"/api/studies/{study_id}/files/{view['file']}")
            assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == (180, 200)
        source = pydicom.dcmread(dcm)
        for name in ("study.soft_tissue.dcm", "study.bone.dcm"):
            sc = pydicom.dcmread(io.BytesIO(client.get(f"/api/studies/{study_id}/files/{name}").content))
            assert sc.StudyInstanceUID == source.StudyInstanceUID and sc.PatientID == source.PatientID
            assert sc.PhotometricInterpretation == "MONOCHROME2" and sc.pixel_array.shape == (200, 180)
            assert list(sc.ImageType)[:2] == ["DERIVED", "SECONDARY"]
            assert "NOT FOR DIAGNOSTIC USE" in sc.SeriesDescription


def test_views_and_overlay_of_a_png_are_made_when_first_asked_and_equal_what_analyze_writes(tmp_path,
                                                                                             tiny_bone_model):
    from typer.testing import CliRunner

    from radsight.cli import app
    source = tmp_path / "film.png"
    source.write_bytes(_png(chest_phantom(200, 180)))
    cli = CliRunner().invoke(app, ["analyze", str(source), "--bone-model", str(tiny_bone_model), "--allow-ood",
                                   "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    with TestClient(create_app(_settings(tmp_path, bone_model=str(tiny_bone_model)))) as client:
        _sign_in(client)
        job = client.post("/api/studies", files={"file": ("film.png", source.read_bytes())}, headers=AUTH).json()["id"]
        result = _wait(client, [job])[job]["result"]
        assert [v["file"] for v in result["views"]] == ["study.soft_tissue.png", "study.bone.png"]
        assert result["overlay"] == "study.overlay.png"
        folder = tmp_path / "data" / "results" / job
        for name in ("bone", "overlay"):  # named, not made: no PACS takes a PNG's results
            assert not (folder / f"study.{name}.png").exists()
        for name in ("soft_tissue", "bone", "overlay"):
            served = client.get(f"/api/studies/{job}/files/study.{name}.png")
            assert served.status_code == 200
            assert np.array_equal(np.asarray(Image.open(io.BytesIO(served.content))),
                                  np.asarray(Image.open(tmp_path / "cli" / f"film.{name}.png")))
        assert client.get(f"/api/studies/{job}/files/study.lungs.dcm").status_code == 404


def test_writes_need_the_token_and_bad_requests_get_clear_4xx(tmp_path):
    ct = make_dicom(tmp_path / "ct.dcm", modality="CT")
    with TestClient(create_app(_settings(tmp_path, max_upload_bytes=200_000))) as client:
        _sign_in(client)
        files = {"file": ("x.png", _png(chest_phantom()), "image/png")}
        assert client.post("/api/studies", files=files).status_code == 401
        assert client.post("/api/studies", files=files, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.post("/api/studies", headers=AUTH).status_code == 422  # no file field
        empty = client.post("/api/studies", files={"file": ("e.dcm", b"", "application/dicom")}, headers=AUTH)
        assert empty.status_code == 400 and empty.json()["detail"] == "empty upload"
        junk = client.post("/api/studies", files={"file": ("j.dcm", b"hello" * 100, "application/dicom")}, headers=AUTH)
        assert junk.status_code == 422 and "cannot be analyzed" in junk.json()["detail"]
        bad = client.post("/api/studies", files={"file": ("ct.dcm", ct.read_bytes(), "application/dicom")}, headers=AUTH)
        assert bad.status_code == 422 and "modality CT" in bad.json()["detail"]
        huge = client.post("/api/studies", files={"file": ("h.png", b"\0" * 300_000, "image/png")}, headers=AUTH)
        assert huge.status_code == 413
        assert client.get("/api/studies/nope").status_code == 404
        assert client.post("/dicom-web/studies", content=b"x", headers={**AUTH, "Content-Type": "text/plain"}
                           ).status_code == 415
        assert client.get("/api/worklist").json()["studies"] == []  # nothing bad was queued
        assert "access-control-allow-origin" not in client.get("/api/worklist", headers={"Origin": "http://x"}).headers


def test_an_operator_sees_results_waiting_or_refused_and_sends_refused_ones_again(tmp_path):
    from radsight.service.dimse import DimseOutbox, Peer

    from conftest import free_port
    destination = f"PACS@127.0.0.1:{free_port()}"  # nothing listens there
    outbox = DimseOutbox(tmp_path / "data" / "outbox", Peer.parse(destination), "RADSIGHT")
    outbox.put([pydicom.dcmread(make_dicom(tmp_path / f"{i}.dcm", chest_phantom(64, 64))) for i in range(2)])
    next((tmp_path / "data" / "outbox").glob("*.dcm")).write_bytes(b"damaged")  # set aside; the other waits
    with TestClient(create_app(_settings(tmp_path, dimse_destination=destination))) as client:
        _sign_in(client)
        assert client.get("/api/outboxes").status_code == 401  # an operator's view: the token, not a reader
        deadline = time.time() + 30
        while time.time() < deadline and not client.get("/api/outboxes", headers=AUTH).json()["outboxes"][0]["refused"]:
            time.sleep(0.1)
        status = client.get("/api/outboxes", headers=AUTH).json()["outboxes"]
        assert status[0]["receiver"] == destination and status[0]["refused"] == 1 and status[0]["pending"] == 1
        assert status[0]["oldest_pending_seconds"] >= 0 and "unreachable" in status[0]["last_error"]
        assert client.post("/api/outboxes/retry").status_code == 401
        assert client.post("/api/outboxes/retry", headers=AUTH).json() == {"retried": 1}


def test_reads_need_the_token_or_a_reader_session_and_writes_never_take_the_cookie(tmp_path):
    with TestClient(create_app(_settings(tmp_path))) as client:
        assert client.get("/api/worklist").status_code == 401
        assert client.get("/api/studies/nope/files/image.png").status_code == 401
        assert client.get("/api/worklist", headers=AUTH).status_code == 200
        assert client.get("/api/model").status_code == 200 and client.get("/").status_code == 200  # no patient data
        assert client.post("/api/session", json={"token": "wrong"}).status_code == 401
        r = client.post("/api/session", json={"token": TOKEN})
        cookie = r.headers["set-cookie"].lower()
        assert r.status_code == 204 and "httponly" in cookie and "samesite=strict" in cookie and TOKEN not in cookie
        assert client.get("/api/worklist").status_code == 200
        files = {"file": ("x.png", _png(chest_phantom()), "image/png")}
        assert client.post("/api/studies", files=files).status_code == 401  # the cookie alone cannot write
        assert client.delete("/api/session").status_code == 204
        assert client.get("/api/worklist").status_code == 401


def test_each_sign_in_opens_its_own_session_and_sign_out_revokes_it(tmp_path):
    from radsight.service.access import MAX_FAILURES, SESSION_COOKIE
    with TestClient(create_app(_settings(tmp_path))) as client:
        sessions = []
        for _ in range(2):
            assert client.post("/api/session", json={"token": TOKEN}).status_code == 204
            sessions.append(client.cookies.get(SESSION_COOKIE))
        assert sessions[0] != sessions[1]
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, sessions[0])
        assert client.delete("/api/session").status_code == 204  # signs the first out, server side
        for session, status in zip(sessions, (401, 200)):
            client.cookies.clear()
            client.cookies.set(SESSION_COOKIE, session)  # a kept copy of the cookie
            assert client.get("/api/worklist").status_code == status
        client.cookies.clear()
        wrong = {"Authorization": "Bearer wrong"}
        answers = [client.get("/api/worklist", headers=wrong).status_code for _ in range(MAX_FAILURES + 5)]
        assert answers[:MAX_FAILURES] == [401] * MAX_FAILURES and set(answers[MAX_FAILURES:]) == {429}
        assert client.post("/api/session", json={"token": TOKEN}).status_code == 429  # the client waits it out
        r = client.post("/api/studies", headers=wrong, files={"file": ("x.png", b"x")})
        assert r.status_code == 429 and r.headers["retry-after"] == "60"


def test_stow_rs_queues_each_part(tmp_path):
    good = pydicom.dcmread(make_dicom(tmp_path / "g.dcm"))
    ct = pydicom.dcmread(make_dicom(tmp_path / "c.dcm", modality="CT"))
    body, content_type = stow_body([good, ct])
    with TestClient(create_app(_settings(tmp_path))) as client:
        _sign_in(client)
        r = client.post("/dicom-web/studies", content=body, headers={**AUTH, "Content-Type": content_type})
        assert r.status_code == 202 and r.headers["content-type"] == "application/dicom+json"
        answer = pydicom.Dataset.from_json(r.json())  # PS3.18's Store Instances Response
        assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [good.SOPInstanceUID]
        assert [(i.ReferencedSOPInstanceUID, i.FailureReason) for i in answer.FailedSOPSequence] == [
            (ct.SOPInstanceUID, 0xC000)]
        assert "part 2: " in r.headers["warning"] and "modality CT" in r.headers["warning"]
        ids = r.headers["x-radsight-studies"].split(",")
        assert len(ids) == 1 and _wait(client, ids)[ids[0]]["status"] == "done"
        only_ct, ct_type = stow_body([ct])
        assert client.post("/dicom-web/studies", content=only_ct, headers={**AUTH, "Content-Type": ct_type}
                           ).status_code == 409  # all failed
        r = client.post(f"/dicom-web/studies/{generate_uid()}", content=body,
                        headers={**AUTH, "Content-Type": "MULTIPART/RELATED" + content_type[len("multipart/related"):]})
        answer = pydicom.Dataset.from_json(r.json())  # into another study: neither instance is of it
        assert r.status_code == 409 and [i.FailureReason for i in answer.FailedSOPSequence] == [0xA900, 0xA900]


def test_interrupted_study_resumes_once_after_restart(tmp_path):
    settings = _settings(tmp_path)
    with TestClient(create_app(settings)) as client:
        _sign_in(client)
        app_store: StudyStore = client.app.state.store
        client.app.state.workers.stop()  # as if the server died before analyzing
        r = client.post("/api/studies", files={"file": ("a.png", _png(chest_phantom()), "image/png")}, headers=AUTH)
        study_id = r.json()["id"]
        assert app_store.claim().id == study_id  # a worker took it ... and the process was killed
        assert app_store.get(study_id).status == "running"
    with TestClient(create_app(settings)) as client:  # restart
        _sign_in(client)
        assert _wait(client, [study_id])[study_id]["status"] == "done"
        rows = client.get("/api/worklist").json()["studies"]
        assert [r["id"] for r in rows] == [study_id]
        assert client.app.state.store.get(study_id).attempts == 2


def test_a_study_is_in_the_store_only_once_its_upload_is_in_place(tmp_path):
    """A worker claiming a study the moment it is added finds its file; a store that fails the add leaves the
    upload where it was received."""
    from radsight.service.intake import Intake, upload_path

    class Store(StudyStore):
        fail = False

        def add(self, filename, origin, orthanc_id=None, error=None, gather=None, study_id=None):
            assert upload_path(data, study_id).is_file(), "queued before its file was in place"
            if self.fail:
                raise OSError("disk full")
            return super().add(filename, origin, orthanc_id, error, gather, study_id)

    class Predictor:
        cfg = dataclasses.make_dataclass("Cfg", ["name", "version"])("m", "1")

        def readable_alone(self, image):
            return None

    data = tmp_path / "data"
    store = Store(tmp_path / "jobs.sqlite")
    intake = Intake(data, store, Predictor(), allow_ood=True)
    part = intake.receive(_png(chest_phantom()), "a.png")
    job = intake.queue([part], "upload")
    assert store.claim().id == job and upload_path(data, job).is_file()
    store.fail = True
    part = intake.receive(_png(chest_phantom(seed=1)), "b.png")
    with pytest.raises(OSError):
        intake.queue([part], "upload")
    assert part.path.is_file() and [p.name for p in (data / "uploads").iterdir()] == [job]


def test_a_client_can_wait_for_the_outcome_instead_of_polling(tmp_path):
    with TestClient(create_app(_settings(tmp_path))) as client:
        _sign_in(client)
        png = {"file": ("a.png", _png(chest_phantom()), "image/png")}
        job = client.post("/api/studies", files=png, headers=AUTH).json()["id"]
        assert client.get(f"/api/studies/{job}?wait=60").json()["status"] == "done"
        assert client.get("/api/studies/nothing?wait=1").status_code == 404
        assert client.get(f"/api/studies/{job}?wait=-1").status_code == 422
        client.app.state.workers.stop()  # nothing will analyze the next one: the answer comes when the wait ends
        queued = client.post("/api/studies", files=png, headers=AUTH).json()["id"]
        start = time.monotonic()
        assert client.get(f"/api/studies/{queued}?wait=1").json()["status"] == "queued"
        assert 0.9 <= time.monotonic() - start < 10


@pytest.mark.parametrize("engine", [(), ("--worker-processes",)], ids=["threads", "processes"])
def test_server_killed_mid_queue_finishes_every_study_after_restart(tmp_path, engine):
    """A real SIGKILL, not a simulated one: studies queued or running when the process dies are all analyzed
    after a restart, each once more at most, and the job store survives. Worker processes end with the server."""
    data, log, workers = tmp_path / "data", tmp_path / "server.log", "2"
    server, url = start_serve(data, log, "--workers", workers, *engine, token=TOKEN)
    children = _children(server.pid)
    assert len(children) >= (2 if engine else 0)
    try:
        http = httpx.Client(base_url=url, headers=AUTH, timeout=30)
        ids = [http.post("/api/studies", files={"file": (f"{i}.png", _png(chest_phantom(seed=i)), "image/png")}
                         ).json()["id"] for i in range(8)]
        deadline = time.time() + 120
        while time.time() < deadline:  # kill once some, not all, are done: the queue is mid-way
            statuses = [http.get(f"/api/studies/{i}").json()["status"] for i in ids]
            if "done" in statuses:
                break
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
    assert statuses.count("done") < len(ids), "every study finished before the kill; the test proves nothing"
    deadline = time.time() + 10
    while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.1)
    assert not any(Path(f"/proc/{pid}").exists() for pid in children), "a worker process outlived its server"
    server, url = start_serve(data, log, "--workers", workers, *engine, token=TOKEN)
    try:
        http = httpx.Client(base_url=url, headers=AUTH, timeout=30)
        deadline = time.time() + 120
        while time.time() < deadline and any(http.get(f"/api/studies/{i}").json()["status"] in ("queued", "running")
                                             for i in ids):
            time.sleep(0.1)
        final = {i: http.get(f"/api/studies/{i}").json() for i in ids}
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert all(s["status"] == "done" for s in final.values()), final
    assert all(len(s["result"]["findings"]) == 14 for s in final.values())
    with sqlite3.connect(data / "radsight.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store = StudyStore(data / "radsight.sqlite")
    attempts = [store.get(i).attempts for i in ids]
    assert set(attempts) <= {1, 2} and attempts.count(2) <= int(workers)  # only the studies the workers held


def _children(pid: int) -> list[int]:
    """The processes ``pid`` started (Linux)."""
    return [int(c) for task in Path(f"/proc/{pid}/task").iterdir() for c in (task / "children").read_text().split()]


def test_orthanc_poller_survives_any_error():
    from radsight.service.pacs import Poller

    class Flaky:
        calls = 0

        def poll(self, store, save):
            Flaky.calls += 1
            raise ValueError("malformed /changes answer") if Flaky.calls == 1 else KeyError("Changes")

    poller = Poller(Flaky(), store=None, save=None, interval=0.01)
    poller.start()
    deadline = time.time() + 5
    while Flaky.calls < 3 and time.time() < deadline:
        time.sleep(0.01)
    assert poller.is_alive() and Flaky.calls >= 3
    poller.stop()
    poller.join(timeout=5)


def test_stow_rs_analyzes_the_instances_of_one_study_together(tmp_path, twoview_model):
    """PA and lateral of one study in one STOW-RS request: one analysis, both views read, one SR that references
    both; a lateral alone (another study) refused with its reason."""
    uid = generate_uid()
    pa = study_dicom(tmp_path / "pa.dcm", chest_phantom(seed=1), uid, "PA")
    lateral = study_dicom(tmp_path / "lat.dcm", lateral_phantom(seed=1), uid, "LL")
    alone = study_dicom(tmp_path / "alone.dcm", lateral_phantom(seed=2), generate_uid(), "LL")
    body, content_type = stow_body([pydicom.dcmread(p) for p in (pa, alone, lateral)])
    settings = _settings(tmp_path, model=str(twoview_model), lung_model=None)
    with TestClient(create_app(settings)) as client:
        _sign_in(client)
        r = client.post("/dicom-web/studies", content=body, headers={**AUTH, "Content-Type": content_type})
        answer = pydicom.Dataset.from_json(r.json())
        assert r.status_code == 202 and len(answer.ReferencedSOPSequence) == 2 and len(answer.FailedSOPSequence) == 1
        assert "part 2: " in r.headers["warning"] and "with its study's frontal view" in r.headers["warning"]
        [job] = r.headers["x-radsight-studies"].split(",")
        result = _wait(client, [job])[job]["result"]
        assert [(v["view"], v["read"], v["source"]) for v in result["views"]] == [
            ("frontal", True, "1.dcm"), ("lateral", True, "2.dcm")]
        assert result["dicom_results"] == ["study.sr.dcm", "study.frontal.sc.dcm", "study.lateral.sc.dcm"]
        for view in result["views"]:
            for name in (f"image.{view['view']}.png", view["overlay"], *view["findings"]["Effusion"]["heatmaps"].values()):
                assert client.get(f"/api/studies/{job}/files/{name}").status_code == 200, name
        sr = pydicom.dcmread(io.BytesIO(client.get(f"/api/studies/{job}/files/study.sr.dcm").content))
        evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                    for series in s.ReferencedSeriesSequence for i in series.ReferencedSOPSequence}
        assert evidence == {pydicom.dcmread(p).SOPInstanceUID for p in (pa, lateral)}
        row = client.get("/api/worklist").json()["studies"][0]
        assert row["study"]["view_position"] == "PA + LL" and row["positives"] == ["Effusion"]


def test_a_frontal_model_reads_the_frontal_of_a_study_and_names_the_lateral_it_did_not_read(tmp_path, tiny_model):
    uid = generate_uid()
    files = [study_dicom(tmp_path / "pa.dcm", chest_phantom(seed=5), uid, "PA"),
             study_dicom(tmp_path / "lat.dcm", lateral_phantom(seed=5), uid, "LL")]
    body, content_type = stow_body([pydicom.dcmread(p) for p in files])
    with TestClient(create_app(_settings(tmp_path, model=str(tiny_model), lung_model=None))) as client:
        _sign_in(client)
        job = client.post("/dicom-web/studies", content=body,
                          headers={**AUTH, "Content-Type": content_type}).headers["x-radsight-studies"]
        result = _wait(client, [job])[job]["result"]
    assert [(v["view"], v["read"]) for v in result["views"]] == [("frontal", True), ("lateral", False)]
    assert result["views"][1]["reason"] == "model tiny-test reads frontal views only"
    assert result["dicom_results"] == ["study.sr.dcm", "study.frontal.sc.dcm"]


def test_instances_of_one_study_sent_apart_are_gathered_into_one_analysis(tmp_path, twoview_model):
    """--gather-seconds: a PA, then its lateral in another request, then a lateral of another study alone: the
    first two are read together once no instance has come for the wait; the lone lateral fails with its reason; a
    lateral sent after the study was analyzed makes a new analysis of the grown study."""
    uid = generate_uid()
    pa = study_dicom(tmp_path / "pa.dcm", chest_phantom(seed=6), uid, "PA")
    lateral = study_dicom(tmp_path / "lat.dcm", lateral_phantom(seed=6), uid, "LL")
    alone = study_dicom(tmp_path / "alone.dcm", lateral_phantom(seed=7), generate_uid(), "LL")
    settings = _settings(tmp_path, model=str(twoview_model), lung_model=None, gather_seconds=1.5)
    with TestClient(create_app(settings)) as client:
        _sign_in(client)
        ids = []
        for path in (pa, lateral, alone):
            body, content_type = stow_body([pydicom.dcmread(path)])
            r = client.post("/dicom-web/studies", content=body, headers={**AUTH, "Content-Type": content_type})
            assert r.status_code == 200 and "FailedSOPSequence" not in pydicom.Dataset.from_json(r.json()), r.json()
            ids += r.headers["x-radsight-studies"].split(",")
        assert ids[0] == ids[1] != ids[2] and client.get(f"/api/studies/{ids[0]}").json()["status"] == "gathering"
        done = _wait(client, [ids[0], ids[2]])
        late = study_dicom(tmp_path / "late.dcm", lateral_phantom(seed=8), uid, "LL")  # after the analysis ran
        body, content_type = stow_body([pydicom.dcmread(late)])
        grown = client.post("/dicom-web/studies", content=body,
                            headers={**AUTH, "Content-Type": content_type}).headers["x-radsight-studies"]
        again = _wait(client, [grown])[grown]["result"]
    both = done[ids[0]]["result"]
    assert [(v["view"], v["read"]) for v in both["views"]] == [("frontal", True), ("lateral", True)]
    assert done[ids[2]]["status"] == "failed" and "with its study's frontal view" in done[ids[2]]["error"]
    # the grown study is analyzed again with its earlier instances: the first lateral read, the late one listed
    assert grown not in ids and [(v["view"], v["read"]) for v in again["views"]] == [
        ("frontal", True), ("lateral", True), ("lateral", False)]


def test_a_data_folder_from_before_gathering_is_migrated(tmp_path):
    path = tmp_path / "radsight.sqlite"
    with sqlite3.connect(path) as db:  # the columns radsight had before
        db.execute("CREATE TABLE studies (id TEXT PRIMARY KEY, received_at REAL NOT NULL, filename TEXT NOT NULL, "
                   "origin TEXT NOT NULL, orthanc_id TEXT UNIQUE, status TEXT NOT NULL, attempts INTEGER NOT NULL "
                   "DEFAULT 0, priority_rank INTEGER, abnormal REAL, result TEXT, error TEXT, updated_at REAL NOT NULL)")
        db.execute("INSERT INTO studies (id, received_at, filename, origin, status, updated_at) "
                   "VALUES ('old', 0, 'o.dcm', 'upload', 'queued', 0)")
    store = StudyStore(path)
    job = store.add("a.dcm", "stow", gather=("1.2.3", time.time() + 60))
    assert store.join("1.2.3", time.time() + 60) == job
    assert store.claim().id == "old" and store.claim() is None


def _raw_post(url: str, path: str, headers: dict[str, str], total: int, chunk: int = 64 * 1024) -> tuple[int, int]:
    """POST ``total`` bytes of body to ``path``, a chunk at a time, until the server answers; the status and how
    many body bytes were sent by then."""
    import select
    import socket
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\n{head}\r\n".encode())
        sent, block = 0, b"\0" * chunk
        while sent < total:
            if select.select([sock], [], [], 0)[0]:
                break
            try:
                sock.sendall(block)
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += chunk
        answer = sock.recv(4096).decode("latin-1")
    return int(answer.split(" ", 2)[1]), sent


def test_bodies_are_refused_before_they_are_read(tmp_path):
    from conftest import served
    with served(create_app(_settings(tmp_path))) as url:
        upload = {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(300 << 20)}
        status, sent = _raw_post(url, "/api/studies", upload, 300 << 20)  # no token
        assert status == 401 and sent < 5 << 20
        status, sent = _raw_post(url, "/api/studies", {**upload, **AUTH}, 300 << 20)  # over the 256 MB limit
        assert status == 413 and sent < 5 << 20
        status, sent = _raw_post(url, "/dicom-web/studies", {"Content-Type": "multipart/related; type=x",
                                                             "Content-Length": str(300 << 20)}, 300 << 20)
        assert status == 401 and sent < 5 << 20
        status, sent = _raw_post(url, "/api/session", {"Content-Type": "application/json",
                                                       "Content-Length": str(200 << 20)}, 200 << 20)
        assert status == 413 and sent < 5 << 20
    with TestClient(create_app(_settings(tmp_path, max_upload_bytes=200_000))) as client:
        head = b"--x\r\nContent-Type: application/dicom\r\n\r\n"
        chunks = (head if i == 0 else b"\0" * 65536 for i in range(10))  # no Content-Length: counted as it streams
        r = client.post("/dicom-web/studies", content=chunks,
                        headers={**AUTH, "Content-Type": "multipart/related; boundary=x"})
        assert r.status_code == 413


def test_dicomweb_client_stores_instances_and_reads_the_answer(tmp_path):
    dicomweb = pytest.importorskip("dicomweb_client", reason="needs dicomweb-client (radsight[test])")
    from conftest import served
    good = pydicom.dcmread(make_dicom(tmp_path / "g.dcm"))
    ct = pydicom.dcmread(make_dicom(tmp_path / "c.dcm", modality="CT"))
    with served(create_app(_settings(tmp_path))) as url:
        client = dicomweb.DICOMwebClient(url=f"{url}/dicom-web", headers=AUTH)
        answer = client.store_instances([good])
        assert isinstance(answer, pydicom.Dataset)
        assert [i.ReferencedSOPInstanceUID for i in answer.ReferencedSOPSequence] == [good.SOPInstanceUID]
        answer = client.store_instances([good, ct], study_instance_uid=good.StudyInstanceUID)  # some refused: 202
        assert [i.ReferencedSOPInstanceUID for i in answer.FailedSOPSequence] == [ct.SOPInstanceUID]


def test_an_instance_sent_again_is_not_analyzed_again(tmp_path, tiny_model):
    dcm = make_dicom(tmp_path / "a.dcm").read_bytes()
    png = _png(chest_phantom(seed=3))

    def send(client, data, name, query=""):
        return client.post(f"/api/studies{query}", files={"file": (name, data)}, headers=AUTH).json()

    with TestClient(create_app(_settings(tmp_path))) as client:
        _sign_in(client)
        first = send(client, dcm, "a.dcm")
        _wait(client, [first["id"]])
        again = send(client, dcm, "a.dcm")
        assert again == {"id": first["id"], "status": "done"}  # the earlier analysis answers
        forced = send(client, dcm, "a.dcm", "?force=true")["id"]
        assert forced != first["id"]
        assert send(client, png, "b.png")["id"] != send(client, png, "b.png")["id"]  # no SOP Instance UID
        _wait(client, [forced])
        body, content_type = stow_body([pydicom.dcmread(io.BytesIO(dcm))])
        r = client.post("/dicom-web/studies", content=body, headers={**AUTH, "Content-Type": content_type})
        assert r.status_code == 200 and r.headers["x-radsight-studies"] == forced  # the latest analysis
    with TestClient(create_app(_settings(tmp_path, model=str(tiny_model)))) as client:
        assert send(client, dcm, "a.dcm")["id"] not in (first["id"], forced)  # another model version: again


def test_a_worker_gives_memory_back_once_its_queue_stayed_dry_not_between_studies(monkeypatch):
    from pathlib import Path
    from types import SimpleNamespace

    from radsight.service import worker as service_worker
    monkeypatch.setattr(service_worker, "RELEASE_AFTER_IDLE", 0.3)
    queue, finished, released = [SimpleNamespace(id="a"), SimpleNamespace(id="b")], [], []

    class Store:
        def claim(self):
            return queue.pop(0) if queue else None

    class Predictor:
        def release_memory(self):
            released.append(time.monotonic())

    workers = service_worker.Workers(Store(), Predictor(), None, Path("."))
    monkeypatch.setattr(workers, "process", lambda study: finished.append(time.monotonic()))
    workers.start()
    time.sleep(1.6)
    workers.stop()
    assert len(finished) == 2 and len(released) == 1 and released[0] - finished[-1] >= 0.3
