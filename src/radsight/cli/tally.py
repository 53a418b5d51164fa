"""The console lines of an analysis run, the same for images, studies and Ray: ``error: ...`` on stderr for each
file or study that failed (and each note), a line for each one analyzed, and what the run counted."""
from __future__ import annotations

import time


class Tally:
    """``console``/``err``: rich consoles for results and errors; ``quiet``: no line for what was analyzed."""

    def __init__(self, console, err, quiet: bool = False):
        self.console, self.err, self.quiet = console, err, quiet
        self.done: list = []
        self.failed = self.skipped = 0
        self.start = time.perf_counter()

    def note(self, text: str) -> None:
        """An error line that fails nothing (a study's unreadable file)."""
        self.err.print(f"error: {text}", markup=False, highlight=False)

    def failure(self, text: str) -> None:
        self.failed += 1
        self.note(text)

    def success(self, outcome, line: str) -> None:
        self.done.append(outcome)
        if not self.quiet:
            self.say(line)

    def say(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False)

    @property
    def seconds(self) -> float:
        return time.perf_counter() - self.start
