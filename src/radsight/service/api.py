"""The REST API: upload a radiograph, read a study, its result files, the worklist and the model."""
from __future__ import annotations

import os
import re

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel

from radsight.service.context import Service
from radsight.service.worker import results_dir

# What a study's results folder may serve (``study.`` is the writer's stem), each also per view of a study
# (``study.frontal.overlay.png``, ``image.lateral.png``, ``study.lateral.sc.dcm``), and heatmaps.
RESULT_FILES = {"image.png", "study.overlay.png", "study.lungs.png", "study.soft_tissue.png", "study.bone.png",
                "study.sr.dcm", "study.seg.dcm", "study.sc.dcm", "study.soft_tissue.dcm", "study.bone.dcm"}


class SignIn(BaseModel):
    token: str


def servable(name: str) -> bool:
    """Whether a result file may be served: one of RESULT_FILES or a heatmap, each also per view of a study."""
    if "/" in name or ".." in name:
        return False
    name = re.sub(r"(^|\.)(frontal|lateral)\.", r"\1", name, count=1)
    return name in RESULT_FILES or (name.startswith("study.heatmap.") and name.endswith(".png"))


def router(service: Service) -> APIRouter:
    api = APIRouter()
    writer, reader = Depends(service.access.writer), Depends(service.access.reader)
    settings, store, predictor = service.settings, service.store, service.predictor

    @api.post("/api/studies", status_code=202, dependencies=[writer])
    async def post_study(file: UploadFile, force: bool = False) -> dict:
        """Queue a DICOM, PNG or JPEG radiograph (multipart field ``file``). A DICOM instance this model version
        analyzed before is not analyzed again: the answer is that analysis and its status (``?force=true``: again)."""
        data = await service.read_limited(_chunks(file))
        part = await run_in_threadpool(service.receive, data, os.path.basename(file.filename or "upload"))
        job = await run_in_threadpool(service.queue, [part], "upload", force)
        return {"id": job, "status": store.get(job).status}

    @api.post("/api/session", status_code=204)
    def sign_in(body: SignIn, request: Request, response: Response) -> None:
        """The web page's reader session: a cookie that lets this browser read (not write) until it closes."""
        service.access.open_session(body.token, request, response)

    @api.delete("/api/session", status_code=204)
    def sign_out(request: Request, response: Response) -> None:
        service.access.close_session(request, response)

    # documents read back from the job store are plain JSON already: answered by JSONResponse, not walked by
    # FastAPI's encoder first (2.6 ms of the GIL for a 13 KB result against 0.6 ms; a polling client asks often)
    @api.get("/api/studies/{study_id}", dependencies=[reader])
    async def get_study(study_id: str, wait: float = Query(0.0, ge=0.0, description=(
            "seconds to wait for the study to be done or failed before answering (at most 30): no polling"))
            ) -> JSONResponse:
        if not wait:
            return JSONResponse((await run_in_threadpool(service.known, study_id)).public())
        study = await service.outcomes.wait(study_id, lambda i: run_in_threadpool(store.get, i), wait)
        if study is None:
            raise HTTPException(404, "no such study")
        return JSONResponse(study.public())

    @api.get("/api/studies/{study_id}/files/{name}", dependencies=[reader])
    def get_file(study_id: str, name: str) -> FileResponse:
        service.known(study_id)
        path = results_dir(settings.data_dir, study_id) / name
        if not servable(name) or not (path.is_file() or service.deferred.make(study_id, name)):
            raise HTTPException(404, f"no file {name!r} for this study")
        return FileResponse(path)

    @api.get("/api/worklist", dependencies=[reader])
    def worklist() -> JSONResponse:
        return JSONResponse({"studies": [_row(s) for s in store.worklist()], "counts": store.counts()})

    @api.get("/api/outboxes", dependencies=[writer])
    def outboxes() -> dict:
        """Where results wait to be delivered (the archive, the DICOM destination): how many, since when, how many
        the receiver refused (set aside, not sent again) and the last error."""
        return {"outboxes": [outbox.status() for outbox in service.outboxes]}

    @api.post("/api/outboxes/retry", dependencies=[writer])
    def retry_refused() -> dict:
        """Send the results a receiver refused again, once what made it refuse them is fixed."""
        return {"retried": sum(outbox.retry_refused() for outbox in service.outboxes)}

    @api.get("/api/model")
    def model() -> dict:
        cfg = predictor.cfg
        return {"name": cfg.name, "version": cfg.version, "labels": cfg.labels, "thresholds": cfg.thresholds,
                "license": cfg.license, "intended_use": cfg.intended_use, "model_card": "/api/model/card"}

    @api.get("/api/model/card")
    def model_card() -> FileResponse:
        path = predictor.cfg.directory / predictor.cfg.model_card if predictor.cfg.model_card else None
        if path is None or not path.is_file():
            raise HTTPException(404, "this model has no model card")
        return FileResponse(path, media_type="text/markdown")

    return api


async def _chunks(file: UploadFile, size: int = 1 << 20):
    while chunk := await file.read(size):
        yield chunk


def _row(s) -> dict:
    triage = (s.result or {}).get("triage") or {}
    positives = [f["name"] for f in (s.result or {}).get("findings", []) if f.get("positive")]
    return {"id": s.id, "status": s.status, "received_at": s.received_at, "filename": s.filename,
            "origin": s.origin, "study": (s.result or {}).get("study"),
            "priority": triage.get("priority"), "abnormal_probability": triage.get("abnormal_probability"),
            "positives": positives, "error": s.error}
