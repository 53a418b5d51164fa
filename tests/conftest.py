"""Fixtures built in code: synthetic radiographs, DICOM files, and a tiny random-weight model."""
from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    generate_uid,
)

SHARED_DATA = Path(os.environ.get("RADSIGHT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def chest_phantom(rows: int = 320, cols: int = 288, seed: int = 0) -> np.ndarray:
    """A chest-like float image in [0, 1] (MONOCHROME2): dark lungs crossed by ribs, a bright mediastinum and heart,
    soft edges, dark air beside the body; real lung models find its lung fields."""
    from scipy import ndimage
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    y, x = yy / rows, xx / cols
    img = 0.75 - 0.15 * y
    lungs = sum((((x - cx) / 0.17) ** 2 + ((y - 0.5) / 0.33) ** 2 < 1).astype(np.float64) for cx in (0.3, 0.7))
    lungs = ndimage.gaussian_filter(lungs, rows / 60)
    img = img * (1 - lungs) + (0.25 + 0.1 * y) * lungs
    heart = ndimage.gaussian_filter((((x - 0.55) / 0.12) ** 2 + ((y - 0.65) / 0.12) ** 2 < 1).astype(np.float64),
                                    rows / 80)
    img = img * (1 - heart) + 0.7 * heart
    ribs = 0.06 * (np.sin(2 * np.pi * (9 * y + 0.8 * np.abs(x - 0.5))) > 0.6) * lungs
    img = (img + ndimage.gaussian_filter(ribs, 2)) * ndimage.gaussian_filter((np.abs(x - 0.5) < 0.46) * 1.0, 3)
    img += 0.02 * np.random.default_rng(seed).standard_normal(img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def make_dicom(path: Path, pixels: np.ndarray | None = None, *, bits: int = 12, photometric: str = "MONOCHROME2",
               modality: str = "DX", view: str | None = "PA", body_part: str | None = "CHEST",
               window: tuple[float, float] | None = None, voi_lut: bool = False,
               rescale: tuple[float, float] | None = None, spacing: tuple[float, float] | None = (0.2, 0.2),
               transfer_syntax=ExplicitVRLittleEndian) -> Path:
    """A single-frame DX DICOM of ``pixels`` (MONOCHROME2 sense, [0, 1]) quantised to ``bits``."""
    pixels = chest_phantom() if pixels is None else pixels
    stored = np.round(pixels * (2 ** bits - 1)).astype(np.uint16 if bits > 8 else np.uint8)
    if photometric == "MONOCHROME1":
        stored = (2 ** bits - 1 - stored).astype(stored.dtype)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID = "Test^Patient", "SECRET-ID-123"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.StudyID = "20260101", "120000", "ACC1", "1"
    ds.SeriesNumber, ds.InstanceNumber, ds.PatientBirthDate, ds.PatientSex = 1, 1, "", ""
    ds.ReferringPhysicianName, ds.Manufacturer = "", "test"
    ds.Modality = modality
    if view:
        ds.ViewPosition = view
    if body_part:
        ds.BodyPartExamined = body_part
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 16 if bits > 8 else 8
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, 0
    if spacing is not None:
        ds.PixelSpacing = list(spacing)
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if rescale:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if voi_lut:  # an identity-like 12-bit table over the full stored range
        item = pydicom.Dataset()
        item.LUTDescriptor = [2 ** bits, 0, 12]
        item.add_new("LUTData", "US", [int(v) for v in np.linspace(0, 4095, 2 ** bits).round()])
        ds.VOILUTSequence = [item]
    ds.PixelData = stored.tobytes()
    if transfer_syntax == DeflatedExplicitVRLittleEndian:  # the whole dataset deflated as it is saved
        ds.file_meta.TransferSyntaxUID = transfer_syntax
    elif transfer_syntax != ExplicitVRLittleEndian:
        ds.compress(transfer_syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def lateral_phantom(rows: int = 320, cols: int = 288, seed: int = 0) -> np.ndarray:
    """A lateral-like image: one lung field in front of a bright spine, the heart in front and below."""
    yy, xx = np.mgrid[0:rows, 0:cols].astype(np.float64)
    y, x = yy / rows, xx / cols
    img = 0.7 - 0.1 * y
    img = np.where(((x - 0.5) / 0.3) ** 2 + ((y - 0.45) / 0.35) ** 2 < 1, 0.3, img)
    img = np.where(np.abs(x - 0.8) < 0.06, 0.85, img)  # spine, posterior
    img = np.where(((x - 0.35) / 0.15) ** 2 + ((y - 0.7) / 0.12) ** 2 < 1, 0.65, img)
    img += 0.02 * np.random.default_rng(seed).standard_normal(img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def study_dicom(path: Path, pixels: np.ndarray, uid: str, view: str | None, orientation=None) -> Path:
    """A DX DICOM (``make_dicom``) in the study ``uid``, with a PatientOrientation when given."""
    make_dicom(path, pixels, view=view)
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID = uid
    if orientation:
        ds.PatientOrientation = orientation
    ds.save_as(path)
    return path


@pytest.fixture
def phantom() -> np.ndarray:
    return chest_phantom()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random-weight densenet-small exported to a model folder; Effusion's threshold is 0 (always positive)."""
    torch = pytest.importorskip("torch", reason="model fixtures need radsight[train]")
    from radsight.core import FINDINGS
    from radsight.inputs.preprocess import InputSpec
    from radsight.models.config import TRIAGE_LABEL, ModelConfig
    from radsight.models.store import sha256_file
    from radsight.train.export import CLASSIFIER_OUTPUTS, export_onnx
    from radsight.train.registry import build

    torch.manual_seed(0)
    labels = [*FINDINGS, TRIAGE_LABEL]
    net = build("densenet-small", num_classes=len(labels), growth_rate=4, block_config=(1, 1, 1, 1), num_init_features=8)
    out = tmp_path_factory.mktemp("tiny_model")
    spec = InputSpec(size=64)
    export_onnx(net, spec, out / "model.onnx")
    thresholds = {label: 0.999 for label in labels} | {"Effusion": 0.0, TRIAGE_LABEL: 0.5}
    ModelConfig(name="tiny-test", version="0.0.1", architecture="densenet-small", labels=labels, input=spec,
                thresholds=thresholds, sha256=sha256_file(out / "model.onnx"), license="test",
                outputs=CLASSIFIER_OUTPUTS).save(out)
    return out


@pytest.fixture(scope="session")
def twoview_model(tmp_path_factory):
    """A random-weight two-view model folder; Effusion is always positive (threshold 0)."""
    torch = pytest.importorskip("torch", reason="model fixtures need radsight[train]")
    from radsight.core import FINDINGS
    from radsight.inputs.preprocess import InputSpec
    from radsight.models.config import TRIAGE_LABEL, ModelConfig
    from radsight.models.store import sha256_file
    from radsight.train.export import CLASSIFIER_OUTPUTS, export_onnx
    from radsight.train.registry import build
    out = tmp_path_factory.mktemp("twoview")
    spec, labels = InputSpec(size=64), [*FINDINGS, TRIAGE_LABEL]
    torch.manual_seed(0)
    net = build("densenet-small-twoview", num_classes=len(labels), growth_rate=4, block_config=(1, 1, 1, 1),
                num_init_features=8).eval()
    export_onnx(net, spec, out / "model.onnx")
    ModelConfig(name="tiny-twoview", version="0.0.1", architecture="densenet-small-twoview", labels=labels,
                input=spec, thresholds={label: 0.999 for label in labels} | {"Effusion": 0.0},
                sha256=sha256_file(out / "model.onnx"), license="test", outputs=CLASSIFIER_OUTPUTS,
                views=["frontal", "lateral"]).save(out)
    return out


def image_set(root: Path, films) -> Path:
    """A manifest folder: ``films`` yields (name, pixels in [0, 1], patient id, split, 14 labels, "" unknown);
    written as 8-bit PNGs under ``root/images`` and ``root/manifest.csv``."""
    import csv

    from PIL import Image

    from radsight.core import FINDINGS
    (root / "images").mkdir(parents=True, exist_ok=True)
    with open(root / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "patient_id", "split", *FINDINGS])
        for name, pixels, patient, split, labels in films:
            Image.fromarray(np.round(pixels * 255).astype(np.uint8)).save(root / "images" / name)
            writer.writerow([name, patient, split, *labels])
    return root


@pytest.fixture(scope="session")
def tiny_set(tmp_path_factory):
    """24 phantoms of 12 patients (18 train, 6 val) with random labels, one of them unknown."""
    from radsight.core import FINDINGS
    rng = np.random.default_rng(0)

    def films():
        for i in range(24):
            labels = [int(v) for v in rng.random(len(FINDINGS)) < 0.3]
            labels[1] = "" if i == 3 else labels[1]  # an unknown label
            yield f"{i:03d}.png", chest_phantom(64, 64, seed=i), f"p{i // 2}", "val" if i >= 18 else "train", labels
    return image_set(tmp_path_factory.mktemp("set"), films())


def torchrun_train(processes: int, *args: str) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node PROCESSES -m radsight train ARGS`` beside this Python."""
    import shutil
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([torchrun, "--standalone", "--nproc-per-node", str(processes), "-m", "radsight", "train",
                           *args], capture_output=True, text=True, timeout=600, env=env)


def tampered_copy(model: Path, name: str, dest: Path) -> Path:
    """A copy of a model folder with one byte appended to its file ``name``."""
    import shutil
    shutil.copytree(model, dest)
    with open(dest / name, "ab") as fh:
        fh.write(b"\0")
    return dest


def fuzz_originals(root: Path, rows: int = 96, cols: int = 80) -> dict[str, bytes]:
    """Small valid files in each encoding the readers support: the seeds of mutation fuzzing."""
    import io

    from PIL import Image
    from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless
    pixels = chest_phantom(rows, cols)
    out = {f"{name}.dcm": make_dicom(root / f"{name}.dcm", pixels, transfer_syntax=ts).read_bytes()
           for name, ts in [("explicit", ExplicitVRLittleEndian), ("j2k", JPEG2000Lossless), ("rle", RLELossless),
                            ("jls", JPEGLSLossless)]}
    out["mono1.dcm"] = make_dicom(root / "m1.dcm", pixels, photometric="MONOCHROME1", window=(2000, 3000)).read_bytes()
    for name, array, fmt in [("a8.png", np.round(pixels * 255).astype(np.uint8), "PNG"),
                             ("a16.png", np.round(pixels * 4095).astype(np.uint16), "PNG"),
                             ("a.jpg", np.round(pixels * 255).astype(np.uint8), "JPEG")]:
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, format=fmt)
        out[name] = buffer.getvalue()
    return out


def server_unavailable(reason: str) -> None:
    """A test server (Orthanc, Chromium) could not be had: the test skips, but under CI=true it fails."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"needs the shared data set at {path} (not present on this machine)")
    return path


def corpus_file(name: str) -> str:
    """A file of pydicom's test corpus (the pydicom-data package)."""
    data = pytest.importorskip("pydicom.data", reason="needs pydicom-data")
    path = data.get_testdata_file(name)
    if path is None:
        pytest.skip(f"pydicom-data lacks {name}")
    return path


@pytest.fixture(scope="session")
def tiny_bone_model(tmp_path_factory) -> Path:
    """A random-weight bone generator exported as a bone suppression model folder (a small, visible bone image)."""
    torch = pytest.importorskip("torch", reason="model fixtures need radsight[train]")
    from dataclasses import asdict

    from radsight.inputs.preprocess import InputSpec
    from radsight.models.config import BONE_SUPPRESSION
    from radsight.train.export import export_checkpoint
    from radsight.train.registry import build, checkpoint_fields
    root = tmp_path_factory.mktemp("bone")
    torch.manual_seed(0)
    net = build("bone-generator", base=4, depth=2)
    torch.nn.init.normal_(net.head.weight, 0, 0.01)  # not the identity: the view must differ from the radiograph
    torch.save({"model": net.state_dict(), **checkpoint_fields(net), "task": BONE_SUPPRESSION, "labels": ["bone"],
                "input": asdict(InputSpec(size=64))}, root / "bone.pt")
    return export_checkpoint(root / "bone.pt", root / "tiny-bone", "tiny-bone", "0", "test", "random").directory


def bone_pair(size: int = 64, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic (radiograph, soft tissue) pair in [0, 1]: a smooth soft-tissue field, and the same field with
    bright curved rib-like bands inside the lungs added (the bone signal, a few grey levels to 0.08)."""
    rng = np.random.default_rng(seed)
    soft = chest_phantom(size, size, seed=seed).astype(np.float64)
    yy, xx = np.mgrid[0:size, 0:size] / size
    lungs = np.zeros((size, size), bool)
    for cx in (0.3, 0.7):
        lungs |= ((xx - cx) / 0.17) ** 2 + ((yy - 0.5) / 0.33) ** 2 < 1
    phase, spacing = rng.uniform(0, 1), rng.uniform(0.09, 0.12)
    curve = yy + 0.15 * (xx - 0.5) ** 2  # ribs bow downwards towards the sides
    ribs = np.clip(np.cos(2 * np.pi * (curve / spacing + phase)) - 0.3, 0, None) / 0.7
    bone = rng.uniform(0.05, 0.08) * ribs * lungs
    return np.clip(soft + bone, 0, 1).astype(np.float32), soft.astype(np.float32)


def free_port() -> int:
    """A loopback port nobody listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def served(app, port: int | None = None):
    """The ASGI ``app`` served by uvicorn on loopback in a thread; yields its URL."""
    import uvicorn
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=20)


def start_serve(data_dir: Path, log_path: Path, *args: str, token: str = "t") -> tuple[subprocess.Popen, str]:
    """A ``radsight serve`` process on a free loopback port with ``args``; returns it and its URL once it answers."""
    import httpx
    port = free_port()
    with log_path.open("ab") as log:
        server = subprocess.Popen([sys.executable, "-m", "radsight", "serve", "--data-dir", str(data_dir),
                                   "--port", str(port), "--token", token, "--allow-ood", *args],
                                  stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        assert server.poll() is None, f"server exited: {log_path.read_text()[-2000:]}"
        try:
            httpx.get(url + "/api/worklist", timeout=1)
            return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise AssertionError(f"server did not start: {log_path.read_text()[-2000:]}")


def stow_body(datasets: list[pydicom.Dataset], boundary: str = "radsight-test-boundary") -> tuple[bytes, str]:
    """A multipart/related STOW-RS request body and its content type."""
    parts = []
    for ds in datasets:
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        parts.append(b"--" + boundary.encode() + b"\r\nContent-Type: application/dicom\r\n\r\n" + buffer.getvalue()
                     + b"\r\n")
    body = b"".join(parts) + b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'
