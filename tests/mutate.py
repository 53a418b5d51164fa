"""Seeded byte-level mutations of image files, for fuzzing the readers (``scripts/fuzz_inputs.py``, tests).

Each mutation is one of: flipped bits, a truncation, a duplicated run, a zeroed run; it lands in the file's header
or in its pixel data (DICOM: before/after the PixelData element; PNG: before/after the first IDAT chunk; JPEG:
before/after the first start-of-scan marker). The same seed gives the same mutant.
"""
from __future__ import annotations

import signal
import traceback
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

KINDS = ("flip", "truncate", "duplicate", "zero")
REGIONS = ("header", "pixels")
_PIXEL_MARKERS = (b"\xe0\x7f\x10\x00", b"\x7f\xe0\x00\x10", b"IDAT", b"\xff\xda")


@dataclass(frozen=True)
class Mutation:
    kind: str
    region: str
    offset: int
    length: int

    def __str__(self) -> str:
        return f"{self.kind} {self.length} B at {self.offset} ({self.region})"


def pixel_start(data: bytes) -> int:
    """Where the pixel data begins (the first marker found), else the middle of the file."""
    found = [i for i in (data.find(m) for m in _PIXEL_MARKERS) if i > 0]
    return min(found) if found else len(data) // 2


def mutate(data: bytes, seed: int) -> tuple[bytes, Mutation]:
    rng = np.random.default_rng(seed)
    kind, region = KINDS[rng.integers(len(KINDS))], REGIONS[rng.integers(len(REGIONS))]
    split = pixel_start(data)
    low, high = (0, max(1, split)) if region == "header" else (split, max(split + 1, len(data)))
    offset = int(rng.integers(low, high))
    length = int(rng.integers(1, {"flip": 9, "truncate": 2}.get(kind, 65)))
    out = bytearray(data)
    if kind == "flip":
        for i in range(offset, min(len(out), offset + length)):
            out[i] ^= int(rng.integers(1, 256))
    elif kind == "truncate":
        del out[offset:]
    elif kind == "duplicate":
        out[offset:offset] = out[offset:offset + length]
    else:
        out[offset:offset + length] = bytes(min(length, len(out) - offset))
    return bytes(out), Mutation(kind, region, offset, length)


class Hang(BaseException):
    """A read past its time limit; a BaseException, so that no reader turns it into an InputError."""


@dataclass
class FuzzReport:
    outcomes: Counter = field(default_factory=Counter)  # ok, input_error, crash, hang
    crashes: list[str] = field(default_factory=list)  # "seed file mutation: traceback tail", the first few
    hangs: list[str] = field(default_factory=list)  # "seed file mutation", the first few

    def __str__(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))


def fuzz(originals: dict[str, bytes], read: Callable[[Path], object], cases: int, folder: Path, seed: int = 0,
         time_limit: float = 10.0, keep: int = 20) -> FuzzReport:
    """Read ``cases`` mutants of ``originals`` (name -> bytes) with ``read``; count how each ended. A read that
    takes longer than ``time_limit`` seconds is a hang (SIGALRM: call from the main thread)."""
    from radsight.core import InputError
    report, names = FuzzReport(), sorted(originals)
    folder.mkdir(parents=True, exist_ok=True)

    def alarm(*_):
        raise Hang()
    previous = signal.signal(signal.SIGALRM, alarm)
    try:
        for case in range(seed, seed + cases):
            name = names[case % len(names)]
            data, mutation = mutate(originals[name], case)
            path = folder / f"mutant{Path(name).suffix}"
            path.write_bytes(data)
            signal.setitimer(signal.ITIMER_REAL, time_limit)
            try:
                read(path)
                outcome = "ok"
            except InputError:
                outcome = "input_error"
            except Hang:
                outcome = "hang"
                if len(report.hangs) < keep:
                    report.hangs.append(f"seed {case} {name} {mutation}")
            except (KeyboardInterrupt, SystemExit):
                raise
            except BaseException:  # anything else that escapes the reader is a crash, a Rust panic included
                outcome = "crash"
                if len(report.crashes) < keep:
                    report.crashes.append(f"seed {case} {name} {mutation}: {traceback.format_exc(limit=-3)}")
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            report.outcomes[outcome] += 1
    finally:
        signal.signal(signal.SIGALRM, previous)
    return report
