"""DICOMweb: STOW-RS, one instance a part; the parts of one study are analyzed together.

The answer is PS3.18's Store Instances Response (application/dicom+json): a Referenced SOP Sequence item for each
instance taken, a Failed SOP Sequence item (with its Failure Reason) for each refused; 200 when all were taken,
202 when some failed, 409 when all failed. radsight's own answer rides in headers: the analyses queued
(``X-Radsight-Studies``: their ids, comma-separated) and why each refused part was refused (``Warning``).
"""
from __future__ import annotations

import io

import pydicom
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool

from radsight.service.context import Service
from radsight.service.intake import by_study
from radsight.service.multipart import MultipartError, TooLarge, media_type, read_parts

# PS3.18 10.5.3 / PS3.4 Annex B failure reasons
CANNOT_UNDERSTAND = 0xC000  # the instance is not one radsight can analyze
NOT_THIS_STUDY = 0xA900  # the instance is not of the study the request names (its data set does not match)
PROCESSING_FAILURE = 0x0110


def router(service: Service) -> APIRouter:
    web = APIRouter()

    @web.post("/dicom-web/studies", dependencies=[Depends(service.access.writer)])
    async def stow(request: Request, force: bool = False) -> Response:
        """STOW-RS: ``multipart/related; type="application/dicom"``, one instance per part. The parts of one study
        (StudyInstanceUID) are analyzed together: one result for its frontal and lateral views. Instances this model
        version analyzed before are not analyzed again (``?force=true``: again)."""
        return await _store(service, request, None, force)

    @web.post("/dicom-web/studies/{study}", dependencies=[Depends(service.access.writer)])
    async def stow_into(study: str, request: Request, force: bool = False) -> Response:
        """STOW-RS into one study: instances of another study are refused."""
        return await _store(service, request, study, force)

    return web


async def _store(service: Service, request: Request, study: str | None, force: bool) -> Response:
    content_type = request.headers.get("content-type", "")
    if media_type(content_type)[0] != "multipart/related":
        raise HTTPException(415, "STOW-RS needs multipart/related; type=\"application/dicom\"")
    try:
        parts = await read_parts(request.stream(), content_type, service.settings.max_upload_bytes)
    except TooLarge as exc:
        raise HTTPException(413, str(exc)) from exc
    except MultipartError as exc:
        raise HTTPException(400, str(exc)) from exc
    if not parts:
        raise HTTPException(400, "no DICOM parts")
    uids = [_uids(data) for data in parts]
    received, number, failed = [], {}, []  # failed: (part number, failure reason, why)
    for i, data in enumerate(parts):
        if study is not None and uids[i][2] != study:
            failed.append((i + 1, NOT_THIS_STUDY, f"not of study {study}"))
            continue
        try:
            received.append(await run_in_threadpool(service.receive, data, f"stow-part-{i + 1}"))
            number[id(received[-1])] = i + 1
        except HTTPException as exc:
            failed.append((i + 1, CANNOT_UNDERSTAND if exc.status_code == 422 else PROCESSING_FAILURE, exc.detail))
    jobs, taken = [], []
    for group in by_study(received):
        numbers = [number[id(part)] for part in group]
        try:
            jobs.append(await run_in_threadpool(service.queue, group, "stow", force))
            taken += numbers
        except HTTPException as exc:
            failed += [(n, CANNOT_UNDERSTAND, exc.detail) for n in numbers]
    answer = pydicom.Dataset()  # each sequence only when it has an item, as PS3.18 has them
    if taken:
        answer.ReferencedSOPSequence = [_reference(uids[n - 1]) for n in sorted(taken)]
    if failed:
        answer.FailedSOPSequence = [_reference(uids[n - 1], reason) for n, reason, _ in sorted(failed)]
    status = 200 if not failed else 202 if taken else 409
    headers = {"X-Radsight-Studies": ",".join(jobs)}
    response = Response(answer.to_json(), status_code=status, media_type="application/dicom+json", headers=headers)
    for n, _, why in sorted(failed):
        response.headers.append("Warning", f'299 radsight "part {n}: {_quoted(why)}"')
    return response


def _uids(data: bytes) -> tuple[str | None, str | None, str | None]:
    """A part's SOP Class, SOP Instance and Study Instance UIDs, as far as its header can be read."""
    try:
        ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True,
                             specific_tags=["SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"])
        return tuple(str(ds.get(k, "")) or None for k in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID"))
    except Exception:  # noqa: BLE001 - an unreadable part is refused by the intake with its reason
        return None, None, None


def _reference(uids: tuple, reason: int | None = None) -> pydicom.Dataset:
    item = pydicom.Dataset()
    if uids[0]:
        item.ReferencedSOPClassUID = uids[0]
    if uids[1]:
        item.ReferencedSOPInstanceUID = uids[1]
    if reason is not None:
        item.FailureReason = reason
    return item


def _quoted(text: str) -> str:
    """``text`` for a quoted string of an HTTP header: no quotes, backslashes or line breaks, Latin-1 only."""
    text = " ".join(str(text).replace("\\", "/").replace('"', "'").split())
    return text.encode("latin-1", "replace").decode("latin-1")
