"""The FastAPI application: REST API, STOW-RS, the reader's web page."""
from __future__ import annotations

import logging
import os
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import Depends, FastAPI, HTTPException, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel

from radsight.core import InputError
from radsight.concurrency import threads_per_worker
from radsight.explain import DEFAULT_METHOD, TORCH_FREE
from radsight.models.store import DEFAULT_LUNG_MODEL, DEFAULT_MODEL
from radsight.pipeline import Predictor
from radsight.service.access import Access
from radsight.service.db import StudyStore
from radsight.service.intake import Intake, Received, by_study
from radsight.service.pacs import Orthanc, Poller, split_multipart
from radsight.service.worker import Workers, results_dir

STATIC = Path(__file__).parent / "static"
RESULT_FILES = {"image.png", "study.overlay.png", "study.lungs.png", "study.soft_tissue.png", "study.bone.png",
                "sr.dcm", "seg.dcm", "overlay.dcm", "soft_tissue.dcm", "bone.dcm"}
log = logging.getLogger("radsight.service")


class SignIn(BaseModel):
    token: str


@dataclass
class Settings:
    data_dir: Path
    token: str
    model: str = DEFAULT_MODEL
    lung_model: str | None = DEFAULT_LUNG_MODEL
    bone_model: str | None = None  # soft-tissue and bone views, stored as derived Secondary Captures
    bone_views: bool = False  # the shipped bone model's views when bone_model is None
    workers: int = 1
    max_upload_bytes: int = 256 * 1024 * 1024
    orthanc_url: str | None = None
    poll_interval: float = 2.0
    cors_origins: list[str] = field(default_factory=list)  # none: CORS closed
    allow_ood: bool = False  # queue images the out-of-distribution gate refuses (their results say so)
    explain: str = DEFAULT_METHOD  # makes the heatmaps and boxes; the viewer can switch to the torch-free others
    dimse_port: int | None = None  # a C-STORE SCP (and C-ECHO) on this port; None: no DICOM node
    dimse_host: str = "127.0.0.1"
    ae_title: str = "RADSIGHT"
    dimse_allowed: tuple[str, ...] = ()  # callers: "AE", "@address" or "AE@address"; empty: any
    dimse_destination: str | None = None  # "AE@host:port": results (SR, SEG, SC) are sent there with C-STORE
    db: str | None = None  # postgresql://... : a job store shared by replicas (data_dir shared too); None: SQLite
    lease_seconds: float = 30.0  # with PostgreSQL: a study whose worker stops renewing this long is claimed again
    gather_seconds: float = 0.0  # > 0: a study's instances arriving apart are analyzed together (service.intake)


def create_app(settings: Settings) -> FastAPI:
    if not settings.token:
        raise ValueError("an API token is required (radsight serve --token or RADSIGHT_API_TOKEN)")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = _store(settings)
    predictor = Predictor(settings.model, lung_model=settings.lung_model, threads=threads_per_worker(settings.workers),
                          bone_model=settings.bone_model, bone_views=settings.bone_views, method=settings.explain,
                          alternates=TORCH_FREE)
    orthanc = Orthanc(settings.orthanc_url) if settings.orthanc_url else None
    outbox = None
    if settings.dimse_destination:
        from radsight.service.dimse import Outbox, Peer
        outbox = Outbox(settings.data_dir / "outbox", Peer.parse(settings.dimse_destination), settings.ae_title)

    def deliver(source: Path, results: list) -> None:
        """Results to where they go: the Orthanc they came from, and the DIMSE destination's outbox."""
        if orthanc is not None:
            orthanc.store(source, results)
        if outbox is not None:
            outbox.put(results)
    workers = Workers(store, predictor, settings.data_dir, settings.workers,
                      deliver if orthanc is not None or outbox is not None else None)

    intake = Intake(settings.data_dir, store, predictor, settings.allow_ood, workers.notify, settings.gather_seconds)
    poller = Poller(orthanc, store, lambda key, files: _pacs_save(intake, key, files),
                    settings.poll_interval) if orthanc else None
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
        for service in (poller, node, outbox):
            if service is not None:
                service.start()
        yield
        for service in (node, poller, outbox):
            if service is not None:
                service.stop()
        workers.stop()

    app = FastAPI(title="radsight", version="1", lifespan=lifespan,
                  description="Chest X-ray triage worklist and findings. Research use; not for diagnostic use.")
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type"])
    access = Access(settings.token)
    writer, reader = Depends(access.writer), Depends(access.reader)

    async def read_limited(stream, limit: int) -> bytes:
        chunks, size = [], 0
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"upload larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def receive(data: bytes, filename: str) -> Received:
        if not data:
            raise HTTPException(400, "empty upload")
        try:
            return intake.receive(data, filename)
        except InputError as exc:
            raise HTTPException(422, f"cannot be analyzed: {exc.reason}") from exc

    def queue(parts: list[Received], origin: str) -> str:
        try:
            return intake.queue_or_discard(parts, origin)
        except InputError as exc:
            raise HTTPException(422, f"cannot be analyzed: {exc.reason}") from exc

    @app.post("/api/studies", status_code=202, dependencies=[writer])
    async def post_study(file: UploadFile) -> dict:
        """Queue a DICOM, PNG or JPEG radiograph (multipart field ``file``)."""
        data = await read_limited(_chunks(file), settings.max_upload_bytes)
        part = await run_in_threadpool(receive, data, os.path.basename(file.filename or "upload"))
        return {"id": await run_in_threadpool(queue, [part], "upload"), "status": "queued"}

    @app.post("/dicom-web/studies", dependencies=[writer])
    async def stow(request: Request) -> dict:
        """STOW-RS: ``multipart/related; type="application/dicom"``, one instance per part. The parts of one study
        (StudyInstanceUID) are analyzed together: one result for its frontal and lateral views."""
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/related"):
            raise HTTPException(415, "STOW-RS needs multipart/related; type=\"application/dicom\"")
        body = await read_limited(request.stream(), settings.max_upload_bytes)
        try:
            parts = split_multipart(body, content_type)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        if not parts:
            raise HTTPException(400, "no DICOM parts")
        received, number, failed = [], {}, []
        for i, data in enumerate(parts):
            try:
                received.append(await run_in_threadpool(receive, data, f"stow-part-{i + 1}"))
                number[id(received[-1])] = i + 1
            except HTTPException as exc:
                failed.append({"part": i + 1, "error": exc.detail})
        studies = []
        for group in by_study(received):
            numbers = [number[id(part)] for part in group]
            try:
                studies.append({"id": await run_in_threadpool(queue, group, "stow"), "parts": numbers})
            except HTTPException as exc:
                failed += [{"part": n, "error": exc.detail} for n in numbers]
        return {"ids": [s["id"] for s in studies], "studies": studies, "failed": failed}

    @app.post("/api/session", status_code=204)
    def sign_in(body: SignIn, request: Request, response: Response) -> None:
        """The web page's reader session: a cookie that lets this browser read (not write) until it closes."""
        access.open_session(body.token, response, secure=request.url.scheme == "https")

    @app.delete("/api/session", status_code=204)
    def sign_out(response: Response) -> None:
        access.close_session(response)

    @app.get("/api/studies/{study_id}", dependencies=[reader])
    def get_study(study_id: str) -> dict:
        return _known(store, study_id).public()

    @app.get("/api/studies/{study_id}/files/{name}", dependencies=[reader])
    def get_file(study_id: str, name: str) -> FileResponse:
        _known(store, study_id)
        path = results_dir(settings.data_dir, study_id) / name
        if not servable(name) or not path.is_file():
            raise HTTPException(404, f"no file {name!r} for this study")
        return FileResponse(path)

    @app.get("/api/worklist", dependencies=[reader])
    def worklist() -> dict:
        return {"studies": [_row(s) for s in store.worklist()], "counts": store.counts()}

    @app.get("/api/model")
    def model() -> dict:
        cfg = predictor.cfg
        return {"name": cfg.name, "version": cfg.version, "labels": cfg.labels, "thresholds": cfg.thresholds,
                "license": cfg.license, "intended_use": cfg.intended_use, "model_card": "/api/model/card"}

    @app.get("/api/model/card")
    def model_card() -> FileResponse:
        path = predictor.cfg.directory / predictor.cfg.model_card if predictor.cfg.model_card else None
        if path is None or not path.is_file():
            raise HTTPException(404, "this model has no model card")
        return FileResponse(path, media_type="text/markdown")

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse((STATIC / "index.html").read_text())

    @app.get("/static/{name}")
    def static(name: str) -> FileResponse:
        if name not in {"app.js", "style.css"}:
            raise HTTPException(404, "not found")
        return FileResponse(STATIC / name)

    app.state.store, app.state.workers = store, workers
    return app


def servable(name: str) -> bool:
    """Whether a result file may be served: one of RESULT_FILES or a heatmap, each also per view of a study
    (``study.frontal.overlay.png``, ``image.lateral.png``, ``lateral.overlay.dcm``)."""
    if "/" in name or ".." in name:
        return False
    name = re.sub(r"(^|\.)(frontal|lateral)\.", r"\1", name, count=1)
    return name in RESULT_FILES or (name.startswith("study.heatmap.") and name.endswith(".png"))


def _pacs_save(intake: Intake, key: str, files: list[tuple[str, bytes]]) -> str | None:
    """One stable Orthanc study queued as one analysis; one it cannot be is recorded as failed, with its reason."""
    parts = []
    for instance, data in files:
        try:
            parts.append(intake.receive(data, f"orthanc-{instance}"))
        except InputError as exc:
            log.info("Orthanc instance %s skipped: %s", instance, exc.reason)
    if not parts:
        return None
    try:
        return intake.queue(parts, "orthanc", key)
    except InputError as exc:
        log.info("Orthanc study %s not analyzed: %s", key, exc.reason)
        intake.refuse(parts, "orthanc", exc.reason, key)
        return None
    except BaseException:
        intake.discard(parts)
        raise


async def _chunks(file: UploadFile, size: int = 1 << 20):
    while chunk := await file.read(size):
        yield chunk


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


def _known(store, study_id: str):
    study = store.get(study_id)
    if study is None:
        raise HTTPException(404, "no such study")
    return study


def _row(s) -> dict:
    triage = (s.result or {}).get("triage") or {}
    positives = [f["name"] for f in (s.result or {}).get("findings", []) if f.get("positive")]
    return {"id": s.id, "status": s.status, "received_at": s.received_at, "filename": s.filename,
            "origin": s.origin, "study": (s.result or {}).get("study"),
            "priority": triage.get("priority"), "abnormal_probability": triage.get("abnormal_probability"),
            "positives": positives, "error": s.error}
