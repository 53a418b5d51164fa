"""The study and job store on PostgreSQL, for several replicas sharing one queue (``radsight serve --db URL``).

A worker claims a study with a lease (``FOR UPDATE SKIP LOCKED``: two replicas never claim the same one), renews
the lease while it runs, and can record a result only while it still holds the lease. A study whose worker died
is claimed again once its lease expires, up to MAX_ATTEMPTS. The schema is created and migrated by the server,
with its version in ``radsight_schema``.
"""
from __future__ import annotations

import json
import threading
import time
import uuid

import psycopg

from radsight.heads.triage import PRIORITY_ORDER
from radsight.service.db import MAX_ATTEMPTS, SqlStore, Study, new_status

SCHEMA_VERSION = 3
MIGRATIONS = {  # version -> statements that bring the previous version to it
    1: """
CREATE TABLE studies (
    id TEXT PRIMARY KEY,
    received_at DOUBLE PRECISION NOT NULL,
    filename TEXT NOT NULL,
    origin TEXT NOT NULL,
    orthanc_id TEXT UNIQUE,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    priority_rank INTEGER,
    abnormal DOUBLE PRECISION,
    result TEXT,
    error TEXT,
    lease_owner TEXT,
    lease_until DOUBLE PRECISION,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX studies_status ON studies (status, received_at);
CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""",
    2: """
ALTER TABLE studies ADD COLUMN study_uid TEXT;
ALTER TABLE studies ADD COLUMN ready_at DOUBLE PRECISION;
CREATE INDEX studies_uid ON studies (study_uid);
""",
    3: """
CREATE TABLE sessions (digest TEXT PRIMARY KEY, expires DOUBLE PRECISION NOT NULL);
CREATE TABLE analyses (instances TEXT NOT NULL, model TEXT NOT NULL, study_id TEXT NOT NULL,
                       PRIMARY KEY (instances, model));
CREATE TABLE auth_failures (client TEXT NOT NULL, at DOUBLE PRECISION NOT NULL);
CREATE INDEX auth_failures_client ON auth_failures (client, at);
"""}


class PostgresStudyStore(SqlStore):
    """The :class:`radsight.service.db.StudyStore` interface on PostgreSQL, with leases; ``owner`` names this
    replica's workers."""

    PARAM = "%s"

    def __init__(self, url: str, lease_seconds: float = 30.0, owner: str | None = None):
        self.lease_seconds = lease_seconds
        self.owner = owner or uuid.uuid4().hex
        self._db = psycopg.connect(url, autocommit=True)
        self._lock = threading.Lock()
        self._migrate()

    def _migrate(self) -> None:
        with self._lock, self._db.transaction():
            self._db.execute("SELECT pg_advisory_xact_lock(2157)")  # one replica migrates at a time
            self._db.execute("CREATE TABLE IF NOT EXISTS radsight_schema (version INTEGER NOT NULL)")
            row = self._db.execute("SELECT version FROM radsight_schema").fetchone()
            version = row[0] if row else 0
            if version > SCHEMA_VERSION:
                raise RuntimeError(f"the database's radsight schema is version {version}; this radsight knows "
                                   f"{SCHEMA_VERSION}: upgrade radsight")
            for step in range(version + 1, SCHEMA_VERSION + 1):
                self._db.execute(MIGRATIONS[step])
            self._db.execute("DELETE FROM radsight_schema")
            self._db.execute("INSERT INTO radsight_schema (version) VALUES (%s)", (SCHEMA_VERSION,))

    def add(self, filename: str, origin: str, orthanc_id: str | None = None, error: str | None = None,
            gather: tuple[str, float] | None = None, study_id: str | None = None) -> str | None:
        study_id, now = study_id or uuid.uuid4().hex, time.time()
        status, uid, ready = new_status(error, gather)
        with self._lock:
            row = self._db.execute(
                "INSERT INTO studies (id, received_at, filename, origin, orthanc_id, status, error, study_uid, "
                "ready_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (orthanc_id) DO NOTHING RETURNING id",
                (study_id, now, filename, origin, orthanc_id, status, error, uid, ready, now)).fetchone()
        return row[0] if row else None

    def recover(self) -> int:
        """Studies whose lease expired after MAX_ATTEMPTS claims are failed; the others are claimed again by
        :meth:`claim`. Returns how many expired leases wait to be claimed."""
        now = time.time()
        with self._lock:
            self._fail_exhausted(now)
            return self._db.execute("SELECT COUNT(*) FROM studies WHERE status='running' AND lease_until < %s",
                                    (now,)).fetchone()[0]

    def _fail_exhausted(self, now: float) -> None:
        """Fail the studies whose lease expired after MAX_ATTEMPTS claims: they keep killing their workers."""
        self._db.execute("UPDATE studies SET status='failed', error='analysis interrupted repeatedly', "
                         "updated_at=%s WHERE status='running' AND lease_until < %s AND attempts >= %s",
                         (now, now, MAX_ATTEMPTS))

    def claim(self) -> Study | None:
        """The oldest queued study, or one whose lease expired, leased to this replica; None when there is none."""
        now = time.time()
        with self._lock, self._db.transaction():
            self._fail_exhausted(now)
            row = self._db.execute(
                "SELECT id FROM studies WHERE status='queued' OR (status='gathering' AND ready_at <= %s) "
                "OR (status='running' AND lease_until < %s) ORDER BY received_at LIMIT 1 FOR UPDATE SKIP LOCKED",
                (now, now)).fetchone()
            if row is None:
                return None
            self._db.execute("UPDATE studies SET status='running', attempts=attempts+1, lease_owner=%s, "
                             "lease_until=%s, updated_at=%s WHERE id=%s",
                             (self.owner, now + self.lease_seconds, now, row[0]))
        return self.get(row[0])

    def renew(self, study_id: str) -> bool:
        """Extend this replica's lease on a running study; False when it no longer holds it."""
        now = time.time()
        with self._lock:
            cur = self._db.execute("UPDATE studies SET lease_until=%s WHERE id=%s AND lease_owner=%s AND "
                                   "status='running'", (now + self.lease_seconds, study_id, self.owner))
        return cur.rowcount == 1

    def finish(self, study_id: str, result: dict) -> bool:
        """Record the result; False (and nothing recorded) when this replica lost the lease to another."""
        triage = result["triage"]
        with self._lock:
            cur = self._db.execute(
                "UPDATE studies SET status='done', result=%s, error=NULL, priority_rank=%s, abnormal=%s, "
                "lease_owner=NULL, updated_at=%s WHERE id=%s AND lease_owner=%s AND status='running'",
                (json.dumps(result), PRIORITY_ORDER.index(triage["priority"]), triage["abnormal_probability"],
                 time.time(), study_id, self.owner))
        return cur.rowcount == 1

    def fail(self, study_id: str, error: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE studies SET status='failed', error=%s, lease_owner=NULL, updated_at=%s "
                                   "WHERE id=%s AND lease_owner=%s AND status='running'",
                                   (error, time.time(), study_id, self.owner))
        return cur.rowcount == 1
