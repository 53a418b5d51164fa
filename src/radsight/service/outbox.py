"""Results on their way out, durably: written to disk and listed in SQLite before :meth:`Outbox.put` returns, sent
by a background thread, retried with exponential back-off (up to ``max_wait`` seconds) while the receiver is down,
and removed only once it has taken them, across restarts. How a batch is sent is a subclass's: C-STORE to a DICOM
destination (``service.dimse``), STOW-RS to the archive the study came from (``service.pacs``)."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pydicom

from radsight.results.dicom import save_dataset

log = logging.getLogger("radsight.service")


class Outbox:
    """``folder``: the results' files and ``outbox.sqlite``; ``receiver``: how logs name where they go."""

    receiver = "the receiver"
    batch = 100  # files sent at most at once (the rest follow at once)

    def __init__(self, folder: Path, first_wait: float = 1.0, max_wait: float = 60.0):
        self.folder, self.first_wait, self.max_wait = folder, first_wait, max_wait
        folder.mkdir(parents=True, exist_ok=True)
        self.db = folder / "outbox.sqlite"
        with self._connect() as db:
            db.execute("CREATE TABLE IF NOT EXISTS outbox (file TEXT PRIMARY KEY, sop_class TEXT, "
                       "attempts INTEGER DEFAULT 0, next_try REAL DEFAULT 0, last_error TEXT)")
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, due: list[tuple[str, str]]) -> dict[str, str]:
        """Send the files ``due`` ((file name, SOP Class UID) in this folder); the ones not taken, with why."""
        raise NotImplementedError

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db, timeout=30, isolation_level=None)

    def put(self, datasets: list[pydicom.Dataset]) -> None:
        for ds in datasets:
            name = f"{uuid.uuid4().hex}.dcm"
            save_dataset(ds, self.folder / name)
            with self._connect() as db:
                db.execute("INSERT INTO outbox (file, sop_class) VALUES (?, ?)", (name, str(ds.SOPClassUID)))
        self._wake.set()

    def notify(self) -> None:
        """Results were put here by another process: send them now."""
        self._wake.set()

    def pending(self) -> int:
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"radsight-{type(self).__name__}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self.send_due()
            except Exception:  # never let the sender die: log, and try again later
                log.exception("outbox: sending to %s failed", self.receiver)
                wait = self.max_wait
            self._wake.wait(wait)
            self._wake.clear()

    def send_due(self) -> float:
        """Send what is due in one batch; the seconds until the next retry is due (max_wait when none)."""
        now = time.time()
        with self._connect() as db:
            due = db.execute("SELECT file, sop_class, attempts FROM outbox WHERE next_try <= ? ORDER BY rowid "
                             "LIMIT ?", (now, self.batch)).fetchall()
        if due:
            failed = self.send([(file, sop) for file, sop, _ in due])
            self._record(due, failed)
        with self._connect() as db:
            next_try = db.execute("SELECT MIN(next_try) FROM outbox").fetchone()[0]
        return self.max_wait if next_try is None else max(0.05, min(self.max_wait, next_try - time.time()))

    def _record(self, due: list[tuple[str, str, int]], failed: dict[str, str]) -> None:
        """Taken files leave the outbox; the others wait twice as long as last time (up to ``max_wait``)."""
        with self._connect() as db:
            for file in (f for f, _, _ in due if f not in failed):
                db.execute("DELETE FROM outbox WHERE file = ?", (file,))
                (self.folder / file).unlink(missing_ok=True)
            for file, attempts in ((f, a) for f, _, a in due if f in failed):
                wait = min(self.max_wait, self.first_wait * 2 ** attempts)
                db.execute("UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ? WHERE file = ?",
                           (time.time() + wait, failed[file], file))
        if failed:
            log.warning("outbox: %d results not delivered to %s (%s); retrying", len(failed), self.receiver,
                        next(iter(failed.values())))
