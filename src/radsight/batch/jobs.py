"""What a run analyzes, job by job: one image read alone, or the images of one study read together.

DICOM files are grouped by the StudyInstanceUID in their headers; every other file is a study of its own. Output
names (stems) are chosen from the whole list before anything runs, so every engine writes the same files.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pydicom

from radsight.core import LATERAL, ImageMeta
from radsight.heads.view import header_view
from radsight.io.dicom import view_elements
from radsight.io.library_warnings import quiet_libraries
from radsight.io.loader import looks_like_dicom

log = logging.getLogger(__name__)
HEADER_TAGS = ["StudyInstanceUID", "ViewPosition", "ViewCodeSequence", "PatientOrientation"]


@dataclass
class Job:
    """One analysis. ``name``: a study's StudyInstanceUID (or its first file's stem), an image's path; ``stem``:
    its output name; ``together``: the files are read as one study (one document with a ``views`` list), else
    the one file is read alone."""

    name: str
    paths: list[Path]
    stem: str = ""
    together: bool = False
    lateral_in_header: bool = False  # a header names a lateral view


def unique_stem(stem: str, used: set[str]) -> str:
    """``stem``, or ``stem-2``, ``stem-3``... when ``used`` has it; the name returned joins ``used``."""
    candidate, n = stem, 1
    while candidate in used:
        n += 1
        candidate = f"{stem}-{n}"
    used.add(candidate)
    return candidate


def image_jobs(paths: list[Path]) -> list[Job]:
    """Each file read alone, named by its stem, numbered when an earlier file has the same one (a file's name
    never depends on the files after it)."""
    used: set[str] = set()
    return [Job(str(path), [path], unique_stem(path.stem or path.name, used)) for path in paths]


def group_studies(paths: list[Path], one_study: bool = False) -> list[Job]:
    """DICOM files by the StudyInstanceUID in their headers (pixel data is not read here), in the order each study
    is first met; every other file, and a DICOM file without a StudyInstanceUID, a study of its own. With
    ``one_study``, the files given are one study, named by the StudyInstanceUID they share, else by the first
    file."""
    if one_study:
        headers = [_header(p) for p in paths]
        uids = {uid for uid, _ in headers}
        name = next(iter(uids)) if len(uids) == 1 and None not in uids else (paths[0].stem if paths else "")
        studies = {"": Job(name, list(paths), together=True,
                           lateral_in_header=any(lateral for _, lateral in headers))} if paths else {}
    else:
        studies = {}
        for path in paths:
            uid, lateral = _header(path)
            study = studies.setdefault(uid or f"file:{path}", Job(uid or (path.stem or path.name), [], together=True))
            study.paths.append(path)
            study.lateral_in_header |= lateral
    used: set[str] = set()
    for study in studies.values():
        study.stem = unique_stem(re.sub(r"[^A-Za-z0-9._-]", "_", study.name)[:128] or "study", used)
    return list(studies.values())


def _header(path: Path) -> tuple[str | None, bool]:
    """A DICOM file's StudyInstanceUID and whether its header names a lateral view; (None, False) for other files
    and for headers that cannot be read (the file's error comes when it is analyzed)."""
    try:
        with open(path, "rb") as fh:
            if not looks_like_dicom(fh.read(132)):
                return None, False
        with quiet_libraries(log):
            ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=HEADER_TAGS)
        lateral = header_view(ImageMeta(**view_elements(ds))).view == LATERAL
        return str(ds.get("StudyInstanceUID", "")).strip() or None, lateral
    except Exception:  # noqa: BLE001 - any parser failure: the file is analyzed (and refused) as it is later
        return None, False
