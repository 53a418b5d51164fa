"""Results on their way to the archive: kept on disk until it takes them, sent again with back-off, across
restarts, a batch at a time; what the receiver refuses for good is set aside, counted and retried on request."""
from __future__ import annotations

import json
import sqlite3
import time

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import chest_phantom, make_dicom

pytest.importorskip("dicomweb_client", reason="needs radsight[serve]")
import requests  # noqa: E402

from radsight.service.outbox import NotTaken, storage_outcome  # noqa: E402
from radsight.service.pacs import DeliveryError, DicomwebArchive, StowOutbox  # noqa: E402


class Archive:
    """A DICOMweb archive that is down for its first ``down`` requests, then stores what it is given but the
    instances ``refuse`` names (SOP Instance UID -> why)."""

    url = "http://user:secret@pacs.example:8042/dicom-web"

    def __init__(self, down: int = 0, refuse: dict | None = None):
        self.down, self.requests, self.stored, self.refuse = down, 0, [], refuse or {}

    def store(self, datasets):
        self.requests += 1
        if self.requests <= self.down:
            raise DeliveryError("STOW-RS failed: connection refused")
        self.stored += [ds.SOPInstanceUID for ds in datasets if ds.SOPInstanceUID not in self.refuse]
        return {uid: why for uid, why in self.refuse.items() if uid in {ds.SOPInstanceUID for ds in datasets}}


def _results(tmp_path, count: int) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(make_dicom(tmp_path / f"{i}.dcm", chest_phantom(64, 64, seed=i))) for i in range(count)]


def test_results_wait_for_an_archive_that_is_down_across_a_restart(tmp_path):
    results, archive = _results(tmp_path, 2), Archive(down=1)
    first = StowOutbox(tmp_path / "stow-outbox", archive, first_wait=0.3, max_wait=2)
    first.put(results)
    assert first.send_due() > 0.2 and first.pending() == 2 and archive.stored == []  # refused: wait, then again
    assert first.receiver == "the archive at pacs.example:8042"  # no credentials in the log
    again = StowOutbox(tmp_path / "stow-outbox", archive, first_wait=0.3, max_wait=2)  # a restarted service
    assert again.pending() == 2
    time.sleep(0.35)
    again.send_due()
    assert again.pending() == 0 and archive.stored == [ds.SOPInstanceUID for ds in results]
    assert list((tmp_path / "stow-outbox").glob("*.dcm")) == []


def test_a_damaged_result_holds_up_no_other_and_is_set_aside(tmp_path):
    archive = Archive()
    outbox = StowOutbox(tmp_path / "stow-outbox", archive)
    results = _results(tmp_path, 2)
    outbox.put(results)
    damaged = sorted((tmp_path / "stow-outbox").glob("*.dcm"))[0]
    damaged.write_bytes(b"not DICOM")
    outbox.send_due()
    assert outbox.pending() == 0 and len(archive.stored) == 1 and damaged.exists()  # kept, not sent again
    status = outbox.status()
    assert status["refused"] == 1 and "cannot read the result" in status["last_error"]


def test_results_the_archive_refuses_are_set_aside_and_sent_again_on_request(tmp_path):
    results = _results(tmp_path, 3)
    for ds in results:
        ds.SOPInstanceUID = generate_uid()
    refused, busy = results[0].SOPInstanceUID, results[1].SOPInstanceUID
    archive = Archive(refuse={refused: storage_outcome(0xC000), busy: storage_outcome(0xA700)})
    outbox = StowOutbox(tmp_path / "stow-outbox", archive, first_wait=0.05)
    outbox.put(results)
    outbox.send_due()
    assert archive.stored == [results[2].SOPInstanceUID]  # the one taken is not sent again
    assert outbox.pending() == 1 and outbox.status()["refused"] == 1  # out of resources: retried; 0xC000: not
    archive.refuse = {}
    time.sleep(0.1)
    outbox.send_due()
    assert busy in archive.stored and refused not in archive.stored and archive.requests == 2
    assert outbox.status() == {"receiver": "the archive at pacs.example:8042", "pending": 0, "refused": 1,
                               "oldest_pending_seconds": None, "last_error": "status 0xc000"}
    assert outbox.retry_refused() == 1  # the archive was fixed: an operator sends them again
    outbox.send_due()
    assert refused in archive.stored and outbox.status()["refused"] == 0
    assert list((tmp_path / "stow-outbox").glob("*.dcm")) == []


@pytest.mark.parametrize(("status", "taken", "final"), [
    (0x0000, True, None), (0xB000, True, None), (0xB007, True, None), (0x0111, True, None),  # stored, warned
    (0xA700, False, False), (0xA7FF, False, False), (0x0110, False, False), (None, False, False),  # may pass
    (0xA900, False, True), (0xC000, False, True), (0x0122, False, True), (0x0124, False, True)])  # will not
def test_storage_statuses(status, taken, final):
    outcome = storage_outcome(status)
    assert (outcome is None) == taken and (outcome is None or outcome.final == final)


class _Web:
    """dicomweb-client's store_instances answering as an archive would: ``status`` and a DICOM JSON body."""

    def __init__(self, status: int, body: dict | None):
        self.status, self.body = status, body

    def store_instances(self, datasets):
        if self.status == 200:
            return pydicom.Dataset.from_json(self.body)
        response = requests.Response()
        response.status_code, response.url = self.status, "http://pacs/studies"
        if self.body is not None:
            response._content = json.dumps(self.body).encode()
            response.headers["Content-Type"] = "application/dicom+json"
        raise requests.HTTPError(f"{self.status} Error for url: http://user:secret@pacs/studies", response=response)


def _failed_sop(uid: str, reason: int) -> dict:
    return {"00081198": {"vr": "SQ", "Value": [{"00081155": {"vr": "UI", "Value": [uid]},
                                                 "00081197": {"vr": "US", "Value": [reason]}}]}}


def test_a_stow_answer_says_which_results_failed(tmp_path):
    archive = DicomwebArchive("http://pacs/dicom-web")
    results = _results(tmp_path, 2)
    archive.web = _Web(409, _failed_sop("1.2.3", 0xA900))  # a conflict: some taken, this one refused for good
    assert archive.store(results) == {"1.2.3": NotTaken("status 0xa900", final=True)}
    archive.web = _Web(200, _failed_sop("1.2.4", 0xA700))  # partly stored, one out of resources
    assert archive.store(results) == {"1.2.4": NotTaken("status 0xa700", final=False)}
    for status, final in ((400, True), (415, True), (409, True), (503, False), (401, False), (404, False)):
        archive.web = _Web(status, None)
        with pytest.raises(DeliveryError) as refused:
            archive.store(results)
        assert refused.value.final is final, status
        assert "secret" not in str(refused.value) and "//pacs/studies" in str(refused.value)  # logged, and shown


def test_an_outbox_of_an_earlier_version_is_taken_over(tmp_path):
    folder = tmp_path / "stow-outbox"
    folder.mkdir()
    ds = _results(tmp_path, 1)[0]
    ds.save_as(folder / "old.dcm", enforce_file_format=True)
    with sqlite3.connect(folder / "outbox.sqlite") as db:
        db.execute("CREATE TABLE outbox (file TEXT PRIMARY KEY, sop_class TEXT, attempts INTEGER DEFAULT 0, "
                   "next_try REAL DEFAULT 0, last_error TEXT)")
        db.execute("INSERT INTO outbox (file, sop_class) VALUES ('old.dcm', ?)", (str(ds.SOPClassUID),))
    archive = Archive()
    outbox = StowOutbox(folder, archive)
    assert outbox.pending() == 1 and outbox.status()["oldest_pending_seconds"] is not None
    outbox.send_due()
    assert archive.stored == [ds.SOPInstanceUID] and outbox.pending() == 0


def test_a_long_queue_is_sent_a_batch_at_a_time(tmp_path):
    archive = Archive()
    outbox = StowOutbox(tmp_path / "stow-outbox", archive)
    outbox.batch = 2
    results = _results(tmp_path, 3)
    for ds in results:
        ds.SOPInstanceUID = generate_uid()
    outbox.put(results)
    assert outbox.send_due() < 0.1 and outbox.pending() == 1  # the rest is due at once
    outbox.send_due()
    assert outbox.pending() == 0 and archive.requests == 2 and len(archive.stored) == 3


class _Qido:
    """A DICOMweb archive's QIDO-RS and WADO-RS: ``series`` maps (study, series) to instance UIDs; ``counts``:
    whether it gives each series' instance count."""

    def __init__(self, counts: bool = True):
        self.series, self.counts, self.instance_queries, self.filters = {}, counts, 0, []

    def search_for_series(self, search_filters, fields, get_remaining):
        self.filters.append(search_filters)
        if search_filters["Modality"] != "CR":
            return []
        return [{"0020000D": {"Value": [st]}, "0020000E": {"Value": [se]},
                 **({"00201209": {"Value": [len(uids)]}} if self.counts else {})}
                for (st, se), uids in self.series.items()]

    def search_for_instances(self, study, series, get_remaining):
        self.instance_queries += 1
        return [{"00080018": {"Value": [uid]}} for uid in self.series[(study, series)]]

    def retrieve_instance(self, study, series, sop, media_types):
        ds = pydicom.Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = pydicom.uid.DigitalXRayImageStorageForPresentation, sop
        ds.file_meta = pydicom.dataset.FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, sop
        return ds


class _Known:
    def __init__(self):
        self.keys = set()

    def knows(self, key):
        return key in self.keys


@pytest.mark.parametrize("counts", [True, False], ids=["counted", "uncounted"])
def test_qido_polls_list_a_studys_instances_only_when_it_changes(counts):
    archive = DicomwebArchive("http://pacs/dicom-web", stable_seconds=0, days=3)
    archive.web, store, queued = _Qido(counts), _Known(), []

    def save(key, files):
        store.keys.add(key)
        queued.append((key, [name for name, _ in files]))
        return key
    archive.web.series[("1.1", "1.1.1")] = ["1.1.1.1"]
    for _ in range(5):
        archive.poll(store, save)
    assert [names for _, names in queued] == [["1.1.1/1.1.1.1"]]  # taken once
    assert archive.web.filters[0]["StudyDate"].endswith("-") and len(archive.web.filters[0]["StudyDate"]) == 9
    assert archive.web.instance_queries == (1 if counts else 5)  # an archive that counts: listed once
    archive.web.series[("1.1", "1.1.2")] = ["1.1.2.1"]  # the study grows: analyzed again, with both
    for _ in range(3):
        archive.poll(store, save)
    assert len(queued) == 2 and queued[1][1] == ["1.1.1/1.1.1.1", "1.1.2/1.1.2.1"]
