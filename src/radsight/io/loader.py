"""Dispatch by content (not by file name) and expand folders."""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from radsight.core import InputError, Radiograph
from radsight.io.dicom import read_dicom
from radsight.io.limits import MAX_FILE_BYTES
from radsight.io.raster import read_raster

SUPPORTED_SUFFIXES = (".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg", "")
_PNG = b"\x89PNG\r\n\x1a\n"
_JPEG = b"\xff\xd8\xff"


def looks_like_dicom(head: bytes) -> bool:
    return len(head) >= 132 and head[128:132] == b"DICM"


def load_image(path: str | os.PathLike) -> Radiograph:
    """Read one file into a :class:`Radiograph`, or raise :class:`InputError`."""
    path = Path(path)
    source = str(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(132)
    except IsADirectoryError:
        raise InputError(source, "is a folder, not a file") from None
    except OSError as exc:
        raise InputError(source, f"cannot be read ({exc.strerror or exc})") from exc
    if size == 0:
        raise InputError(source, "empty file")
    if size > MAX_FILE_BYTES:
        raise InputError(source, f"file too large ({size:,} bytes; limit {MAX_FILE_BYTES:,})")
    try:
        if looks_like_dicom(head):
            return read_dicom(path)
        if head.startswith(_PNG) or head.startswith(_JPEG):
            return read_raster(path)
        if path.suffix.lower() in (".dcm", ".dicom", ".dic"):
            return read_dicom(path, force=True)  # DICOM without the Part 10 preamble
    except InputError:
        raise
    except BaseException as exc:  # a malformed file can make any parser or decoder fail, in any way
        if not file_fault(exc):
            raise
        raise InputError(source, f"cannot be read: the file is malformed ({type(exc).__name__}: {exc})") from exc
    raise InputError(source, "not a DICOM, PNG or JPEG file")


def file_fault(exc: BaseException) -> bool:
    """Whether an exception raised while parsing or decoding a file is the file's fault: every ``Exception``, and
    the panics of decoders written in Rust (``PanicException`` derives from ``BaseException``); not an interrupt."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files as given, and the files inside folders (recursively, sorted, hidden files skipped)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p).parts
                if f.is_file() and not any(part.startswith(".") for part in rel) \
                        and f.suffix.lower() in SUPPORTED_SUFFIXES:
                    out.append(f)
        else:
            out.append(p)
    return out
