"""What the intake read and checked of a queued upload, passed on disk to the worker process that analyzes it
(``service.worker_processes``): each file's radiograph and the upload check's work on it (the inputs with the
anatomy, the classifier's outputs), so an upload is decoded once and its classifier pass is not repeated.

One pickle a study under ``handover/``, written by the server (atomically, before the study enters the job store,
so its worker always finds it) and read once, then removed, by the worker process. The data folder is the
service's own: nothing else writes there."""
from __future__ import annotations

import logging
import os
import pickle
from pathlib import Path

from radsight.core import Radiograph
from radsight.io import load_image
from radsight.service.intake import Decoded, file_identity, upload_files

log = logging.getLogger("radsight.service")


class Handover:
    """``predictor``: the server's (what its check made is taken from it) or the worker process's (given to it);
    ``decoded``: the intake's radiographs (server side)."""

    def __init__(self, data_dir: Path, predictor, decoded: Decoded | None = None):
        self.folder, self.uploads = data_dir / "handover", data_dir / "uploads"
        self.predictor, self.decoded = predictor, decoded
        self._study, self._entries = None, {}

    def put(self, study_id: str) -> None:
        """Hand over what the intake kept of the study's files (server side). A file that cannot be written only
        costs the worker a second reading."""
        entries = {}
        for path in upload_files(self.uploads.parent, study_id):
            image = self.decoded.take(file_identity(path)) if self.decoded is not None else None
            if image is not None:
                entries[path.name] = (image, self.predictor.checked(image))
        if not entries:
            return
        self.folder.mkdir(exist_ok=True)
        target = self.folder / f"{study_id}.pkl"
        try:
            with open(target.with_suffix(".part"), "wb") as fh:
                pickle.dump(entries, fh, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(target.with_suffix(".part"), target)
        except OSError as exc:
            log.warning("study %s: intake's reading not handed over (%s); the worker reads it again", study_id, exc)
            target.with_suffix(".part").unlink(missing_ok=True)

    def drop(self, study_id: str) -> None:
        """Remove what was handed over for a study that did not enter the store (server side)."""
        (self.folder / f"{study_id}.pkl").unlink(missing_ok=True)

    def read(self, path: Path) -> Radiograph:
        """The radiograph of upload file ``path`` (handed over, else read now), named by ``path`` (worker side);
        the check's work on it goes to the predictor for the analysis that follows."""
        kept = self._study_entries(path).pop(path.name, None)
        if kept is None:
            return load_image(path)
        image, check = kept
        image.source = str(path)
        if check is not None:
            self.predictor.reuse_check(image, check)
        return image

    def _study_entries(self, path: Path) -> dict:
        study = path.name if path.parent == self.uploads else path.parent.name
        if study != self._study:
            self._study, self._entries = study, {}
            handed = self.folder / f"{study}.pkl"
            try:
                with open(handed, "rb") as fh:
                    self._entries = pickle.load(fh)
                handed.unlink()
            except FileNotFoundError:
                pass
            except Exception as exc:  # written by another radsight version, say: the worker reads the files again
                log.warning("study %s: handed-over reading unusable (%s); reading the files again", study, exc)
                handed.unlink(missing_ok=True)
        return self._entries
