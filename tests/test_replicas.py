"""Replicas on one PostgreSQL (started on loopback by scripts/postgres.sh): leases, a replica SIGKILLed mid-run,
every study done once and seen by every replica."""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import chest_phantom, free_port, server_unavailable, start_serve

psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL job store needs radsight[serve]")
httpx = pytest.importorskip("httpx", reason="needs radsight[serve]")

from radsight.service.pg import SCHEMA_VERSION, PostgresStudyStore  # noqa: E402

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "postgres.sh"


@pytest.fixture(scope="module")
def postgres():
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="radsight-pg-")  # directly under /tmp: the postgres user must reach it
    started = subprocess.run(["bash", str(SCRIPT), "start", str(folder), str(free_port())], capture_output=True,
                             text=True, timeout=300)
    if started.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        server_unavailable(f"PostgreSQL could not be started: {started.stderr.strip()[-300:]}")
    yield started.stdout.strip()
    subprocess.run(["bash", str(SCRIPT), "stop", str(folder)], capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture()
def database(postgres):
    """A fresh database of the cluster for each test."""
    name = f"t{os.getpid()}_{time.monotonic_ns()}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    return postgres.rsplit("/", 1)[0] + f"/{name}"


def test_leases_keep_a_study_to_one_replica_until_they_lapse(database):
    a, b = PostgresStudyStore(database, lease_seconds=0.5), PostgresStudyStore(database, lease_seconds=30)
    ids = [a.add(f"{i}.png", "upload") for i in range(2)]
    first, second = a.claim(), b.claim()
    assert {first.id, second.id} == set(ids)  # SKIP LOCKED: never the same study
    assert b.claim() is None
    time.sleep(0.6)  # a stops renewing: its lease lapses and b takes the study over
    again = b.claim()
    assert again.id == first.id and again.attempts == 2
    assert not a.renew(first.id) and not a.finish(first.id, {"triage": {"priority": "high", "abnormal_probability": 1}})
    assert b.finish(first.id, {"triage": {"priority": "high", "abnormal_probability": 0.9}})
    assert a.get(first.id).status == "done"
    assert PostgresStudyStore(database).counts() == {"done": 1, "running": 1}  # a second start migrates nothing
    with psycopg.connect(database) as db:
        assert db.execute("SELECT version FROM radsight_schema").fetchall() == [(SCHEMA_VERSION,)]


def test_two_replicas_one_killed_every_study_done_once(database, tmp_path):
    data = tmp_path / "shared"
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    procs, urls = [], []
    try:
        for log in logs:
            proc, url = start_serve(data, log, "--db", database, "--lease-seconds", "3", "--no-bone-views")
            procs.append(proc)
            urls.append(url)
        signed_in = httpx.post(f"{urls[0]}/api/session", json={"token": "t"})
        cookies = {"radsight_session": signed_in.cookies["radsight_session"]}
        assert httpx.get(f"{urls[1]}/api/worklist", cookies=cookies).status_code == 200  # sessions are shared
        assert httpx.delete(f"{urls[1]}/api/session", cookies=cookies).status_code == 204
        assert httpx.get(f"{urls[0]}/api/worklist", cookies=cookies).status_code == 401  # and so is revoking one
        png = tmp_path / "x.png"
        headers = {"Authorization": "Bearer t"}
        ids = []
        for i in range(40):
            Image.fromarray((chest_phantom(256, 256, seed=i) * 255).astype(np.uint8)).save(png)
            with open(png, "rb") as fh:
                r = httpx.post(f"{urls[i % 2]}/api/studies", files={"file": (f"{i}.png", fh)}, headers=headers)
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        deadline = time.time() + 60
        while time.time() < deadline:  # kill replica a while studies are still running
            counts = httpx.get(f"{urls[1]}/api/worklist", headers=headers).json()["counts"]
            if counts.get("done", 0) >= 6:
                break
            time.sleep(0.1)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(timeout=10)
        deadline = time.time() + 180
        while time.time() < deadline:
            counts = httpx.get(f"{urls[1]}/api/worklist", headers=headers).json()["counts"]
            if counts.get("done", 0) == 40:
                break
            time.sleep(0.5)
        assert counts == {"done": 40}, counts
        listed = {s["id"] for s in httpx.get(f"{urls[1]}/api/worklist", headers=headers).json()["studies"]}
        assert listed == set(ids)
        with psycopg.connect(database) as db:
            attempts = dict(db.execute("SELECT id, attempts FROM studies").fetchall())
        assert all(1 <= attempts[i] <= 2 for i in ids)
        assert all((data / "results" / i / "study.json").is_file() for i in ids)
        assert "lease lost" not in logs[1].read_text()  # nothing finished twice
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=20)


def test_gathering_studies_refused_ones_and_the_migration_from_version_1(database):
    from radsight.service.pg import MIGRATIONS
    with psycopg.connect(database, autocommit=True) as db:  # a database a radsight of schema 1 made
        db.execute(MIGRATIONS[1])
        db.execute("CREATE TABLE radsight_schema (version INTEGER NOT NULL); INSERT INTO radsight_schema VALUES (1)")
        db.execute("INSERT INTO studies (id, received_at, filename, origin, status, updated_at) "
                   "VALUES ('old', 0, 'o.dcm', 'upload', 'queued', 0)")
    store = PostgresStudyStore(database)
    assert store.get("old").status == "queued"
    job = store.add("a.dcm", "stow", gather=("1.2.3", time.time() + 0.5))
    assert store.join("1.2.3", time.time() + 0.5) == job and store.join("9.9", time.time()) is None
    assert store.claim().id == "old" and store.claim() is None  # the study still gathers
    time.sleep(0.6)
    assert store.claim().id == job
    refused = store.add("l.dcm", "dimse:CR1", error="a lateral alone")
    assert (store.get(refused).status, store.get(refused).error) == ("failed", "a lateral alone")
    with psycopg.connect(database) as db:
        assert db.execute("SELECT version FROM radsight_schema").fetchall() == [(SCHEMA_VERSION,)]
