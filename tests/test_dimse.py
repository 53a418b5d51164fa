"""The DICOM node with real DCMTK tools on loopback: C-ECHO, C-STORE of the example CR, an unknown AE title
rejected, results delivered by C-STORE to a storescp that was down when they were ready."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import chest_phantom, corpus_file, free_port, lateral_phantom, served, server_unavailable, study_dicom

pytest.importorskip("pynetdicom", reason="the DICOM node needs radsight[serve]")
httpx = pytest.importorskip("httpx", reason="needs radsight[serve]")
uvicorn = pytest.importorskip("uvicorn", reason="needs radsight[serve]")

from radsight.pipeline.options import PredictorOptions  # noqa: E402
from radsight.service.app import Settings, create_app  # noqa: E402
from radsight.service.dimse import Peer, allows  # noqa: E402

TOOLS = ("echoscu", "storescu", "storescp")


def dcmtk(tool: str) -> str | None:
    """DCMTK's ``tool``: pynetdicom installs scripts of the same names (other options) beside Python, skipped."""
    own = Path(sys.executable).parent.resolve()
    path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() != own]
    return shutil.which(tool, path=os.pathsep.join(path))


@pytest.fixture(params=[False, True], ids=["worker-threads", "worker-processes"])
def node(tmp_path, request):
    """The service as a DICOM node; its workers as threads, or as processes (results reach the outbox, which
    the server sends, from another process)."""
    missing = [t for t in TOOLS if dcmtk(t) is None]
    if missing:
        server_unavailable(f"needs DCMTK ({', '.join(missing)}; scripts/test.sh installs it)")
    api, dimse, destination = free_port(), free_port(), free_port()
    settings = Settings(data_dir=tmp_path / "data", token="t", dimse_port=dimse, ae_title="RADSIGHT",
                        dimse_allowed=("STORESCU", "ECHOSCU"), dimse_destination=f"PACS@127.0.0.1:{destination}",
                        worker_processes=request.param)
    with served(create_app(settings), api) as url:
        yield {"api": url, "dimse": dimse, "destination": destination, "data": tmp_path / "data"}


def _run(tool: str, *args: str) -> subprocess.CompletedProcess:
    tool = dcmtk(tool) or tool
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def test_echo_store_reject_and_results_to_a_destination_that_was_down(node, tmp_path):
    port = str(node["dimse"])
    assert _run("echoscu", "-aec", "RADSIGHT", "127.0.0.1", port).returncode == 0
    rejected = _run("echoscu", "-aet", "INTRUDER", "-aec", "RADSIGHT", "127.0.0.1", port)
    assert rejected.returncode != 0 and "reject" in (rejected.stdout + rejected.stderr).lower()
    assert _run("echoscu", "-aec", "SOMEONE_ELSE", "127.0.0.1", port).returncode != 0  # wrong called AE title
    stored = _run("storescu", "-aec", "RADSIGHT", "127.0.0.1", port, corpus_file("RG1_UNCR.dcm"))
    assert stored.returncode == 0, stored.stdout + stored.stderr
    headers = {"Authorization": "Bearer t"}
    deadline = time.time() + 120
    while time.time() < deadline:
        studies = httpx.get(f"{node['api']}/api/worklist", headers=headers).json()["studies"]
        if studies and studies[0]["status"] in ("done", "failed"):
            break
        time.sleep(0.5)
    assert studies[0]["status"] == "done", studies
    # the destination was down: the results wait in the outbox, then arrive once it is up
    outbox = node["data"] / "outbox"
    assert len(list(outbox.glob("*.dcm"))) == 3
    received = tmp_path / "received"
    received.mkdir()
    pacs = subprocess.Popen([dcmtk("storescp"), "--aetitle", "PACS", "-od", str(received), str(node["destination"])],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # the destination stays up until the outbox has its answers (not only until the files are written)
        deadline = time.time() + 90
        while time.time() < deadline and (len(list(received.iterdir())) < 3 or list(outbox.glob("*.dcm"))):
            time.sleep(0.5)
    finally:
        pacs.terminate()
        pacs.wait(timeout=10)
    classes = sorted(pydicom.dcmread(f, stop_before_pixels=True).SOPClassUID.name for f in received.iterdir())
    assert classes == ["Comprehensive 3D SR Storage", "Secondary Capture Image Storage", "Segmentation Storage"]
    assert not list(outbox.glob("*.dcm"))  # delivered results leave the outbox
    if shutil.which("dciodvfy"):
        for f in received.iterdir():
            run = _run("dciodvfy", str(f))
            assert not [x for x in (run.stdout + run.stderr).splitlines() if x.startswith("Error")], f.name


def test_peers_and_allowed_callers():
    assert Peer.parse("PACS@10.0.0.5:104") == Peer("PACS", "10.0.0.5", 104)
    for bad in ("PACS", "PACS@host", "@host:1", "A" * 17 + "@h:1"):
        with pytest.raises(ValueError, match="AE"):
            Peer.parse(bad)
    assert allows((), "ANY", "1.2.3.4")
    assert allows(("CR1",), "CR1", "1.2.3.4") and not allows(("CR1",), "CR2", "1.2.3.4")
    assert allows(("@10.0.0.7",), "X", "10.0.0.7") and not allows(("CR1@10.0.0.7",), "CR1", "10.0.0.8")


def test_outbox_keeps_results_across_a_restart_and_backs_off(tmp_path):
    from radsight.service.dimse import DimseOutbox as Outbox
    ds = pydicom.dcmread(corpus_file("RG1_UNCR.dcm"))
    peer = Peer("NOBODY", "127.0.0.1", free_port())  # nothing listens there
    first = Outbox(tmp_path / "outbox", peer, "RADSIGHT", first_wait=0.5, max_wait=4)
    first.put([ds])
    assert first.send_due() > 0.3 and first.pending() == 1  # failed once: the next try waits
    again = Outbox(tmp_path / "outbox", peer, "RADSIGHT", first_wait=0.5, max_wait=4)  # a restarted service
    assert again.pending() == 1
    time.sleep(0.6)
    again.send_due()
    import sqlite3
    with sqlite3.connect(tmp_path / "outbox" / "outbox.sqlite") as db:
        attempts, error = db.execute("SELECT attempts, last_error FROM outbox").fetchone()
    assert attempts == 2 and "unreachable" in error


def test_outbox_sets_aside_what_the_destination_refuses_and_counts_warnings_as_taken(tmp_path):
    from pynetdicom import AE, evt
    from pynetdicom.presentation import StoragePresentationContexts

    from radsight.service.dimse import DimseOutbox as Outbox
    results = [pydicom.dcmread(corpus_file("RG1_UNCR.dcm")) for _ in range(4)]
    for ds in results:
        ds.SOPInstanceUID = generate_uid()
    answers = dict(zip((ds.SOPInstanceUID for ds in results), (0x0000, 0xB000, 0xC000, 0xA700)))
    received = []

    def on_store(event):
        received.append(event.request.AffectedSOPInstanceUID)
        return answers[event.request.AffectedSOPInstanceUID]
    scp = AE(ae_title="PACS")
    scp.supported_contexts = StoragePresentationContexts
    port = free_port()
    server = scp.start_server(("127.0.0.1", port), block=False, evt_handlers=[(evt.EVT_C_STORE, on_store)])
    try:
        outbox = Outbox(tmp_path / "outbox", Peer("PACS", "127.0.0.1", port), "RADSIGHT", first_wait=0.05)
        outbox.put(results)
        outbox.send_due()
        status = outbox.status()
        assert len(received) == 4 and status["pending"] == 1 and status["refused"] == 1  # out of resources: again
        answers[results[3].SOPInstanceUID] = 0x0000
        time.sleep(0.1)
        outbox.send_due()
        assert received[4:] == [results[3].SOPInstanceUID]  # only the one retried; the refused one waits aside
        assert outbox.status()["pending"] == 0 and len(list((tmp_path / "outbox").glob("*.dcm"))) == 1
    finally:
        server.shutdown()


def _two_view_node(tmp_path, model):
    settings = Settings(data_dir=tmp_path / "data", token="t", dimse_port=free_port(), ae_title="RADSIGHT",
                        predictor=PredictorOptions(model=str(model), lung_model=None, allow_ood=True))  # phantoms
    return settings


def _worklist(url: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.time() + timeout
    while time.time() < deadline:
        rows = httpx.get(f"{url}/api/worklist", headers={"Authorization": "Bearer t"}).json()["studies"]
        if len(rows) >= count and all(r["status"] in ("done", "failed") for r in rows):
            return rows
        time.sleep(0.3)
    raise AssertionError(f"worklist not finished in {timeout} s: {rows}")


def test_one_association_is_one_study_and_a_lateral_alone_is_recorded_as_refused(tmp_path, twoview_model):
    if dcmtk("storescu") is None:
        server_unavailable("needs DCMTK's storescu (scripts/test.sh installs it)")
    uid = generate_uid()
    pa = study_dicom(tmp_path / "pa.dcm", chest_phantom(seed=1), uid, "PA")
    lateral = study_dicom(tmp_path / "lat.dcm", lateral_phantom(seed=1), uid, "LL")
    alone = study_dicom(tmp_path / "alone.dcm", lateral_phantom(seed=2), generate_uid(), "LL")
    settings = _two_view_node(tmp_path, twoview_model)
    with served(create_app(settings)) as url:
        port = str(settings.dimse_port)
        assert _run("storescu", "-aec", "RADSIGHT", "127.0.0.1", port, str(pa), str(lateral)).returncode == 0
        assert _run("storescu", "-aec", "RADSIGHT", "127.0.0.1", port, str(alone)).returncode == 0  # stored...
        rows = {r["status"]: r for r in _worklist(url, 2)}
    assert rows["done"]["study"]["view_position"] == "PA + LL"
    assert "with its study's frontal view" in rows["failed"]["error"]  # ...and the worklist says why it was not read
    assert not list((settings.data_dir / "incoming").rglob("*.part"))


def test_instances_of_an_unfinished_association_are_queued_at_the_next_start(tmp_path, twoview_model):
    """A stop between the C-STORE answers and the association's end: the instances wait on disk, and the node
    queues them as one study when it starts again."""
    uid = generate_uid()
    settings = _two_view_node(tmp_path, twoview_model)
    left = settings.data_dir / "incoming" / f"dimse-{socket.gethostname()}-{settings.dimse_port}" / "cut-short"
    left.mkdir(parents=True)
    study_dicom(left / "a.part", chest_phantom(seed=3), uid, "PA")
    study_dicom(left / "b.part", lateral_phantom(seed=3), uid, "LL")
    with served(create_app(settings)) as url:
        rows = _worklist(url, 1)
    assert [(r["status"], r["origin"], r["study"]["view_position"]) for r in rows] == [("done", "dimse:recovered",
                                                                                       "PA + LL")]
    assert not left.exists()
