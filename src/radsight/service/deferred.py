"""Images made when first asked: for input whose results go to no PACS (PNG, JPEG), the service names a study's
computed views (soft tissue, bone) and its overlay in the results without making them, for the viewer never shows
the overlay and shows the views only when a reader asks. The first request for one makes it from the upload:
both views by the bone model the document names; the overlay by predicting again (the same models, the same
numbers) and drawing it. DICOM input gets them all with its analysis: its DICOM results carry them."""
from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path

from radsight.core import InputError
from radsight.io import load_image
from radsight.results.files import write_png, write_views
from radsight.results.render import render_overlay
from radsight.service.intake import upload_files
from radsight.service.worker import results_dir

STEM = "study"  # the writer's stem in the service


class Deferred:
    """``predictor``/``options``: the service's; ``release``: hands the bone model's working memory back after
    its run (it needs more than the rest)."""

    def __init__(self, data_dir: Path, predictor, options, release: Callable[[], None] = lambda: None):
        self.data_dir, self.predictor, self.options, self.release = data_dir, predictor, options, release
        self._lock = threading.Lock()  # one run for a study's deferred images, however many ask at once

    def make(self, study_id: str, name: str) -> bool:
        """Make ``name`` when the study's document names it as a deferred image not made yet; whether ``name`` is
        there now. False for a name the document does not defer, for computed views the document says another
        bone model made (they are no longer made here), and for an upload that cannot be read."""
        out = results_dir(self.data_dir, study_id)
        document = _document(out / f"{STEM}.json")
        views = _views(document)
        bone = self.predictor.bone
        if name in views:
            if bone is None or views[name] != (bone.cfg.name, bone.cfg.version):
                return False
        elif name != document.get("overlay") or "views" not in document or "dicom_results" in document:
            return False  # only a single image's overlay without DICOM results is deferred
        with self._lock:
            if (out / name).is_file():
                return True
            try:
                image = load_image(upload_files(self.data_dir, study_id)[0])
                if name in views:
                    made = bone.views(image)
                    write_views({"soft_tissue": made.soft_tissue, "bone": made.bone}, out, STEM)
                else:
                    write_png(render_overlay(image, self.predictor.predict(image, self.options.heatmaps_for)),
                              out / name)
            except (InputError, OSError):
                return False
            finally:
                if name in views:
                    self.release()
        return (out / name).is_file()


def _document(path: Path) -> dict:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def _views(document: dict) -> dict[str, tuple[str, str]]:
    """The computed views' files a result document names, with the model that makes them."""
    return {v["file"]: (v["model"]["name"], v["model"]["version"]) for v in document.get("views", [])
            if isinstance(v, dict) and v.get("file") and v.get("model")}
