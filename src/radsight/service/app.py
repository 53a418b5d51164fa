"""The FastAPI application: the job store, workers, intake and listeners, and the routers (``api``: the REST API;
``dicomweb``: STOW-RS; ``viewer``: the reader's web page)."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from radsight.concurrency import threads_per_worker
from radsight.core import InputError
from radsight.explain import TORCH_FREE
from radsight.pipeline.options import PredictorOptions
from radsight.runtime.memory import limit_heap_arenas
from radsight.service import api, dicomweb, viewer
from radsight.service.access import Access
from radsight.service.context import Service, Settings
from radsight.service.db import StudyStore
from radsight.service.deferred import Deferred
from radsight.service.guard import BodyGuard
from radsight.service.intake import Decoded, Intake
from radsight.service.pacs import DicomwebArchive, Orthanc, Poller
from radsight.service.worker import Workers

__all__ = ["Settings", "create_app"]
log = logging.getLogger("radsight.service")


def service_options(settings: Settings) -> PredictorOptions:
    """What the service's predictor is built with and each analysis asks: the viewer switches between the
    torch-free methods' maps; results always carry DICOM for DICOM input; the computed views and overlay of other
    input are made when first asked for (``service.deferred``)."""
    alternates = tuple(dict.fromkeys((*settings.predictor.alternates, *TORCH_FREE)))
    return replace(settings.predictor, alternates=alternates, dicom_out=True, deferred_images=True,
                   threads=threads_per_worker(settings.workers))


def create_app(settings: Settings) -> FastAPI:
    if not settings.token:
        raise ValueError("an API token is required (radsight serve --token or RADSIGHT_API_TOKEN)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    limit_heap_arenas()  # before the workers' and request threads start: memory a burst freed can be returned
    store = _store(settings)
    options = service_options(settings)
    predictor = options.predictor()
    archive = _archive(settings)
    outbox = None
    if settings.dimse_destination:
        from radsight.service.dimse import Outbox, Peer
        outbox = Outbox(settings.data_dir / "outbox", Peer.parse(settings.dimse_destination), settings.ae_title)

    def deliver(source: Path, results: list) -> None:
        """Results to where they go: the archive they came from, and the DIMSE destination's outbox."""
        if archive is not None:
            archive.store(results)
        if outbox is not None:
            outbox.put(results)
    decoded = Decoded()  # what the intake read, handed to the worker
    workers = Workers(store, predictor, options, settings.data_dir, settings.workers,
                      deliver if archive is not None or outbox is not None else None, decoded.read)
    intake = Intake(settings.data_dir, store, predictor, options.allow_ood, workers.notify, settings.gather_seconds,
                    decoded)
    poller = Poller(archive, store, lambda key, files: _pacs_save(intake, key, files),
                    settings.poll_interval) if archive else None
    node = None
    if settings.dimse_port is not None:
        from radsight.service.dimse import DicomNode
        node = DicomNode(settings.ae_title, settings.dimse_host, settings.dimse_port, settings.dimse_allowed, intake)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        intake.sweep()
        resumed = store.recover()
        if resumed:
            log.info("resuming %d interrupted studies", resumed)
        workers.start()
        for listener in (poller, node, outbox):
            if listener is not None:
                listener.start()
        yield
        for listener in (node, poller, outbox):
            if listener is not None:
                listener.stop()
        workers.stop()

    app = FastAPI(title="radsight", version="1", lifespan=lifespan,
                  description="Chest X-ray triage worklist and findings. Research use; not for diagnostic use.")
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    service = Service(settings, store, intake, predictor, Access(settings.token, store),
                      Deferred(settings.data_dir, predictor, options, predictor.release_memory))
    app.add_middleware(BodyGuard, access=service.access, upload_limit=settings.max_upload_bytes)
    app.include_router(api.router(service))
    app.include_router(dicomweb.router(service))
    app.include_router(viewer.router())
    app.state.store, app.state.workers = store, workers
    return app


def _archive(settings: Settings) -> DicomwebArchive | None:
    if settings.orthanc_url and settings.dicomweb_url:
        raise ValueError("give --orthanc or --dicomweb, not both")
    if settings.orthanc_url:
        return Orthanc(settings.orthanc_url)
    if settings.dicomweb_url:
        return DicomwebArchive(settings.dicomweb_url, stable_seconds=settings.stable_seconds)
    return None


def _pacs_save(intake: Intake, key: str, files: list[tuple[str, bytes]]) -> str | None:
    """One stable PACS study queued as one analysis; one it cannot be is recorded as failed, with its reason."""
    parts = []
    for instance, data in files:
        try:
            parts.append(intake.receive(data, f"pacs-{instance.rsplit('/', 1)[-1]}"))
        except InputError as exc:
            log.info("PACS instance %s skipped: %s", instance, exc.reason)
    if not parts:
        return None
    try:
        return intake.queue(parts, "pacs", key)
    except InputError as exc:
        log.info("PACS study %s not analyzed: %s", key, exc.reason)
        intake.refuse(parts, "pacs", exc.reason, key)
        return None
    except BaseException:
        intake.discard(parts)
        raise


def _store(settings: Settings):
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
