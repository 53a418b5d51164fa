"""What comes in, checked and queued: one radiograph, or the instances of one study analyzed together.

Every door (the upload API, STOW-RS, the DICOM node, the Orthanc poller) uses the same reader and checks as
analysis does. A file is first *received* (written under ``incoming/`` and read); the received files of one study
are then *queued* as one analysis: one file as ``uploads/<id>``, several as the folder ``uploads/<id>/`` (``1.dcm``,
``2.dcm``...), moved there whole, so a worker never sees half a study.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from radsight.core import Radiograph, ViewCall
from radsight.heads.view import LATERAL
from radsight.io import load_image
from radsight.pipeline.recent import Recent


@dataclass
class Received:
    """A file that was read: where it waits, the radiograph, and the name it came with."""

    path: Path
    image: Radiograph
    name: str


class Decoded(Recent):
    """Radiographs read at intake, by file identity (which the renames that queue a file keep), for the worker
    that analyzes them: an upload is decoded once, and what its check made for that object is reused."""

    def keep(self, path: Path, image: Radiograph) -> None:
        self.put(file_identity(path), image)

    def read(self, path: Path) -> Radiograph:
        """The radiograph of ``path`` (kept from intake, else read now), named by ``path``."""
        try:
            image = self.take(file_identity(path))
        except OSError:
            image = None
        if image is None:
            return load_image(path)
        image.source = str(path)
        return image


def file_identity(path: Path) -> tuple[int, int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns


def upload_path(data_dir: Path, job_id: str) -> Path:
    return data_dir / "uploads" / job_id


def upload_files(data_dir: Path, job_id: str) -> list[Path]:
    """A queued analysis' files: the one file, or the instances of its study in the order they came (earlier
    instances of a grown study, ``0-N.dcm``, first)."""
    path = upload_path(data_dir, job_id)
    if path.is_dir():
        return sorted(path.iterdir(), key=_arrival)
    return [path]


def _arrival(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in path.stem.split("-") if n.isdigit())


def by_study(parts: list[Received]) -> list[list[Received]]:
    """The parts grouped by StudyInstanceUID, in the order each study is first met; a part without one (PNG,
    JPEG, a DICOM without the element) is a study of its own."""
    groups: dict[str, list[Received]] = {}
    for part in parts:
        groups.setdefault(part.image.study_uid or f"part:{id(part)}", []).append(part)
    return list(groups.values())


class Intake:
    """``predictor``: the service's ``pipeline.Predictor``; ``store``: its job store; ``notify`` wakes the
    workers; ``handover`` (``service.handover.Handover``, for worker processes) is given what was read and checked
    of each analysis queued whole (not gathered), before the study enters the store. With
    ``allow_ood`` the out-of-distribution gate lets everything through (results still say).

    ``gather_seconds`` > 0: DICOM instances of one study that arrive apart (separate requests or associations, as
    many modalities send them) are analyzed together: the first starts an analysis that waits, each later one joins
    it and restarts the wait, and the analysis runs once none has come for ``gather_seconds``. An instance that
    comes after its study's analysis started starts a new one of the grown study (the earlier instances with it).
    Each instance is then screened as it comes (:meth:`screen`) and the study as a whole judged when it runs (a
    lateral alone is recorded as failed, with its reason)."""

    def __init__(self, data_dir: Path, store, predictor, allow_ood: bool = False,
                 notify: Callable[[], None] = lambda: None, gather_seconds: float = 0.0,
                 decoded: Decoded | None = None, handover=None):
        self.data_dir, self.store, self.predictor, self.handover = data_dir, store, predictor, handover
        self.decoded = decoded if decoded is not None else Decoded()
        self.allow_ood, self.notify, self.gather_seconds = allow_ood, notify, gather_seconds
        self._gathering = threading.Lock()  # one process never starts two analyses of one study
        # one upload checked at a time (its model runs use every core): under a burst, the others wait their turn
        # instead of holding one set of model buffers each
        self._checking = threading.Lock()
        self.incoming = data_dir / "incoming"
        self.incoming.mkdir(parents=True, exist_ok=True)

    def receive(self, data: bytes, name: str, folder: Path | None = None) -> Received:
        """Write ``data`` under ``folder`` (default ``incoming/``) and read it; :class:`InputError` (the file
        removed) for what cannot be analyzed."""
        folder = folder or self.incoming
        fd, tmp = tempfile.mkstemp(dir=folder, suffix=".part")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            image = load_image(Path(tmp))
        except BaseException:
            os.unlink(tmp)
            raise
        self.decoded.keep(Path(tmp), image)
        return Received(Path(tmp), image, name)

    def screen(self, part: Received) -> None:
        """The check one instance gets before its study is complete: a view that is not a lateral goes through the
        out-of-distribution gate (laterals are judged with their study)."""
        with self._checking:
            call = self.predictor.view_of(part.image)
            if not self.allow_ood and not (isinstance(call, ViewCall) and call.view == LATERAL):
                self.predictor.admit(part.image)

    def queue(self, parts: list[Received], origin: str, orthanc_id: str | None = None,
              screened: bool = False, force: bool = False) -> str | None:
        """Queue the parts of one study as one analysis; its id, or None when ``orthanc_id`` is already known (the
        parts' files are then removed). :class:`InputError` when the study cannot be analyzed (one lateral alone,
        no frontal view, a frontal the gate refuses); on any error the parts' files stay where they were. When
        gathering (DICOM parts of one study, not from Orthanc), the parts are screened one by one and join their
        study's waiting analysis instead. ``screened``: each part was screened as it came (the DICOM node), so the
        out-of-distribution gate is not run on it again.

        DICOM instances analyzed before, exactly these and by this model version, are not analyzed again: the
        earlier analysis's id is returned and the parts' files removed, unless ``force``. A new model version, or
        the study with an instance more, is analyzed again."""
        uid = parts[0].image.study_uid
        if self.gather_seconds > 0 and orthanc_id is None and uid and all(p.image.study_uid == uid for p in parts):
            if not screened:
                for part in parts:
                    self.screen(part)
            return self._gather(parts, origin, uid)
        instances, model = _instances(parts), f"{self.predictor.cfg.name}@{self.predictor.cfg.version}"
        earlier = self.store.analysis_of(instances, model) if instances and not force else None
        if earlier is not None:
            self.discard(parts)
            return earlier
        self._admit(parts, gate=not (self.allow_ood or screened))
        name = parts[0].name if len(parts) == 1 else f"{parts[0].name} (+{len(parts) - 1})"
        job_id = self._enter(self._stage(parts), parts, self.handover,
                             lambda study_id: self.store.add(name, origin, orthanc_id, study_id=study_id))
        if job_id is None:
            return None
        if instances:
            self.store.remember(instances, model, job_id)
        self.notify()
        return job_id

    def _enter(self, staged: Path, parts: list[Received], handover, add: Callable[[str], str | None]) -> str | None:
        """A new study: its staged files moved to its place (and what was read of them given to ``handover``),
        then the study added to the store (``add(study_id)``), so no worker claims a study whose files are not
        there. Its id; None when the store does not take it (its files removed). On an error the files go back to
        where they were received."""
        job_id = uuid.uuid4().hex
        placed = upload_path(self.data_dir, job_id)
        os.replace(staged, placed)
        if handover is not None:
            handover.put(job_id)
        try:
            added = add(job_id)
        except BaseException:
            if handover is not None:
                handover.drop(job_id)
            os.replace(placed, staged)
            self._unstage(staged, parts)
            raise
        if added is None:
            if handover is not None:
                handover.drop(job_id)
            _remove(placed)
        return job_id if added is not None else None

    def _gather(self, parts: list[Received], origin: str, uid: str) -> str:
        """Join the analysis of study ``uid`` still waiting for instances, or start one; its id."""
        with self._gathering:
            ready = time.time() + self.gather_seconds
            job_id = self.store.join(uid, ready)  # the wait restarts now: no worker takes it while files move
            if job_id is not None:
                folder = upload_path(self.data_dir, job_id)
                for i, part in enumerate(parts):  # named by arrival, after the first instances (1.dcm, 2.dcm...)
                    os.replace(part.path, folder / f"{time.time_ns()}{i:04d}.dcm")
                return job_id
            earlier = self.store.latest(uid)
            staged = self._stage(parts, folder=True, after=upload_files(self.data_dir, earlier) if earlier else [])
            return self._enter(staged, parts, None, lambda study_id: self.store.add(
                parts[0].name, origin, gather=(uid, ready), study_id=study_id))

    def queue_or_discard(self, parts: list[Received], origin: str, force: bool = False) -> str | None:
        """:meth:`queue`, the parts' files removed when it fails: for doors that answer the sender with the error."""
        try:
            return self.queue(parts, origin, force=force)
        finally:
            self.discard(parts)

    def _admit(self, parts: list[Received], gate: bool) -> None:
        images = [p.image for p in parts]
        with self._checking:
            if len(images) == 1:
                self.predictor.readable_alone(images[0])
                if gate:
                    self.predictor.admit(images[0])
            else:
                self.predictor.admit_study(images, images[0].study_uid or parts[0].name, gate=gate)

    def refuse(self, parts: list[Received], origin: str, reason: str, orthanc_id: str | None = None) -> None:
        """Record a study that arrived but cannot be analyzed as a failed job, so the worklist shows why (for doors
        whose sender was already told the instances were stored)."""
        self.discard(parts)
        self.store.add(parts[0].name, origin, orthanc_id, error=reason)

    def _stage(self, parts: list[Received], folder: bool = False, after: list[Path] = ()) -> Path:
        """One file as it is (unless ``folder``); several in a new folder as ``1.dcm``, ``2.dcm``...: ready to move
        in one step. ``after``: earlier instances of the study, copied in first (``0-1.dcm``...)."""
        uploads = self.data_dir / "uploads"
        uploads.mkdir(parents=True, exist_ok=True)
        staged = uploads / f".{uuid.uuid4().hex}.tmp"
        if len(parts) == 1 and not folder:
            os.replace(parts[0].path, staged)
            return staged
        staged.mkdir()
        for i, path in enumerate(p for p in after if p.is_file()):
            shutil.copyfile(path, staged / f"0-{i + 1}.dcm")
        for i, part in enumerate(parts):
            os.replace(part.path, staged / f"{i + 1}.dcm")
        return staged

    @staticmethod
    def _unstage(staged: Path, parts: list[Received]) -> None:
        if not staged.is_dir():
            os.replace(staged, parts[0].path)
            return
        for i, part in enumerate(parts):
            os.replace(staged / f"{i + 1}.dcm", part.path)
        shutil.rmtree(staged)

    def sweep(self, older_than: float = 3600.0) -> int:
        """Remove what requests cut short left behind (a received file never queued, a folder never moved), once
        older than ``older_than`` seconds (replicas sharing the data folder may still be writing newer ones);
        how many were removed, with readings handed over to worker processes that no worker took (``service.handover``:
        a server stopped between handing one over and queuing its study). The DICOM node's association folders are
        its own."""
        now, removed = time.time(), 0
        for path in [*self.incoming.glob("*.part"), *(self.data_dir / "uploads").glob(".*.tmp"),
                     *(self.data_dir / "handover").glob("*.p*")]:
            if now - path.stat().st_mtime > older_than:
                _remove(path)
                removed += 1
        return removed

    def discard(self, parts: list[Received]) -> None:
        """Remove the parts' files (those still where they were received) and forget what was read of them."""
        for part in parts:
            try:
                self.decoded.take(file_identity(part.path))
            except OSError:  # queued: moved away, the worker takes it over
                continue
            part.path.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _instances(parts: list[Received]) -> str | None:
    """A digest of the parts' SOP Instance UIDs (order aside); None when one has none (a PNG or JPEG)."""
    uids = [p.image.instance_uid for p in parts]
    if not all(uids):
        return None
    return hashlib.sha256("\n".join(sorted(uids)).encode()).hexdigest()
