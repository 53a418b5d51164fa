"""DICOM radiographs: decode, modality LUT, VOI LUT or window, MONOCHROME1 inversion."""
from __future__ import annotations

import io
import logging
import zlib
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_file_meta_info
from pydicom.pixels import apply_modality_lut, apply_voi
from pydicom.uid import DeflatedExplicitVRLittleEndian

from radsight.core import ImageMeta, InputError, Radiograph
from radsight.io.library_warnings import quiet_libraries
from radsight.io.limits import MAX_PIXELS, affine_clip, check_contrast, check_geometry, normalise_range

RADIOGRAPHY_MODALITIES = {"CR", "DX"}
MAX_INFLATED_BYTES = 2 * MAX_PIXELS + (16 << 20)  # the largest 16-bit radiograph, and its header
CHEST_BODY_PARTS = {"", "CHEST", "THORAX", "LUNG", "PORTABLE CHEST"}
log = logging.getLogger(__name__)


def read_dicom(path: Path, force: bool = False) -> Radiograph:
    """Read a DICOM radiograph; pydicom's warnings about this file (redacted: they quote header values) join the
    error, or the debug log on success."""
    with quiet_libraries(log) as notes:
        try:
            return _read(path, force)
        except InputError as exc:
            error = exc
    if notes:
        raise InputError(error.source, f"{error.reason} [{'; '.join(notes)}]") from error.__cause__
    raise error


def _read(path: Path, force: bool) -> Radiograph:
    source = str(path)
    try:
        ds = _inflated(path, source) if not force and _deflated(path) else pydicom.dcmread(path, force=force)
    except InvalidDicomError as exc:
        raise InputError(source, f"not a valid DICOM file ({exc})") from exc
    except zlib.error as exc:
        raise InputError(source, f"deflated dataset cannot be inflated ({exc})") from exc
    except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:  # truncated or garbled header
        raise InputError(source, f"DICOM header cannot be parsed ({type(exc).__name__}: {exc})") from exc
    if force and "SOPClassUID" not in ds and "PixelData" not in ds:  # nothing of DICOM in it: one reason everywhere
        raise InputError(source, "not a DICOM, PNG or JPEG file")
    meta = _check_dataset(source, ds)
    check_geometry(source, int(ds.Rows), int(ds.Columns))
    try:
        raw = ds.pixel_array
    except Exception as exc:  # any decoder failure is a property of this file: report it, keep the batch going
        raise InputError(source, f"pixel data cannot be decoded ({meta.transfer_syntax}): {exc}") from exc
    pixels, meta.windowing = _to_display(raw, ds)
    if meta.photometric == "MONOCHROME1":
        np.subtract(1.0, pixels, out=pixels)  # a fresh array: invert in place, no second film-sized copy
    check_contrast(source, pixels)
    study = str(ds.get("StudyInstanceUID", "")).strip() or None
    instance = str(ds.get("SOPInstanceUID", "")).strip() or None
    del ds.PixelData  # the header is kept for the DICOM results; the pixels are in ``raw``
    return Radiograph(pixels=pixels, source=source, meta=meta, stored_values=raw, study_uid=study,
                      instance_uid=instance, header=ds)


def _deflated(path: Path) -> bool:
    """Whether the file's meta group names Deflated Explicit VR Little Endian (the rest of the file not read)."""
    try:
        return read_file_meta_info(path).get("TransferSyntaxUID") == DeflatedExplicitVRLittleEndian
    except Exception:  # noqa: BLE001 - a meta group pydicom cannot read: dcmread says why, with the file
        return False


def _inflated(path: Path, source: str) -> pydicom.Dataset:
    """A deflated dataset, inflated as a stream that stops at :data:`MAX_INFLATED_BYTES`: its Rows and Columns lie
    inside the deflated stream, so no size check can come before inflating, and a small file can inflate to
    gigabytes."""
    meta = read_file_meta_info(path)
    if "FileMetaInformationGroupLength" not in meta:
        raise InputError(source, "deflated DICOM without a File Meta Information Group Length")
    inflater, parts, size = zlib.decompressobj(-zlib.MAX_WBITS), [], 0
    with open(path, "rb") as fh:
        preamble = fh.read(128)
        fh.seek(132 + 12 + int(meta.FileMetaInformationGroupLength))  # preamble, DICM, the group length element
        while (chunk := fh.read(1 << 20)) or inflater.unconsumed_tail:
            parts.append(inflater.decompress(inflater.unconsumed_tail + chunk, MAX_INFLATED_BYTES + 1 - size))
            size += len(parts[-1])
            if size > MAX_INFLATED_BYTES:
                raise InputError(source, f"deflated dataset inflates past {MAX_INFLATED_BYTES:,} bytes (the largest "
                                         f"radiograph radsight reads)")
    dataset = read_dataset(io.BytesIO(b"".join(parts)), is_implicit_VR=False, is_little_endian=True)
    return pydicom.FileDataset(source, dataset, preamble=preamble, file_meta=meta, is_implicit_VR=False,
                               is_little_endian=True)


def _check_dataset(source: str, ds: pydicom.Dataset) -> ImageMeta:
    """Refuse what is not a single-frame grayscale frontal chest radiograph; collect metadata."""
    if "PixelData" not in ds:
        raise InputError(source, "DICOM has no pixel data (not an image)")
    for attr in ("Rows", "Columns", "BitsAllocated"):
        if attr not in ds:
            raise InputError(source, f"DICOM image lacks {attr}")
    if int(ds.BitsAllocated) not in (8, 16):  # with Rows, Columns and one frame: the decoded size, known up front
        raise InputError(source, f"{ds.BitsAllocated} bits allocated; a radiograph has 8 or 16")
    modality = str(ds.get("Modality", "")).upper() or None
    if modality is not None and modality not in RADIOGRAPHY_MODALITIES:
        raise InputError(source, f"modality {modality} is not a radiograph (expected CR or DX)")
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(ds.get("SamplesPerPixel", 1)) != 1 or photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise InputError(source, f"{photometric} colour image, not a grayscale radiograph")
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        raise InputError(source, f"multi-frame image ({ds.NumberOfFrames} frames); expected one radiograph")
    body_part = str(ds.get("BodyPartExamined", "")).upper().strip()
    if body_part not in CHEST_BODY_PARTS:
        raise InputError(source, f"body part examined is {body_part}, not chest")
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    return ImageMeta(
        modality=modality,
        photometric=photometric,
        bits_stored=int(ds.get("BitsStored", ds.BitsAllocated)),
        **view_elements(ds),
        body_part=body_part or None,
        pixel_spacing_mm=_pixel_spacing(ds),
        transfer_syntax=ts.name if ts is not None else None,
        stated_age_years=age_in_years(ds.get("PatientAge")),
        stated_sex=sex_of(ds.get("PatientSex")),
    )


def sex_of(value) -> str | None:
    """PatientSex as F or M; None when absent, O (other) or anything else."""
    text = str(value or "").strip().upper()
    return text if text in ("F", "M") else None


AGE_UNITS = {"D": 1 / 365.25, "W": 7 / 365.25, "M": 1 / 12, "Y": 1.0}


def age_in_years(value) -> float | None:
    """A DICOM Age String (``045Y``, ``018M``, ``003W``, ``002D``) in years; None when absent, and None with a
    warning (naming no value: it is patient data) when malformed."""
    text = str(value or "").strip().upper()
    if not text:
        return None
    if len(text) == 4 and text[:3].isdigit() and text[3] in AGE_UNITS:
        return int(text[:3]) * AGE_UNITS[text[3]]
    log.warning("PatientAge is not a DICOM age string (nnnD, nnnW, nnnM or nnnY); ignored")
    return None


def view_elements(ds: pydicom.Dataset) -> dict[str, str | None]:
    """The header elements that say the view, as :class:`ImageMeta` fields: ViewPosition, ViewCodeSequence's first
    code meaning and PatientOrientation (None when absent)."""
    items = ds.get("ViewCodeSequence") or []
    meaning = str(items[0].get("CodeMeaning", "")).strip() if len(items) else ""
    return {"view_position": str(ds.get("ViewPosition", "")).upper().strip() or None, "view_code": meaning or None,
            "patient_orientation": "\\".join(map(str, ds.get("PatientOrientation") or [])).upper() or None}


def _pixel_spacing(ds: pydicom.Dataset) -> tuple[float, float] | None:
    """PixelSpacing, else ImagerPixelSpacing; None when absent or not positive (e.g. '0\\0')."""
    for attr in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(attr)
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            continue
        if row > 0 and col > 0:
            return row, col
    return None


def _to_display(raw: np.ndarray, ds: pydicom.Dataset) -> tuple[np.ndarray, str]:
    """Stored values -> [0, 1] through the Modality LUT and the first VOI LUT or window."""
    values = apply_modality_lut(raw, ds)
    if ds.get("VOILUTSequence"):
        ints = np.rint(values).astype(np.int64)
        item = ds.VOILUTSequence[0]
        n_entries, first_mapped = int(item.LUTDescriptor[0]) or 65536, int(item.LUTDescriptor[1])
        table = apply_voi(np.arange(first_mapped, first_mapped + n_entries, dtype=np.int64), ds)
        return normalise_range(apply_voi(ints, ds), float(table.min()), float(table.max())), "VOI LUT"
    window = _window(ds)
    if window is not None:
        center, width, function = window
        return _apply_window(values, center, width, function), f"window {center:g}/{width:g} {function}"
    low, high = float(values.min()), float(values.max())
    return normalise_range(values, low, high), "min-max"


def _window(ds: pydicom.Dataset) -> tuple[float, float, str] | None:
    if "WindowCenter" not in ds or "WindowWidth" not in ds:
        return None
    first = lambda v: float(v[0]) if isinstance(v, (list, pydicom.multival.MultiValue)) else float(v)  # noqa: E731
    center, width = first(ds.WindowCenter), first(ds.WindowWidth)
    function = str(ds.get("VOILUTFunction", "LINEAR")).upper() or "LINEAR"
    if width <= 0 or (function == "LINEAR" and width < 1):
        return None
    return center, width, function


def _apply_window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """PS3.3 C.11.2.1.2 (LINEAR, LINEAR_EXACT) and C.11.2.1.3.1 (SIGMOID), output in [0, 1]."""
    if function == "SIGMOID":
        return (1.0 / (1.0 + np.exp(-4.0 * (values.astype(np.float64) - center) / width))).astype(np.float32)
    if function == "LINEAR":
        center, width = center - 0.5, width - 1.0
    if width <= 0:  # LINEAR with width 1 is a hard threshold
        return (values > center).astype(np.float32)
    return affine_clip(values, 1.0 / width, 0.5 - center / width)
