"""What the service connects to, built from its settings in whichever process needs it (the server, a worker
process): the job store, the archive studies come from, and the outboxes results leave by."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom

from radsight.service.context import Settings
from radsight.service.db import StudyStore
from radsight.service.outbox import Outbox
from radsight.service.pacs import DicomwebArchive, Orthanc, StowOutbox


def open_store(settings: Settings):
    """The job store: SQLite under the data folder, or the PostgreSQL one replicas share."""
    if not settings.db:
        return StudyStore(settings.data_dir / "radsight.sqlite")
    if not settings.db.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"--db {settings.db.split('@')[-1]!r}: give a postgresql:// URL (SQLite is the default)")
    try:
        from radsight.service.pg import PostgresStudyStore
    except ImportError as exc:
        raise ValueError(f"a PostgreSQL job store needs psycopg: pip install 'radsight[serve]' ({exc})") from exc
    import psycopg
    try:
        return PostgresStudyStore(settings.db, settings.lease_seconds)
    except psycopg.Error as exc:
        raise ValueError(f"cannot use the PostgreSQL job store: {exc}") from exc


def open_archive(settings: Settings) -> DicomwebArchive | None:
    if settings.orthanc_url and settings.dicomweb_url:
        raise ValueError("give --orthanc or --dicomweb, not both")
    if settings.orthanc_url:
        return Orthanc(settings.orthanc_url)
    if settings.dicomweb_url:
        return DicomwebArchive(settings.dicomweb_url, stable_seconds=settings.stable_seconds,
                               days=settings.dicomweb_days)
    return None


def open_outboxes(settings: Settings, archive: DicomwebArchive | None) -> list[Outbox]:
    """Where results wait until they are taken: the archive the studies came from (STOW-RS), and the DIMSE
    destination (C-STORE)."""
    outboxes: list[Outbox] = []
    if archive is not None:
        outboxes.append(StowOutbox(settings.data_dir / "stow-outbox", archive))
    if settings.dimse_destination:
        from radsight.service.dimse import DimseOutbox, Peer
        outboxes.append(DimseOutbox(settings.data_dir / "outbox", Peer.parse(settings.dimse_destination),
                                    settings.ae_title))
    return outboxes


def delivery(outboxes: list[Outbox]) -> Callable[[Path, list[pydicom.Dataset]], None] | None:
    """How results go to where they go (each outbox); None when they go nowhere."""
    if not outboxes:
        return None

    def deliver(source: Path, results: list[pydicom.Dataset]) -> None:
        for outbox in outboxes:
            outbox.put(results)
    return deliver
