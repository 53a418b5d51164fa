"""Results on their way out, durably: written to disk and listed in SQLite before :meth:`Outbox.put` returns, sent
by a background thread, retried with exponential back-off (up to ``max_wait`` seconds) while the receiver is down,
and removed only once it has taken them, across restarts. A result the receiver refuses for good (a status that no
retry changes, or a file that is no longer DICOM) is set aside: kept, not retried, logged as an error and counted in
:meth:`Outbox.status` until an operator retries it (:meth:`Outbox.retry_refused`). How a batch is sent is a
subclass's: C-STORE to a DICOM destination (``service.dimse``), STOW-RS to the archive the study came from
(``service.pacs``)."""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from radsight.results.dicom import save_dataset

log = logging.getLogger("radsight.service")


@dataclass(frozen=True)
class NotTaken:
    """Why the receiver did not take a result; ``final``: it will not as the result is (refused, unreadable), so it
    is set aside instead of sent again."""

    reason: str
    final: bool = False


# DICOM storage statuses (PS3.4 B.2.3, PS3.18 failure reasons): warnings mean the instance was stored; out of
# resources, a processing failure or a duplicate invocation may pass; any other failure is the receiver's answer
# to this result as it is.
STORED_WITH_WARNING = (0xB000, 0xB006, 0xB007)
ALREADY_STORED = 0x0111  # Duplicate SOP Instance
PROCESSING_FAILURE = 0x0110
TRANSIENT = (PROCESSING_FAILURE, 0x0210)  # and Duplicate invocation; 0xA7xx, Out of resources


def storage_outcome(status: int | None) -> NotTaken | None:
    """None when a storage status means the result was taken; otherwise why not, and whether for good."""
    if status is None:
        return NotTaken("no answer")
    if status in (0x0000, ALREADY_STORED, *STORED_WITH_WARNING):
        return None
    return NotTaken(f"status {status:#06x}", final=not (status in TRANSIENT or 0xA700 <= status <= 0xA7FF))


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
                       "attempts INTEGER DEFAULT 0, next_try REAL DEFAULT 0, last_error TEXT, refused_at REAL, "
                       "put_at REAL)")
            columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
            for column in sorted({"refused_at", "put_at"} - columns):  # an outbox of an earlier version
                try:
                    db.execute(f"ALTER TABLE outbox ADD COLUMN {column} REAL")
                except sqlite3.OperationalError:  # another process of the service added it first
                    continue
                if column == "put_at":  # its results count as waiting since now
                    db.execute("UPDATE outbox SET put_at = ?", (time.time(),))
        self._wake, self._stopping = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None

    def send(self, due: list[str]) -> dict[str, NotTaken]:
        """Send the files ``due`` (names in this folder); the ones not taken, with why."""
        raise NotImplementedError

    def read(self, due: list[str]) -> tuple[dict[str, pydicom.Dataset], dict[str, NotTaken]]:
        """The files ``due`` that can be read, and why the others cannot be sent: a file that is no longer DICOM
        never will be, and holds up no other."""
        readable, failed = {}, {}
        for file in due:
            try:
                readable[file] = pydicom.dcmread(self.folder / file)
            except InvalidDicomError as exc:
                failed[file] = NotTaken(f"cannot read the result: {exc}", final=True)
            except OSError as exc:
                failed[file] = NotTaken(f"cannot read the result: {exc}")
        return readable, failed

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.db, timeout=30, isolation_level=None)

    def put(self, datasets: list[pydicom.Dataset]) -> None:
        for ds in datasets:
            name = f"{uuid.uuid4().hex}.dcm"
            save_dataset(ds, self.folder / name)
            with self._connect() as db:
                db.execute("INSERT INTO outbox (file, sop_class, put_at) VALUES (?, ?, ?)",
                           (name, str(ds.SOPClassUID), time.time()))
        self._wake.set()

    def notify(self) -> None:
        """Results were put here by another process: send them now."""
        self._wake.set()

    def pending(self) -> int:
        """Results still to be sent (those set aside as refused not counted)."""
        with self._connect() as db:
            return db.execute("SELECT COUNT(*) FROM outbox WHERE refused_at IS NULL").fetchone()[0]

    def status(self) -> dict:
        """For an operator: where results go, how many wait and since when, how many were refused, the last error."""
        with self._connect() as db:
            pending, oldest = db.execute("SELECT COUNT(*), MIN(put_at) FROM outbox WHERE refused_at IS NULL"
                                         ).fetchone()
            refused = db.execute("SELECT COUNT(*) FROM outbox WHERE refused_at IS NOT NULL").fetchone()[0]
            error = db.execute("SELECT last_error FROM outbox WHERE last_error IS NOT NULL "
                               "ORDER BY COALESCE(refused_at, next_try) DESC LIMIT 1").fetchone()
        return {"receiver": self.receiver, "pending": pending, "refused": refused,
                "oldest_pending_seconds": round(time.time() - oldest, 1) if oldest is not None else None,
                "last_error": error[0] if error else None}

    def retry_refused(self) -> int:
        """Send the refused results again (the receiver's configuration was fixed); how many."""
        with self._connect() as db:
            count = db.execute("UPDATE outbox SET refused_at = NULL, attempts = 0, next_try = 0 "
                               "WHERE refused_at IS NOT NULL").rowcount
        self._wake.set()
        return count

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
            due = db.execute("SELECT file, attempts FROM outbox WHERE next_try <= ? AND refused_at IS NULL "
                             "ORDER BY rowid LIMIT ?", (now, self.batch)).fetchall()
        if due:
            failed = self.send([file for file, _ in due])
            self._record(due, failed)
        with self._connect() as db:
            next_try = db.execute("SELECT MIN(next_try) FROM outbox WHERE refused_at IS NULL").fetchone()[0]
        return self.max_wait if next_try is None else max(0.05, min(self.max_wait, next_try - time.time()))

    def _record(self, due: list[tuple[str, int]], failed: dict[str, NotTaken]) -> None:
        """Taken files leave the outbox; refused ones are set aside; the others wait twice as long as last time (up
        to ``max_wait``)."""
        now = time.time()
        with self._connect() as db:
            for file in (f for f, _ in due if f not in failed):
                db.execute("DELETE FROM outbox WHERE file = ?", (file,))
                (self.folder / file).unlink(missing_ok=True)
            for file, attempts in ((f, a) for f, a in due if f in failed):
                wait = min(self.max_wait, self.first_wait * 2 ** attempts)
                db.execute("UPDATE outbox SET attempts = attempts + 1, next_try = ?, last_error = ?, refused_at = ? "
                           "WHERE file = ?", (now + wait, failed[file].reason, now if failed[file].final else None,
                                              file))
        refused = {f: n for f, n in failed.items() if n.final}
        if refused:
            log.error("outbox: %d results refused by %s (%s); kept in %s, not sent again until retried",
                      len(refused), self.receiver, next(iter(refused.values())).reason, self.folder)
        if len(failed) > len(refused):
            log.warning("outbox: %d results not delivered to %s (%s); retrying", len(failed) - len(refused),
                        self.receiver, next(n for n in failed.values() if not n.final).reason)
