"""Durable study and job state in SQLite: a killed server resumes its queue without losing or repeating a study.
One server process owns it; several replicas share a PostgreSQL store instead (``service/pg.py``)."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from radsight.heads.triage import PRIORITY_ORDER

COLUMNS = "id, received_at, filename, origin, status, attempts, result, error, orthanc_id"
MAX_ATTEMPTS = 3  # a study that crashes the worker this often is failed, so it cannot block the queue
# Statuses: gathering (a study's instances may still arrive until ready_at), queued, running, done, failed.
SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
    id TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    filename TEXT NOT NULL,
    origin TEXT NOT NULL,
    orthanc_id TEXT UNIQUE,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    priority_rank INTEGER,
    abnormal REAL,
    result TEXT,
    error TEXT,
    updated_at REAL NOT NULL,
    study_uid TEXT,
    ready_at REAL
);
CREATE INDEX IF NOT EXISTS studies_status ON studies (status, received_at);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (digest TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS analyses (instances TEXT NOT NULL, model TEXT NOT NULL, study_id TEXT NOT NULL,
                                     PRIMARY KEY (instances, model));
CREATE TABLE IF NOT EXISTS auth_failures (client TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS auth_failures_client ON auth_failures (client, at);
"""


@dataclass
class Study:
    id: str
    received_at: float
    filename: str
    origin: str
    status: str
    attempts: int
    result: dict | None
    error: str | None
    orthanc_id: str | None = None

    def public(self) -> dict:
        return {"id": self.id, "status": self.status, "result": self.result, "error": self.error,
                "received_at": self.received_at, "filename": self.filename, "origin": self.origin}


class SqlStore:
    """What the job stores share over their database connection ``_db`` and lock ``_lock``: reading studies, the
    worklist, counts and the service's own state. SQL is written with ``?`` and given to the driver with
    ``PARAM``."""

    PARAM = "?"
    lease_seconds: float | None = None  # stores whose claims are leases (renewed while a study runs) set it

    def _run(self, sql: str, params: tuple = ()):
        return self._db.execute(sql.replace("?", self.PARAM), params)

    def get(self, study_id: str) -> Study | None:
        with self._lock:
            row = self._run(f"SELECT {COLUMNS} FROM studies WHERE id=?", (study_id,)).fetchone()
        return _study(row) if row else None

    def knows(self, orthanc_id: str) -> bool:
        """Whether an analysis with this PACS key was already queued (or recorded as refused)."""
        with self._lock:
            return self._run("SELECT 1 FROM studies WHERE orthanc_id=?", (orthanc_id,)).fetchone() is not None

    def worklist(self, limit: int = 500) -> list[Study]:
        """Reading order: analyzed studies by priority, then the more likely abnormal, then arrival; then the
        studies still waiting, by arrival; failed ones last."""
        with self._lock:
            rows = self._run(
                f"SELECT {COLUMNS} FROM studies ORDER BY CASE status WHEN 'done' THEN 0 WHEN 'running' THEN 1 "
                "WHEN 'queued' THEN 1 WHEN 'gathering' THEN 1 ELSE 2 END, priority_rank, abnormal DESC NULLS LAST, "
                "received_at LIMIT ?",
                (limit,)).fetchall()
        return [_study(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self._lock:
            return dict(self._run("SELECT status, COUNT(*) FROM studies GROUP BY status").fetchall())

    def join(self, study_uid: str, ready_at: float) -> str | None:
        """The analysis still gathering instances of ``study_uid``, its wait extended to ``ready_at``; None when
        there is none (a new instance then starts one, :meth:`add` with ``gather``)."""
        with self._lock:
            row = self._run("UPDATE studies SET ready_at=?, updated_at=? WHERE id = (SELECT id FROM studies WHERE "
                            "study_uid=? AND status='gathering' ORDER BY received_at LIMIT 1) AND status='gathering' "
                            "RETURNING id", (ready_at, time.time(), study_uid)).fetchone()
        return row[0] if row else None

    def latest(self, study_uid: str) -> str | None:
        """The latest analysis that gathered instances of ``study_uid``, whatever its status; None when none did."""
        with self._lock:
            row = self._run("SELECT id FROM studies WHERE study_uid=? ORDER BY received_at DESC LIMIT 1",
                            (study_uid,)).fetchone()
        return row[0] if row else None

    def get_state(self, key: str, default: str) -> str:
        with self._lock:
            row = self._run("SELECT value FROM state WHERE key=?", (key,)).fetchone()
        return row[0] if row else default

    def set_state(self, key: str, value: str) -> None:
        with self._lock:
            self._run("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE "
                      "SET value = excluded.value", (key, value))


    def analysis_of(self, instances: str, model: str) -> str | None:
        """The analysis of exactly these instances (a digest of their SOP Instance UIDs) by ``model``, if any."""
        with self._lock:
            row = self._run("SELECT study_id FROM analyses WHERE instances=? AND model=?", (instances, model)).fetchone()
        return row[0] if row else None

    def remember(self, instances: str, model: str, study_id: str) -> None:
        with self._lock:
            self._run("INSERT INTO analyses (instances, model, study_id) VALUES (?, ?, ?) ON CONFLICT (instances, "
                      "model) DO UPDATE SET study_id = excluded.study_id", (instances, model, study_id))

    def open_session(self, digest: str, expires: float) -> None:
        """A reader session (its id's SHA-256) valid until ``expires``; expired ones are dropped."""
        with self._lock:
            self._run("DELETE FROM sessions WHERE expires < ?", (time.time(),))
            self._run("INSERT INTO sessions (digest, expires) VALUES (?, ?)", (digest, expires))

    def session_open(self, digest: str) -> bool:
        with self._lock:
            row = self._run("SELECT expires FROM sessions WHERE digest=?", (digest,)).fetchone()
        return row is not None and row[0] >= time.time()

    def close_session(self, digest: str) -> None:
        with self._lock:
            self._run("DELETE FROM sessions WHERE digest=?", (digest,))

    def failures(self, client: str, since: float, add: bool = False) -> int:
        """Failed token attempts from ``client`` since ``since`` (with ``add``, this one counted first); older
        ones are dropped."""
        with self._lock:
            self._run("DELETE FROM auth_failures WHERE at < ?", (since,))
            if add:
                self._run("INSERT INTO auth_failures (client, at) VALUES (?, ?)", (client, time.time()))
            return self._run("SELECT COUNT(*) FROM auth_failures WHERE client=? AND at >= ?",
                             (client, since)).fetchone()[0]


class StudyStore(SqlStore):
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(studies)")}
        for column, kind in (("study_uid", "TEXT"), ("ready_at", "REAL")):  # a data folder from before gathering
            if column not in columns:
                self._db.execute(f"ALTER TABLE studies ADD COLUMN {column} {kind}")
        self._db.execute("CREATE INDEX IF NOT EXISTS studies_uid ON studies (study_uid)")
        self._lock = threading.Lock()

    def add(self, filename: str, origin: str, orthanc_id: str | None = None, error: str | None = None,
            gather: tuple[str, float] | None = None, study_id: str | None = None) -> str | None:
        """Queue a study; None when ``orthanc_id`` is already known (a PACS study is analyzed once). ``error``:
        record it failed instead (it arrived but cannot be analyzed); ``gather``: (StudyInstanceUID, ready_at), it
        waits for more instances of its study until then; ``study_id``: its id (default: a new one)."""
        study_id, now = study_id or uuid.uuid4().hex, time.time()
        status, uid, ready = new_status(error, gather)
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO studies (id, received_at, filename, origin, orthanc_id, status, error, "
                "study_uid, ready_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (study_id, now, filename, origin, orthanc_id, status, error, uid, ready, now))
        return study_id if cur.rowcount else None

    def recover(self) -> int:
        """At start-up: studies left ``running`` by a killed server go back to the queue (or fail if they keep
        crashing it)."""
        return self._requeue_running("", ())

    def requeue(self, study_id: str) -> bool:
        """A study whose worker process died while running it goes back to the queue (or fails if it keeps killing
        its worker); whether it was running."""
        return self._requeue_running(" AND id=?", (study_id,)) > 0

    def _requeue_running(self, also: str, params: tuple) -> int:
        """Running studies (those ``also`` selects) back to the queue, failed once claimed MAX_ATTEMPTS times."""
        with self._lock:
            self._db.execute("UPDATE studies SET status='failed', error='analysis interrupted repeatedly', "
                             f"updated_at=? WHERE status='running' AND attempts>=?{also}",
                             (time.time(), MAX_ATTEMPTS, *params))
            return self._db.execute(f"UPDATE studies SET status='queued', updated_at=? WHERE status='running'{also}",
                                    (time.time(), *params)).rowcount

    def claim(self) -> Study | None:
        """The oldest queued study (or gathering one whose wait is over), marked running, or None."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute("SELECT id FROM studies WHERE status='queued' OR (status='gathering' AND "
                                       "ready_at <= ?) ORDER BY received_at LIMIT 1", (time.time(),)).fetchone()
                if row:
                    self._db.execute("UPDATE studies SET status='running', attempts=attempts+1, updated_at=? "
                                     "WHERE id=?", (time.time(), row[0]))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return self.get(row[0]) if row else None

    def finish(self, study_id: str, result: dict) -> bool:
        triage = result["triage"]
        with self._lock:
            self._db.execute("UPDATE studies SET status='done', result=?, error=NULL, priority_rank=?, abnormal=?, "
                             "updated_at=? WHERE id=?",
                             (json.dumps(result), PRIORITY_ORDER.index(triage["priority"]),
                              triage["abnormal_probability"], time.time(), study_id))
        return True

    def fail(self, study_id: str, error: str) -> bool:
        with self._lock:
            self._db.execute("UPDATE studies SET status='failed', error=?, updated_at=? WHERE id=?",
                             (error, time.time(), study_id))
        return True


def new_status(error: str | None, gather: tuple[str, float] | None) -> tuple[str, str | None, float | None]:
    """A new row's status, study UID and ready time."""
    if error is not None:
        return "failed", None, None
    return ("gathering", *gather) if gather else ("queued", None, None)


def _study(row) -> Study:
    return Study(id=row[0], received_at=row[1], filename=row[2], origin=row[3], status=row[4], attempts=row[5],
                 result=json.loads(row[6]) if row[6] else None, error=row[7], orthanc_id=row[8])
