"""DICOMweb: STOW-RS, one instance a part; the parts of one study are analyzed together."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from radsight.service.context import Service
from radsight.service.intake import by_study
from radsight.service.pacs import split_multipart


def router(service: Service) -> APIRouter:
    web = APIRouter()

    @web.post("/dicom-web/studies", dependencies=[Depends(service.access.writer)])
    async def stow(request: Request) -> dict:
        """STOW-RS: ``multipart/related; type="application/dicom"``, one instance per part. The parts of one study
        (StudyInstanceUID) are analyzed together: one result for its frontal and lateral views."""
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/related"):
            raise HTTPException(415, "STOW-RS needs multipart/related; type=\"application/dicom\"")
        body = await service.read_limited(request.stream())
        try:
            parts = split_multipart(body, content_type)
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from exc
        if not parts:
            raise HTTPException(400, "no DICOM parts")
        received, number, failed = [], {}, []
        for i, data in enumerate(parts):
            try:
                received.append(await run_in_threadpool(service.receive, data, f"stow-part-{i + 1}"))
                number[id(received[-1])] = i + 1
            except HTTPException as exc:
                failed.append({"part": i + 1, "error": exc.detail})
        studies = []
        for group in by_study(received):
            numbers = [number[id(part)] for part in group]
            try:
                studies.append({"id": await run_in_threadpool(service.queue, group, "stow"), "parts": numbers})
            except HTTPException as exc:
                failed += [{"part": n, "error": exc.detail} for n in numbers]
        return {"ids": [s["id"] for s in studies], "studies": studies, "failed": failed}

    return web
