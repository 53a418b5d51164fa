"""Results on their way to the archive: kept on disk until it takes them, sent again with back-off, across
restarts, a batch at a time."""
from __future__ import annotations

import time

import pydicom
import pytest
from pydicom.uid import generate_uid

from conftest import chest_phantom, make_dicom

pytest.importorskip("dicomweb_client", reason="needs radsight[serve]")
from radsight.service.pacs import DeliveryError, StowOutbox  # noqa: E402


class Archive:
    """A DICOMweb archive that is down for its first ``down`` requests, then stores what it is given."""

    url = "http://user:secret@pacs.example:8042/dicom-web"

    def __init__(self, down: int = 0):
        self.down, self.requests, self.stored = down, 0, []

    def store(self, datasets):
        self.requests += 1
        if self.requests <= self.down:
            raise DeliveryError("STOW-RS failed: connection refused")
        self.stored += [ds.SOPInstanceUID for ds in datasets]


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


def test_a_damaged_result_holds_up_no_other(tmp_path):
    archive = Archive()
    outbox = StowOutbox(tmp_path / "stow-outbox", archive)
    results = _results(tmp_path, 2)
    outbox.put(results)
    damaged = sorted((tmp_path / "stow-outbox").glob("*.dcm"))[0]
    damaged.write_bytes(b"not DICOM")
    outbox.send_due()
    assert outbox.pending() == 1 and len(archive.stored) == 1


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
