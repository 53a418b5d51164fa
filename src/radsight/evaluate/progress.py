"""Progress of an evaluation stage: a transient bar on a terminal; plain lines on standard error otherwise (a log
file, CI), so a long run says what it is doing: the stage's start, every tenth done, and its end."""
from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import Progress


class _Lines:
    def __init__(self, label: str, total: int):
        self.label, self.total, self.done, self.started = label, total, 0, time.monotonic()
        self._step = -(-total // 10) if total >= 50 else total  # a line every tenth of a long stage
        self._next = self._step
        self._say(f"{total} to do")

    def _say(self, text: str) -> None:
        print(f"{self.label}: {text}", file=sys.stderr, flush=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        if self.done >= self._next and self.done < self.total:
            self._say(f"{self.done}/{self.total}")
            self._next = self.done + self._step

    def close(self) -> None:
        self._say(f"{self.done}/{self.total} done in {time.monotonic() - self.started:.1f} s")


class _Bar:
    def __init__(self, progress: Progress, label: str, total: int):
        self.progress, self.task = progress, progress.add_task(label, total=total)

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)


@contextmanager
def stage(label: str, total: int) -> Iterator[_Lines | _Bar]:
    """``with stage("scoring", n) as progress: ... progress.advance()``."""
    console = Console(stderr=True)
    if console.is_terminal:
        with Progress(console=console, transient=True) as progress:
            yield _Bar(progress, label, total)
        return
    lines = _Lines(label, total)
    try:
        yield lines
    finally:
        lines.close()


def readable_images(manifest, label: str) -> Iterator[tuple[int, object]]:
    """Each readable image of ``manifest`` with its row, under a stage named ``label``; unreadable rows are
    skipped (their stage still advances)."""
    from radsight.core import InputError
    from radsight.io import load_image
    with stage(label, len(manifest)) as progress:
        for i in range(len(manifest)):
            progress.advance()
            try:
                image = load_image(manifest.path(i))
            except InputError:
                continue
            yield i, image
