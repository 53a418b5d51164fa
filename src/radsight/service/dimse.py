"""DICOM over DIMSE, as hospital networks move images: a C-STORE SCP for radiographs (and C-ECHO) beside the web
API, and a C-STORE SCU outbox that sends results to a destination, retrying with back-off until it takes them.

Received instances go through the same checks as STOW-RS; success is answered only once the instance is on disk,
and the instances of one association are queued as one analysis a study when it ends. Callers are limited to the
configured AE titles and addresses: others are rejected at association.
Results wait in a SQLite outbox (and as files) until the destination has taken them, across restarts.
"""
from __future__ import annotations

import logging
import shutil
import socket
import sqlite3
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, evt
from pynetdicom.sop_class import (
    ComputedRadiographyImageStorage,
    DigitalXRayImageStorageForPresentation,
    DigitalXRayImageStorageForProcessing,
    Verification,
)

from radsight.batch.jobs import group_studies
from radsight.core import InputError
from radsight.io import load_image
from radsight.service.intake import Intake, Received
from radsight.service.outbox import NotTaken, Outbox, storage_outcome

log = logging.getLogger("radsight.dimse")

RADIOGRAPH_CLASSES = (ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation,
                      DigitalXRayImageStorageForProcessing)
# What radsight's reader decodes (pydicom with pylibjpeg): uncompressed, JPEG, JPEG-LS, JPEG 2000, RLE.
TRANSFER_SYNTAXES = (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, JPEGBaseline8Bit,
                     JPEGExtended12Bit, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless, JPEG2000Lossless,
                     JPEG2000, RLELossless)
# C-STORE failure statuses (PS3.4 B.2.3): cannot understand; out of resources.
CANNOT_UNDERSTAND, OUT_OF_RESOURCES = 0xC000, 0xA700


@dataclass(frozen=True)
class Peer:
    """A remote DICOM node: ``AE@host:port``."""

    ae_title: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str) -> Peer:
        try:
            ae_title, address = text.split("@", 1)
            host, port = address.rsplit(":", 1)
            peer = cls(ae_title.strip(), host.strip(), int(port))
        except ValueError:
            raise ValueError(f"{text!r}: give a DICOM node as AE@host:port") from None
        if not peer.ae_title or len(peer.ae_title) > 16:
            raise ValueError(f"{text!r}: an AE title has 1 to 16 characters")
        return peer


def allows(allowed: tuple[str, ...], ae_title: str, address: str) -> bool:
    """Whether a caller may associate: ``allowed`` holds ``AE``, ``@address`` or ``AE@address``; empty: anyone."""
    if not allowed:
        return True
    return any(rule in (ae_title, f"@{address}", f"{ae_title}@{address}") for rule in allowed)


class DicomNode:
    """The C-STORE SCP. Each instance is read and screened as it arrives (``intake.receive``, ``intake.screen``)
    and answered success once it is on disk; when the association ends, its instances are queued, one analysis a
    study (``intake.queue``). A study refused then (a lateral alone) is recorded as failed, with its reason."""

    def __init__(self, ae_title: str, host: str, port: int, allowed: tuple[str, ...], intake: Intake):
        self.allowed, self.intake = allowed, intake
        self.ae = AE(ae_title=ae_title)
        self.ae.require_called_aet = True
        self.ae.add_supported_context(Verification)
        for sop_class in RADIOGRAPH_CLASSES:
            self.ae.add_supported_context(sop_class, list(TRANSFER_SYNTAXES))
        self.address = (host, port)
        self.server = None
        # this node's associations in progress, one folder each; left over by a stop, they are queued at start
        self.staging = intake.incoming / f"dimse-{socket.gethostname()}-{port}"
        self._open: dict[int, Path] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=True)
        for folder in sorted(self.staging.iterdir()):
            self._queue(folder, "dimse:recovered")
        handlers = [(evt.EVT_REQUESTED, self._on_request), (evt.EVT_C_ECHO, lambda event: 0x0000),
                    (evt.EVT_C_STORE, self._on_store), (evt.EVT_RELEASED, self._on_end),
                    (evt.EVT_ABORTED, self._on_end), (evt.EVT_CONN_CLOSE, self._on_end)]
        self.server = self.ae.start_server(self.address, block=False, evt_handlers=handlers)
        log.info("DICOM node %s listening on %s:%d", self.ae.ae_title, *self.address)

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server = None

    def _on_request(self, event) -> None:
        caller, address = event.assoc.requestor.primitive.calling_ae_title, event.assoc.requestor.address
        if not allows(self.allowed, caller.strip(), address):
            log.warning("association from %s at %s rejected: not an allowed caller", caller.strip(), address)
            event.assoc.acse.send_reject(0x01, 0x01, 0x03)  # permanent; service user; calling AE not recognised
            event.assoc.kill()  # as pynetdicom's own rejections do: the A-ASSOCIATE-RJ leaves before the socket closes

    def _on_store(self, event) -> pydicom.Dataset | int:
        uid = str(event.request.AffectedSOPInstanceUID)
        try:
            # stored as it came, undecoded: a deflated dataset is inflated when it is read, under the reader's cap
            data = event.encoded_dataset(include_meta=True)
            part = self.intake.receive(data, f"{uid}.dcm", self._folder(event.assoc))
            try:
                self.intake.screen(part)
            except InputError:
                self.intake.discard([part])
                raise
        except InputError as exc:
            return _failure(CANNOT_UNDERSTAND, exc.reason)
        except (OSError, sqlite3.Error) as exc:  # the disk or the queue: ask the sender to try again later
            log.error("C-STORE of %s not stored: %s", uid, exc)
            return _failure(OUT_OF_RESOURCES, "not stored; try again")
        return 0x0000  # the pixels are let go: the instance is read again when its association ends

    def _folder(self, assoc) -> Path:
        with self._lock:
            if id(assoc) not in self._open:
                self._open[id(assoc)] = self.staging / uuid.uuid4().hex
                self._open[id(assoc)].mkdir()
            return self._open[id(assoc)]

    def _on_end(self, event) -> None:
        """Released, aborted or cut: the association's instances are queued (each was answered success)."""
        with self._lock:
            folder = self._open.pop(id(event.assoc), None)
        if folder is not None:
            self._queue(folder, f"dimse:{event.assoc.requestor.ae_title.strip()}")

    def _queue(self, folder: Path, origin: str) -> None:
        """The folder's instances, one analysis a study (grouped by header, one study's pixels in memory at a
        time); the folder is removed once every study is queued or recorded as refused."""
        try:
            for study in group_studies(sorted(folder.glob("*.part"), key=lambda p: p.stat().st_mtime_ns)):
                parts = []
                for path in study.paths:
                    try:
                        parts.append(Received(path, load_image(path), path.name))
                    except InputError as exc:  # it was read when it came: the disk changed under it
                        log.warning("%s: %s", path.name, exc.reason)
                try:
                    if parts:  # each was screened when it came: the gate is not run again
                        self.intake.queue(parts, origin, screened=True)
                except InputError as exc:
                    self.intake.refuse(parts, origin, exc.reason)
        except (OSError, sqlite3.Error):  # what is left stays on disk: queued when the node starts again
            log.exception("instances received in %s not queued; they will be at the next start", folder.name)
            return
        shutil.rmtree(folder, ignore_errors=True)


def _failure(status: int, comment: str) -> pydicom.Dataset:
    ds = pydicom.Dataset()
    ds.Status = status
    ds.ErrorComment = comment[:64]
    return ds


class DimseOutbox(Outbox):
    """Results waiting for a DICOM destination (``service.outbox``), sent with C-STORE, one association a batch."""

    def __init__(self, folder: Path, destination: Peer, ae_title: str, first_wait: float = 1.0,
                 max_wait: float = 60.0):
        super().__init__(folder, first_wait, max_wait)
        self.destination, self.ae_title = destination, ae_title
        self.receiver = f"{destination.ae_title}@{destination.host}:{destination.port}"

    def send(self, due: list[str]) -> dict[str, NotTaken]:
        readable, failed = self.read(due)
        if not readable:
            return failed
        ae = AE(ae_title=self.ae_title)
        for sop_class in dict.fromkeys(str(ds.SOPClassUID) for ds in readable.values()):
            ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
        d = self.destination
        assoc = ae.associate(d.host, d.port, ae_title=d.ae_title)
        if not assoc.is_established:
            why = NotTaken("association rejected" if assoc.is_rejected else "destination unreachable")
            return {**failed, **dict.fromkeys(readable, why)}
        for file, ds in readable.items():
            if not assoc.is_established:  # the destination ended the association: the rest go next time
                failed[file] = NotTaken("association ended by the destination")
            elif (why := self._store(assoc, ds)) is not None:
                failed[file] = why
        if assoc.is_established:
            assoc.release()
        return failed

    @staticmethod
    def _store(assoc, ds: pydicom.Dataset) -> NotTaken | None:
        try:
            answer = assoc.send_c_store(ds)
        except (ValueError, AttributeError) as exc:  # no accepted context for its class, or it cannot be encoded
            return NotTaken(f"not sent: {exc}", final=True)
        return storage_outcome(getattr(answer, "Status", None))
