"""Run ``radsight analyze`` from two commits on one fixed set of inputs and compare what they write.

Each commit is checked out in a git worktree of its own and run with this interpreter (its dependencies) and that
worktree's ``src`` first on the path. The inputs are made in a temporary folder, never committed:
  - RG1 (pydicom-data's chest CR) in every encoding pydicom-data ships, with ``--dicom-out``: each file alone with
    the frontal model, and the four as the one study they are;
  - the first ``--pngs`` films of NIH's benchmark folder (``--data``);
  - a multiview study (the first PA and lateral PNGs of one patient in ``multiview``), with ``--study``;
  - a study of two DICOMs made from RG1 (a PA and an LL header, one StudyInstanceUID), with ``--dicom-out``.
JSON documents are compared value by value (exactly); a difference at a path listed with ``--changed`` (a field
the later commit changes on purpose, as ``findings.*.heatmap`` or ``schema_version``) is counted, not reported as a
failure. The names of the files each run writes are compared too.

    python scripts/compare_outputs.py --before HEAD~1 --after HEAD --data ../shared/data --changed schema_version
"""
from __future__ import annotations

import argparse
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

RG1_FILES = ["RG1_UNCR.dcm", "RG1_UNCI.dcm", "RG1_J2KR.dcm", "RG1_J2KI.dcm"]
ROOT = Path(__file__).resolve().parents[1]


def make_inputs(root: Path, data: Path, pngs: int) -> dict[str, list[str]]:
    """The runs: name -> ``radsight analyze`` arguments (inputs made under ``root``)."""
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    runs = {}
    rg1 = root / "rg1"
    rg1.mkdir()
    for name in RG1_FILES:
        found = get_testdata_file(name)
        if found:
            shutil.copy(found, rg1 / name)
    runs["rg1"] = [str(rg1), "--model", "radsight-nih64-demo", "--dicom-out"]  # each file alone
    runs["rg1-study"] = [str(rg1), "--dicom-out"]  # one StudyInstanceUID: one study, the two-view model
    bench = sorted((data / "nih-cxr14" / "benchmark" / "images").glob("*.png"))[:pngs]
    if bench:
        folder = root / "benchmark"
        folder.mkdir()
        for path in bench:
            (folder / path.name).symlink_to(path)
        runs["benchmark"] = [str(folder)]
    manifest = data / "multiview" / "manifest.csv"
    if manifest.is_file():
        import csv
        rows = list(csv.DictReader(manifest.open()))
        for row in rows:
            lateral = [r for r in rows if r["patientid"] == row["patientid"] and r["offset"] == row["offset"]
                       and r["view"] == "L"]
            if row["view"] == "PA" and lateral:
                images = data / "multiview" / "images"
                runs["multiview"] = ["--study", str(images / row["filename"]), str(images / lateral[0]["filename"])]
                break
    pair = root / "two-dicom"
    pair.mkdir()
    uid = generate_uid()
    for view in ("PA", "LL"):
        ds = pydicom.dcmread(get_testdata_file("RG1_UNCR.dcm"))
        ds.StudyInstanceUID, ds.SOPInstanceUID, ds.ViewPosition = uid, generate_uid(), view
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(pair / f"{view}.dcm")
    runs["two-dicom"] = [str(pair), "--dicom-out"]
    return runs


def run(tree: Path, args: list[str], out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [sys.executable, "-m", "radsight", "analyze", *args, "--out", str(out), "--workers", "1", "--quiet"]
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{tree.name}: {' '.join(command)} failed:\n{done.stderr}")


def differences(a, b, path: str = "") -> list[str]:
    """Paths (dotted; list items by index) where ``a`` and ``b`` differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b), key=str):
            here = f"{path}.{key}" if path else str(key)
            if key not in a or key not in b:
                out.append(here)
            else:
                out += differences(a[key], b[key], here)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{path}.{i}")]
    return [] if a == b else [path]


def expected(path: str, changed: list[str]) -> bool:
    general = ".".join("*" if part.isdigit() else part for part in path.split("."))
    return any(fnmatch.fnmatchcase(general, pattern) for pattern in changed)


def compare(before: Path, after: Path, changed: list[str]) -> tuple[int, int, list[str]]:
    """Documents compared, expected differences, and the unexpected ones (as lines)."""
    problems, documents, intended = [], 0, 0
    names = {p.relative_to(before).as_posix() for p in before.rglob("*") if p.is_file()}
    new = {p.relative_to(after).as_posix() for p in after.rglob("*") if p.is_file()}
    for name in sorted(names ^ new):
        if not expected(f"files.{name}", changed):
            problems.append(f"file {name}: only {'before' if name in names else 'after'}")
    for name in sorted(n for n in names & new if n.endswith(".json")):
        documents += 1
        for diff in differences(json.loads((before / name).read_text()), json.loads((after / name).read_text())):
            if expected(diff, changed):
                intended += 1
            else:
                problems.append(f"{name}: {diff}")
    return documents, intended, problems


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(where), rev], check=True)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", required=True, help="commit of the earlier outputs")
    parser.add_argument("--after", required=True, help="commit of the later outputs")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--pngs", type=int, default=20)
    parser.add_argument("--changed", action="append", default=[],
                        help="a document path changed on purpose (fnmatch; list indices as *), or files.NAME")
    parser.add_argument("--keep", type=Path, help="keep the outputs in this folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="radsight-compare-") as tmp:
        tmp = Path(tmp)
        (tmp / "inputs").mkdir()
        runs = make_inputs(tmp / "inputs", args.data, args.pngs)
        trees = {}
        try:
            for side in ("before", "after"):
                trees[side] = worktree(getattr(args, side), tmp / side)
                for name, run_args in runs.items():
                    run(trees[side], run_args, tmp / "out" / side / name)
            documents, intended, problems = compare(tmp / "out" / "before", tmp / "out" / "after", args.changed)
            if args.keep:
                shutil.copytree(tmp / "out", args.keep, dirs_exist_ok=True)
        finally:
            for tree in trees.values():
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
    print(f"runs: {', '.join(runs)}; {documents} JSON documents compared; {intended} differences at paths changed "
          f"on purpose; {len(problems)} other differences")
    for line in problems:
        print(f"  {line}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
