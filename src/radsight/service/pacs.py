"""Orthanc as the PACS: studies are taken once Orthanc calls them stable (its change log), results go back into
the study over DICOMweb STOW-RS."""
from __future__ import annotations

import hashlib
import io
import logging
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import pydicom

from radsight.io.dicom import RADIOGRAPHY_MODALITIES
from radsight.service.db import StudyStore

log = logging.getLogger("radsight.service")


def stow_body(datasets: list[pydicom.Dataset]) -> tuple[bytes, str]:
    """A multipart/related STOW-RS request body and its content type."""
    boundary = uuid.uuid4().hex
    parts = []
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        parts.append(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue()
                     + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def split_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The parts of a multipart/related body (STOW-RS), without their headers. Per RFC 2046 a delimiter is the
    boundary at the start of a line (CRLF before it, but for the first): the same bytes inside a part's data are
    data."""
    params = {k.strip().lower(): v.strip().strip('"') for k, _, v in
              (p.partition("=") for p in content_type.split(";")[1:]) if v}
    boundary = params.get("boundary", "")
    if not boundary:
        raise ValueError("multipart/related without a boundary")
    delimiter = b"--" + boundary.encode()
    start = 0 if body.startswith(delimiter) else body.find(b"\r\n" + delimiter)
    if start < 0:
        return []
    parts = []
    for chunk in (b"\r\n" + body[start:]).split(b"\r\n" + delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        _, _, payload = chunk.partition(b"\r\n\r\n")
        parts.append(payload)
    return parts


class Orthanc:
    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def store(self, source: Path, datasets: list[pydicom.Dataset]) -> None:
        """STOW-RS the results into the radiograph's study."""
        body, content_type = stow_body(datasets)
        response = self.http.post("/dicom-web/studies", content=body,
                                  headers={"Content-Type": content_type, "Accept": "application/dicom+json"})
        response.raise_for_status()

    def poll(self, store: StudyStore, save: Callable[[str, list[tuple[str, bytes]]], str | None]) -> int:
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


def study_key(study: str, instances: list[str]) -> str:
    """A study as it is now: its Orthanc ID and which radiographs it holds (a radiograph added later makes a new
    key, so the grown study is analyzed again)."""
    return f"{study}/{hashlib.sha256(chr(10).join(sorted(instances)).encode()).hexdigest()[:16]}"


class Poller(threading.Thread):
    def __init__(self, orthanc: Orthanc, store: StudyStore, save: Callable[[str, list[tuple[str, bytes]]], str | None],
                 interval: float = 2.0):
        super().__init__(name="radsight-orthanc-poller", daemon=True)
        self.orthanc, self.store, self.save, self.interval = orthanc, store, save, interval
        self._stopping = threading.Event()  # not _stop: Thread has a method of that name

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.orthanc.poll(self.store, self.save)
            except httpx.HTTPError as exc:
                log.warning("Orthanc poll failed: %s", exc)
            except Exception:  # a malformed answer or a bug: logged in full; the poller must outlive it
                log.exception("Orthanc poll failed")
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        self._stopping.set()
