"""Computed views made when first asked: the service names a study's soft-tissue and bone views in its results
without running the bone model (for input whose results go to no PACS; DICOM input gets them with its analysis),
and the viewer's first request for one makes both, from the upload, by the model the document names."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from radsight.core import InputError
from radsight.heads.bone import BoneModel
from radsight.io import load_image
from radsight.results.files import write_views
from radsight.service.intake import upload_files
from radsight.service.worker import results_dir

STEM = "study"  # the writer's stem in the service


class DeferredViews:
    def __init__(self, data_dir: Path, bone: BoneModel | None, release: Callable[[], None] = lambda: None):
        """``release``: hands the bone model's working memory back after each run (it needs more than the rest)."""
        self.data_dir, self.bone, self.release = data_dir, bone, release
        self._lock = threading.Lock()  # one bone model run for a study's views, however many ask at once

    def make(self, study_id: str, name: str) -> bool:
        """Write the study's computed views when ``name`` is one its document names and has not been made yet;
        whether ``name`` is there now. False when the document names another bone model than this service's (its
        views are no longer made here) or the upload cannot be read."""
        out = results_dir(self.data_dir, study_id)
        named = self._named(out / f"{STEM}.json")
        if self.bone is None or name not in named or named[name] != (self.bone.cfg.name, self.bone.cfg.version):
            return False
        with self._lock:
            if (out / name).is_file():
                return True
            try:
                views = self.bone.views(load_image(upload_files(self.data_dir, study_id)[0]))
            except (InputError, OSError):
                return False
            finally:
                self.release()
            write_views({"soft_tissue": views.soft_tissue, "bone": views.bone}, out, STEM)
        return (out / name).is_file()

    @staticmethod
    def _named(document: Path) -> dict[str, tuple[str, str]]:
        """The computed views' files a result document names, with the model that makes them."""
        try:
            views = json.loads(document.read_text()).get("views", [])
        except (OSError, ValueError):
            return {}
        return {v["file"]: (v["model"]["name"], v["model"]["version"]) for v in views
                if isinstance(v, dict) and v.get("file") and v.get("model")}
