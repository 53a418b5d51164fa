"""The normal/abnormal manifests of radsight-triage-256, from the shared data folder.

    python scripts/triage_manifests.py ../shared/data runs/triage [--naive]

writes, with image paths relative to the data folder (pass it as --images):
- ``train.csv``: the training films (split train) and the films that choose the checkpoint (split val: RSNA's val
  split alone, NIH films read by radiologists, the closest to the benchmark); the other val rows are ``holdout``;
- ``audit.csv``: every source's test split, with its ``source`` column, for ``radsight evaluate --shortcuts``;
- ``rsna_test.csv``: RSNA's test split alone, its opacity films boxed by radiologists (localization);
- with ``--naive``, ``train_naive.csv`` too: every source's train split pooled as published (one-class sources and
  all of COVID-QU-Ex's abnormal films included), the shortcut audit's "before" model.

Sources are balanced, not pooled as published: the public COVID sets took their normals and their patients from
different places, so a source that holds one class only (``crd_viral_pneumonia``, pediatric; ``gbseg``) would teach
the source, not the disease, and is kept out of training (the audit still reads it). Within
``covid_qu_ex_infseg`` as many abnormal films (COVID-19 and other infections, half each) as normal ones are taken.
The benchmark is never read.
"""
from __future__ import annotations

import csv
import hashlib
import sys
from pathlib import Path

FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
            "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia")
COLUMNS = ("image", "patient_id", "split", *FINDINGS, "abnormal", "source", "age", "sex", "view", "bboxes")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _row(image: str, patient: str, split: str, source: str, abnormal: int | None,
         findings: dict[str, str] | None = None, **extra: str) -> dict:
    """Normal films are negative for every finding; an abnormal film's unnamed findings are unknown (empty)."""
    named = findings if findings is not None else {f: "0" for f in FINDINGS} if abnormal == 0 else {}
    return {"image": image, "patient_id": patient, "split": split, **{f: named.get(f, "") for f in FINDINGS},
            "abnormal": "" if abnormal is None else str(abnormal), "source": source, **extra}


def _draw(key: str) -> int:
    return int(hashlib.sha1(f"radsight-triage-{key}".encode()).hexdigest()[:8], 16)


def rsna(data: Path) -> list[dict]:
    out = []
    for r in _rows(data / "rsna-pneumonia/manifest.csv"):
        boxes = ";".join(f"Lung Opacity:{b}" for b in r["boxes"].split(";") if b)
        out.append(_row(f"rsna-pneumonia/images/{r['image']}", f"rsna:{r['group']}", r["split"], "nih-rsna",
                        int(r["abnormal"]), age=r["age"], sex=r["sex"], view=r["view"], bboxes=boxes))
    return out


def train64(data: Path) -> list[dict]:
    out = []
    for r in _rows(data / "nih-cxr14/train64/manifest.csv"):
        labels = {f: r[f] for f in FINDINGS}
        split = "train" if r["split"] == "train" else "holdout"
        out.append(_row(f"nih-cxr14/train64/images/{r['image']}", f"nih:{r['patient_id']}", split, "nih-train64",
                        int(any(v == "1" for v in labels.values())), labels))
    return out


def jsrt(data: Path) -> list[dict]:
    out = []
    for r in _rows(data / "jsrt-scr/manifest.csv"):
        nodule = int(r["nodule"])
        split = {"val": "holdout"}.get(r["split"], r["split"])
        out.append(_row(f"jsrt-scr/images/{r['image']}", f"jsrt:{r['patient_id']}", split, "jsrt", nodule,
                        {"Nodule": "1"} if nodule else None, age=r["age"], sex=r["sex"], view="PA"))
    return out


def public_lungs(data: Path, balanced: bool = True) -> list[dict]:
    """``lung-masks-public``: the class from each file's original name; training rows balanced within a source
    (or, not ``balanced``, every train row kept as published)."""
    rows = _rows(data / "lung-masks-public/manifest.csv")
    out, normal_train, abnormal_train = [], [], []
    for r in rows:
        name = r["original_name"].lower()
        abnormal = 0 if name.startswith("normal") else 1
        kind = "normal" if not abnormal else "covid" if "covid" in name and "non_covid" not in name else "other"
        row = _row(f"lung-masks-public/images/{r['image']}", f"{r['source']}:{r['group']}", r["split"], r["source"],
                   abnormal, kind=kind)
        if r["split"] == "train" and balanced:
            row["split"] = "unused"
            if r["source"] == "covid_qu_ex_infseg":
                (abnormal_train if abnormal else normal_train).append(row)
        elif r["split"] == "val":
            row["split"] = "holdout"
        out.append(row)
    for row in normal_train:
        row["split"] = "train"
    for kind in ("covid", "other"):
        pool = sorted((r for r in abnormal_train if r["kind"] == kind), key=lambda r: _draw(r["image"]))
        for row in pool[:len(normal_train) // 2]:
            row["split"] = "train"
    for row in out:
        del row["kind"]
    return out


def write(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)


def training_rows(rows: list[dict]) -> list[dict]:
    """Train rows, and RSNA's val split alone as val (other val rows become ``holdout``)."""
    train = [r for r in rows if r["split"] in ("train", "val", "holdout")]
    for r in train:
        if r["split"] == "val" and r["source"] != "nih-rsna":
            r["split"] = "holdout"
    return train


def main(data: Path, out: Path, naive: bool = False) -> None:
    if naive:
        pooled = training_rows(rsna(data) + train64(data) + jsrt(data) + public_lungs(data, balanced=False))
        write(pooled, out / "train_naive.csv")
        print(f"naive: {sum(r['split'] == 'train' for r in pooled)} train films -> {out / 'train_naive.csv'}")
    rows = rsna(data) + train64(data) + jsrt(data) + public_lungs(data)
    train = training_rows(rows)
    write([r for r in train if r["split"] != "unused"], out / "train.csv")
    write([{**r, "split": "test"} for r in rows if r["split"] == "test"], out / "audit.csv")
    write([r for r in rows if r["split"] == "test" and r["source"] == "nih-rsna"], out / "rsna_test.csv")
    for name in ("train", "val"):
        chosen = [r for r in train if r["split"] == name]
        by_source: dict[str, list[int]] = {}
        for r in chosen:
            by_source.setdefault(r["source"], [0, 0])[int(r["abnormal"])] += 1
        print(f"{name}: {len(chosen)} films; normal/abnormal by source: "
              + ", ".join(f"{s} {n}/{a}" for s, (n, a) in sorted(by_source.items())))
    print(f"audit: {sum(r['split'] == 'test' for r in rows)} test films -> {out / 'audit.csv'}")


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--naive"]
    if len(args) != 2:
        sys.exit(__doc__)
    main(Path(args[0]), Path(args[1]), naive="--naive" in sys.argv[1:])
