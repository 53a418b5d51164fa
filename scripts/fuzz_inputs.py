"""Long fuzzing runs of radsight's readers: seeded mutants of DICOM, PNG and JPEG files, counted by outcome.

    python scripts/fuzz_inputs.py --cases 50000 [--seed 0] [--time-limit 10] [--memory-gb 8] [--data ../shared/data]

Seeds: small files made here in every supported encoding (deflated and RLE among them), pydicom-data's chest CR in
three encodings, and (with --data) a benchmark PNG. Outcomes: ok, input_error (a clear refusal), crash (any other
exception), hang (a read past --time-limit seconds). Memory is capped with RLIMIT_AS, so a runaway decoder fails
instead of swapping; the peak RSS's growth over the run bounds every case's. Exit status 1 when anything crashed or
hung, or the peak grew past --max-growth-mb. Needs pydicom-data (radsight[example]).
"""
from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from radsight.io import load_image  # noqa: E402

from conftest import fuzz_originals  # noqa: E402
from mutate import fuzz  # noqa: E402


def originals(root: Path, data: Path | None) -> dict[str, bytes]:
    from pydicom.data import get_testdata_file
    out = fuzz_originals(root, 160, 144)
    for name in ("RG1_UNCR.dcm", "RG1_J2KR.dcm", "RG1_UNCI.dcm"):
        found = get_testdata_file(name)
        if found:
            out[name] = Path(found).read_bytes()
    if data is not None:
        bench = sorted((data / "nih-cxr14" / "benchmark" / "images").glob("*.png"))[:1]
        out.update({p.name: p.read_bytes() for p in bench})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--memory-gb", type=float, default=8.0)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--max-growth-mb", type=float, default=500.0,
                        help="fail when the peak RSS grew more than this over the run (so did no single case)")
    args = parser.parse_args()
    limit = int(args.memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with tempfile.TemporaryDirectory() as tmp:
        files = originals(Path(tmp), args.data)
        load_image(next(Path(tmp).glob("*.dcm")))  # the decoders loaded before the baseline is taken
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        report = fuzz(files, load_image, args.cases, Path(tmp) / "run", args.seed, args.time_limit, keep=50)
        seconds = time.perf_counter() - start
    growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - baseline) / 1024
    print(f"{args.cases} cases from {len(files)} files (seeds {args.seed}..{args.seed + args.cases - 1}) in "
          f"{seconds:.0f} s: {report}; peak RSS grew {growth:.0f} MB over the run (no case by more)")
    for case in report.crashes + report.hangs:
        print(case)
    return 1 if report.outcomes["crash"] or report.outcomes["hang"] or growth > args.max_growth_mb else 0


if __name__ == "__main__":
    sys.exit(main())
