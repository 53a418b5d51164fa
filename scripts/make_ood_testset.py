"""Build the out-of-distribution test set: images that are not frontal chest radiographs, saved as PNG (so no
DICOM header can give them away) under ``images/`` with a manifest ``image,kind``.

Kinds: ct, mr, us, nm, extremity (frames of pydicom-data's files), photo and document (scikit-image's sample
images), drawing (ellipses, lines and text drawn here), noise, and lateral (the lateral chest views of
``multiview/``); the frontal views of the same studies are kept as ``frontal``, radiographs the gate must admit. Needs pydicom-data and scikit-image (both come with ``radsight[test]``).

    python scripts/make_ood_testset.py ../shared/data runs/ood-testset
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pydicom
from PIL import Image, ImageDraw
from pydicom.data import get_testdata_file

DICOM_FILES = {  # file -> kind; one file per distinct image (other encodings of the same pixels left out)
    "693_UNCR.dcm": "ct", "CT_small.dcm": "ct", "eCT_Supplemental.dcm": "ct", "explicit_VR-UN.dcm": "ct",
    "J2K_pixelrep_mismatch.dcm": "ct", "MR2_UNCR.dcm": "mr", "MR-SIEMENS-DICOM-WithOverlays.dcm": "mr",
    "examples_overlay.dcm": "mr", "emri_small.dcm": "mr", "MR_small.dcm": "mr", "US1_UNCR.dcm": "us",
    "JPGLosslessP14SV1_1s_1f_8b.dcm": "us", "OBXXXX1A.dcm": "us", "examples_palette.dcm": "us",
    "examples_rgb_color.dcm": "us", "examples_ybr_color.dcm": "us", "gdcm-US-ALOKA-16.dcm": "us",
    "JPEG2000_UNC.dcm": "nm", "RG3_UNCR.dcm": "extremity",
}
PHOTOS = ["astronaut", "camera", "chelsea", "coffee", "coins", "grass", "gravel", "horse", "hubble_deep_field",
          "moon", "rocket", "retina", "brick", "cell", "immunohistochemistry", "clock"]
DOCUMENTS = ["page", "text"]
MAX_FRAMES = 4


def grey8(frame: np.ndarray) -> np.ndarray:
    frame = frame.astype(np.float64)
    if frame.ndim == 3:
        frame = frame.mean(axis=2)
    low, high = np.percentile(frame, [0.5, 99.5])
    return np.round(np.clip((frame - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def dicom_frames(name: str) -> list[np.ndarray]:
    ds = pydicom.dcmread(get_testdata_file(name))
    pixels = ds.pixel_array
    if "PALETTE" in str(ds.PhotometricInterpretation):
        pixels = pydicom.pixels.apply_color_lut(pixels, ds)
    elif str(ds.PhotometricInterpretation).startswith("YBR"):
        pixels = pydicom.pixels.convert_color_space(pixels, ds.PhotometricInterpretation, "RGB")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        step = max(1, frames // MAX_FRAMES)
        return [grey8(pixels[i]) for i in range(0, frames, step)][:MAX_FRAMES]
    return [grey8(pixels)]


def drawings(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    out = []
    for _ in range(n):
        im = Image.new("L", (512, 512), int(rng.integers(0, 120)))
        draw = ImageDraw.Draw(im)
        for _ in range(int(rng.integers(2, 7))):
            x0, y0 = rng.integers(0, 400, 2)
            x1, y1 = x0 + rng.integers(40, 300), y0 + rng.integers(40, 300)
            shape = rng.integers(0, 3)
            fill = int(rng.integers(60, 256))
            if shape == 0:
                draw.ellipse([x0, y0, x1, y1], fill=fill)
            elif shape == 1:
                draw.rectangle([x0, y0, x1, y1], outline=fill, width=int(rng.integers(1, 8)))
            else:
                draw.line([x0, y0, x1, y1], fill=fill, width=int(rng.integers(1, 10)))
        draw.text((int(rng.integers(0, 400)), int(rng.integers(0, 480))), "R", fill=255)
        out.append(np.asarray(im))
    return out


def noise(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    out = []
    for i in range(n):
        if i % 3 == 0:
            out.append(rng.integers(0, 256, (512, 512), dtype=np.uint8))
        elif i % 3 == 1:
            out.append(np.clip(rng.normal(128, 40, (512, 512)), 0, 255).astype(np.uint8))
        else:  # smooth blobs: low-frequency noise
            small = rng.random((8, 8))
            out.append(np.asarray(Image.fromarray((small * 255).astype(np.uint8)).resize((512, 512), Image.BICUBIC)))
    return out


def main(data: Path, out: Path) -> None:
    from skimage import data as samples
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows: list[tuple[str, str]] = []

    def save(kind: str, array: np.ndarray, stem: str) -> None:
        name = f"{kind}-{stem}.png"
        Image.fromarray(array).save(out / "images" / name)
        rows.append((name, kind))

    for name, kind in DICOM_FILES.items():
        for i, frame in enumerate(dicom_frames(name)):
            save(kind, frame, f"{Path(name).stem}-{i}")
    for name in PHOTOS:
        save("photo", grey8(getattr(samples, name)()), name)
    for name in DOCUMENTS:
        save("document", grey8(getattr(samples, name)()), name)
    for i, im in enumerate(drawings(rng, 40)):
        save("drawing", im, str(i))
    for i, im in enumerate(noise(rng, 30)):
        save("noise", im, str(i))
    with open(data / "multiview" / "manifest.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            with Image.open(data / "multiview" / "images" / row["filename"]) as im:
                grey = np.asarray(im.convert("L"))
            save("lateral" if row["view"] == "L" else "frontal", grey, Path(row["filename"]).stem)
    with open(out / "manifest.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["image", "kind"])
        writer.writerows(rows)
    print(f"{len(rows)} images in {out}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
