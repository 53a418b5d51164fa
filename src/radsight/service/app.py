"""The FastAPI application: the job store, workers, intake and listeners, and the routers (``api``: the REST API;
``dicomweb``: STOW-RS; ``viewer``: the reader's web page)."""
from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from radsight.core import InputError
from radsight.runtime.memory import limit_heap_arenas
from radsight.service import api, dicomweb, viewer
from radsight.service.access import Access
from radsight.service.backends import delivery, open_archive, open_outboxes, open_store
from radsight.service.context import Service, Settings, service_options
from radsight.service.deferred import Deferred
from radsight.service.guard import BodyGuard
from radsight.service.handover import Handover
from radsight.service.intake import Decoded, Intake
from radsight.service.pacs import Poller
from radsight.service.waiting import Outcomes
from radsight.service.worker import Workers
from radsight.service.worker_processes import WorkerProcesses

__all__ = ["Settings", "create_app", "service_options"]
log = logging.getLogger("radsight.service")


def create_app(settings: Settings) -> FastAPI:
    if not settings.token:
        raise ValueError("an API token is required (radsight serve --token or RADSIGHT_API_TOKEN)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    limit_heap_arenas()  # before the workers' and request threads start: memory a burst freed can be returned
    store = open_store(settings)
    options = service_options(settings)
    predictor = options.predictor()
    archive = open_archive(settings)
    outboxes = open_outboxes(settings, archive)
    decoded = Decoded()  # what the intake read, handed to the worker
    outcomes = Outcomes()  # clients waiting for a study are answered once a worker records it
    if settings.worker_processes:
        workers = WorkerProcesses(settings, store, lambda: [outbox.notify() for outbox in outboxes],
                                  outcomes.recorded)
        handover = Handover(settings.data_dir, predictor, decoded)
    else:
        workers = Workers(store, predictor, options, settings.data_dir, settings.workers,
                          delivery(outboxes), decoded.read, finished=outcomes.recorded)
        handover = None
    intake = Intake(settings.data_dir, store, predictor, options.allow_ood, workers.notify, settings.gather_seconds,
                    decoded, handover)
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
        for listener in (poller, node, *outboxes):
            if listener is not None:
                listener.start()
        yield
        for listener in (node, poller, *outboxes):
            if listener is not None:
                listener.stop()
        workers.stop()

    app = FastAPI(title="radsight", version="1", lifespan=lifespan,
                  description="Chest X-ray triage worklist and findings. Research use; not for diagnostic use.")
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    service = Service(settings, store, intake, predictor, Access(settings.token, store),
                      Deferred(settings.data_dir, predictor, options, predictor.release_memory), outcomes, outboxes)
    app.add_middleware(BodyGuard, access=service.access, upload_limit=settings.max_upload_bytes)
    app.include_router(api.router(service))
    app.include_router(dicomweb.router(service))
    app.include_router(viewer.router())
    app.state.store, app.state.workers = store, workers
    return app


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
