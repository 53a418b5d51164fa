"""The PACS: studies are taken once they stop growing, results go back into the study over DICOMweb STOW-RS
(dicomweb-client, so any DICOMweb archive will do: Orthanc, dcm4chee, a cloud healthcare API).

Two ways to find new studies: :class:`Orthanc` follows Orthanc's change log (its StableStudy changes);
:class:`DicomwebArchive` asks any archive over QIDO-RS for radiograph series and takes a study once its instances
were the same for ``stable_seconds``.
"""
from __future__ import annotations

import datetime
import hashlib
import io
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pydicom
import requests
from dicomweb_client.api import DICOMwebClient

from radsight.io.dicom import RADIOGRAPHY_MODALITIES
from radsight.service.db import StudyStore
from radsight.service.outbox import PROCESSING_FAILURE, NotTaken, Outbox, storage_outcome

log = logging.getLogger("radsight.service")
Save = Callable[[str, list[tuple[str, bytes]]], "str | None"]
ANY_TRANSFER_SYNTAX = (("application/dicom", "*"),)  # the instance as it was stored, not transcoded
INSTANCE_COUNT = "00201209"  # Number of Series Related Instances


class DeliveryError(Exception):
    """A STOW-RS request the archive did not take at all; ``final``: its answer will not change for these results
    (a request it cannot accept), as opposed to an archive that is down or busy."""

    def __init__(self, message: str, final: bool = False):
        super().__init__(message)
        self.final = final


# HTTP answers to a STOW-RS request that no retry of the same results changes; others (401, 403, 404, 408, 429,
# 5xx: credentials, an address, an archive down or busy) are retried, for an operator can fix them
REFUSED_REQUEST = (400, 409, 413, 415, 422)


class DicomwebArchive:
    """A DICOMweb archive at ``url`` (its DICOMweb root, e.g. ``http://pacs/dicom-web``). Polling asks QIDO-RS
    for radiograph series of studies dated within ``days`` days."""

    def __init__(self, url: str, timeout: float = 30.0, stable_seconds: float = 60.0, days: int = 1):
        self.url = url.rstrip("/")
        self.web = DICOMwebClient(self.url, timeout=timeout)
        self.stable_seconds, self.days = stable_seconds, days
        self._seen: dict[str, tuple[tuple, float]] = {}  # study UID -> (its series, when first seen so)
        self._listed: dict[str, tuple[tuple, str, list[str]]] = {}  # study UID -> (its series, key, instances)

    def store(self, datasets: list[pydicom.Dataset]) -> dict[str, NotTaken]:
        """STOW-RS the results into the radiograph's study: the SOP Instance UIDs the archive did not take, with why
        (its FailedSOPSequence); :class:`DeliveryError` when the request failed as a whole."""
        try:
            answer = self.web.store_instances(datasets)
        except requests.HTTPError as exc:  # a 409 still says which results failed
            answer = _dicom_json(exc.response)
            if answer is None or "FailedSOPSequence" not in answer:
                code = exc.response.status_code if exc.response is not None else None
                raise DeliveryError(f"STOW-RS failed: {_without_credentials(exc)}",
                                    final=code in REFUSED_REQUEST) from exc
        except requests.RequestException as exc:
            raise DeliveryError(f"STOW-RS failed: {_without_credentials(exc)}") from exc
        refused = {}
        for item in (answer.get("FailedSOPSequence") or []) if answer is not None else []:
            why = storage_outcome(int(item.get("FailureReason", PROCESSING_FAILURE)))
            if why is not None and "ReferencedSOPInstanceUID" in item:
                refused[str(item.ReferencedSOPInstanceUID)] = why
        return refused

    def poll(self, store: StudyStore, save: Save) -> int:
        """Queue each study whose radiographs were unchanged for ``stable_seconds`` and were not analyzed as they
        are now. Returns how many studies were queued. A poll is one QIDO-RS query a modality: a study's instances
        are listed only when its series or their instance counts change (every poll for an archive that does not
        count them)."""
        queued, now = 0, time.monotonic()
        studies = self._radiograph_series()
        for study, series in studies.items():
            shape = tuple(sorted(series.items()))
            counted = None not in series.values()
            if not counted:  # the archive does not count the series' instances: their UIDs tell
                shape = tuple(self._instances(study, series))
            first_seen = self._seen.setdefault(study, (shape, now))
            if first_seen[0] != shape:
                self._seen[study] = (shape, now)
                continue
            if now - first_seen[1] < self.stable_seconds:
                continue
            known = self._listed.get(study)
            if known is None or known[0] != shape:
                instances = self._instances(study, series) if counted else list(shape)
                known = self._listed[study] = (shape, study_key(study, instances), instances)
            if store.knows(known[1]):
                continue
            files = [(i, self._retrieve(study, i)) for i in known[2]]
            queued += save(known[1], files) is not None
        self._seen = {s: v for s, v in self._seen.items() if s in studies}
        self._listed = {s: v for s, v in self._listed.items() if s in studies}
        return queued

    def _radiograph_series(self) -> dict[str, dict[str, int | None]]:
        """Study UID -> series UID -> its instance count (None when the archive does not give it), for the
        radiograph series of studies dated within ``days`` days."""
        studies: dict[str, dict[str, int | None]] = {}
        since = (datetime.date.today() - datetime.timedelta(days=self.days)).strftime("%Y%m%d")
        for modality in sorted(RADIOGRAPHY_MODALITIES):
            for series in self.web.search_for_series(search_filters={"Modality": modality, "StudyDate": f"{since}-"},
                                                     fields=[INSTANCE_COUNT], get_remaining=True):
                study, uid = _value(series, "0020000D"), _value(series, "0020000E")
                count = _value(series, INSTANCE_COUNT)
                if study and uid:
                    studies.setdefault(study, {})[uid] = int(count) if count and count.isdigit() else None
        return studies

    def _instances(self, study: str, series: dict) -> list[str]:
        """The study's radiographs as ``series/instance`` UIDs, in a fixed order."""
        return sorted(f"{uid}/{i}" for uid in series for i in
                      (_value(x, "00080018") for x in self.web.search_for_instances(study, uid, get_remaining=True))
                      if i)

    def _retrieve(self, study: str, instance: str) -> bytes:
        series, sop = instance.split("/")
        ds = self.web.retrieve_instance(study, series, sop, media_types=ANY_TRANSFER_SYNTAX)
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        return buffer.getvalue()


class Orthanc(DicomwebArchive):
    """Orthanc at ``url`` (its REST root; DICOMweb under ``/dicom-web``): new studies from its change log."""

    def __init__(self, url: str, timeout: float = 30.0):
        super().__init__(url.rstrip("/") + "/dicom-web", timeout)
        self.http = httpx.Client(base_url=url.rstrip("/"), timeout=timeout)

    def poll(self, store: StudyStore, save: Save) -> int:
        """Queue each study Orthanc calls stable since the last poll (a StableStudy change: no new instance for
        Orthanc's StableAge seconds) whose radiographs were not analyzed as they are now: ``save(key, [(instance,
        bytes)...])`` gets all of them at once. Returns how many studies were queued."""
        since, queued = int(store.get_state("orthanc_changes", "0")), 0
        while True:
            page = self.http.get("/changes", params={"since": since, "limit": 100}).json()
            for change in page.get("Changes", []):
                if change.get("ChangeType") != "StableStudy":
                    continue
                instances = self._radiographs(change["ID"])
                key = study_key(change["ID"], instances)
                if instances and not store.knows(key):  # results stored back into the study change nothing here
                    files = [(i, self.http.get(f"/instances/{i}/file").content) for i in instances]
                    queued += save(key, files) is not None
            since = int(page.get("Last", since))
            store.set_state("orthanc_changes", str(since))
            if page.get("Done", True):
                return queued

    def _radiographs(self, study: str) -> list[str]:
        """The Orthanc IDs of a study's radiographs (its series of a radiography modality)."""
        series = self.http.get(f"/studies/{study}/series", params={"expand": True}).json()
        return [instance for s in series
                if str(s.get("MainDicomTags", {}).get("Modality", "")).upper() in RADIOGRAPHY_MODALITIES
                for instance in s.get("Instances", [])]


class StowOutbox(Outbox):
    """Results waiting for the archive their study came from (``service.outbox``), stored with STOW-RS, a batch a
    request: an archive that is down, or refuses them, gets them again later instead of the study failing."""

    def __init__(self, folder: Path, archive: DicomwebArchive, first_wait: float = 1.0, max_wait: float = 60.0):
        super().__init__(folder, first_wait, max_wait)
        self.archive = archive
        # host and port only: a URL can carry credentials
        self.receiver = f"the archive at {urlsplit(archive.url).netloc.rsplit('@', 1)[-1]}"

    def send(self, due: list[str]) -> dict[str, NotTaken]:
        readable, failed = self.read(due)
        if readable:
            try:
                refused = self.archive.store(list(readable.values()))
            except DeliveryError as exc:
                failed.update(dict.fromkeys(readable, NotTaken(str(exc), exc.final)))
            else:
                files = {str(ds.SOPInstanceUID): file for file, ds in readable.items()}
                failed.update({files[uid]: why for uid, why in refused.items() if uid in files})
        return failed


def _without_credentials(exc: Exception) -> str:
    """An HTTP error's text without the user and password its URL may carry (it reaches the log and the outbox's
    status)."""
    return re.sub(r"//[^/@\s]*@", "//", str(exc))


def _dicom_json(response: requests.Response | None) -> pydicom.Dataset | None:
    """A STOW-RS answer's DICOM JSON body, or None when it has none."""
    if response is None or "json" not in response.headers.get("Content-Type", ""):
        return None
    try:
        return pydicom.Dataset.from_json(response.json())
    except (ValueError, TypeError, KeyError):
        return None


def _value(attributes: dict, tag: str) -> str | None:
    """The first value of ``tag`` in a DICOM JSON object (a QIDO-RS match)."""
    values = attributes.get(tag, {}).get("Value") or [None]
    return str(values[0]) if values[0] is not None else None


def study_key(study: str, instances: list[str]) -> str:
    """A study as it is now: its ID and which radiographs it holds (a radiograph added later makes a new key, so
    the grown study is analyzed again)."""
    return f"{study}/{hashlib.sha256(chr(10).join(sorted(instances)).encode()).hexdigest()[:16]}"


class Poller(threading.Thread):
    def __init__(self, archive: DicomwebArchive, store: StudyStore, save: Save, interval: float = 2.0):
        super().__init__(name="radsight-pacs-poller", daemon=True)
        self.archive, self.store, self.save, self.interval = archive, store, save, interval
        self._stopping = threading.Event()  # not _stop: Thread has a method of that name

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.archive.poll(self.store, self.save)
            except (httpx.HTTPError, requests.RequestException) as exc:
                log.warning("PACS poll failed: %s", exc)
            except Exception:  # a malformed answer or a bug: logged in full; the poller must outlive it
                log.exception("PACS poll failed")
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
