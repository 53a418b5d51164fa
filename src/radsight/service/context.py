"""What the service's routes share: its settings, job store, intake, predictor and access control."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from fastapi import HTTPException

from radsight.concurrency import threads_per_worker
from radsight.core import InputError
from radsight.explain import TORCH_FREE
from radsight.pipeline.options import PredictorOptions
from radsight.service.access import Access
from radsight.service.deferred import Deferred
from radsight.service.intake import Intake, Received
from radsight.service.waiting import Outcomes


@dataclass
class Settings:
    data_dir: Path
    token: str
    predictor: PredictorOptions = field(default_factory=PredictorOptions)  # models, methods, OOD, device
    workers: int = 1
    worker_processes: bool = False  # the workers as processes (service.worker_processes), not threads
    max_upload_bytes: int = 256 * 1024 * 1024
    orthanc_url: str | None = None  # an Orthanc: new studies from its change log, results back by STOW-RS
    dicomweb_url: str | None = None  # any DICOMweb archive: new studies by QIDO-RS, results back by STOW-RS
    stable_seconds: float = 60.0  # with dicomweb_url: a study is taken once its radiographs were unchanged this long
    dicomweb_days: int = 1  # with dicomweb_url: studies dated today and this many days before are looked for
    poll_interval: float = 2.0
    cors_origins: list[str] = field(default_factory=list)  # none: CORS closed
    dimse_port: int | None = None  # a C-STORE SCP (and C-ECHO) on this port; None: no DICOM node
    dimse_host: str = "127.0.0.1"
    ae_title: str = "RADSIGHT"
    dimse_allowed: tuple[str, ...] = ()  # callers: "AE", "@address" or "AE@address"; empty: any
    dimse_destination: str | None = None  # "AE@host:port": results (SR, SEG, SC) are sent there with C-STORE
    db: str | None = None  # postgresql://... : a job store shared by replicas (data_dir shared too); None: SQLite
    lease_seconds: float = 30.0  # with PostgreSQL: a study whose worker stops renewing this long is claimed again
    gather_seconds: float = 0.0  # > 0: a study's instances arriving apart are analyzed together (service.intake)


@dataclass
class Service:
    settings: Settings
    store: object  # service.db.StudyStore or service.pg.PostgresStudyStore
    intake: Intake
    predictor: object  # pipeline.predictor.Predictor
    access: Access
    deferred: Deferred  # images made when first asked
    outcomes: Outcomes = field(default_factory=Outcomes)  # clients waiting for a study's outcome
    outboxes: list = field(default_factory=list)  # service.outbox.Outbox: where results wait to be delivered

    async def read_limited(self, stream) -> bytes:
        """A request body, refused with 413 past the upload limit."""
        limit, chunks, size = self.settings.max_upload_bytes, [], 0
        async for chunk in stream:
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"upload larger than {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    def receive(self, data: bytes, filename: str) -> Received:
        if not data:
            raise HTTPException(400, "empty upload")
        try:
            return self.intake.receive(data, filename)
        except InputError as exc:
            raise HTTPException(422, f"cannot be analyzed: {exc.reason}") from exc

    def queue(self, parts: list[Received], origin: str, force: bool = False) -> str:
        try:
            return self.intake.queue_or_discard(parts, origin, force)
        except InputError as exc:
            raise HTTPException(422, f"cannot be analyzed: {exc.reason}") from exc

    def known(self, study_id: str):
        study = self.store.get(study_id)
        if study is None:
            raise HTTPException(404, "no such study")
        return study


def service_options(settings: Settings) -> PredictorOptions:
    """What the service's predictor is built with and each analysis asks: the viewer switches between the
    torch-free methods' maps; results always carry DICOM for DICOM input; the computed views and overlay of other
    input are made when first asked for (``service.deferred``)."""
    alternates = tuple(dict.fromkeys((*settings.predictor.alternates, *TORCH_FREE)))
    return replace(settings.predictor, alternates=alternates, dicom_out=True, deferred_images=True,
                   threads=threads_per_worker(settings.workers))
