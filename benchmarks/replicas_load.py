"""Replicas on one PostgreSQL against one server on SQLite, under the same load in the same run; then the
replicas again with one SIGKILLed mid-run.

Clients upload studies to their replica (to the other when it is gone) and poll any replica for the result:
every replica reads the one queue. Prints studies/s, p50 and p99 latency (upload until done), errors, and for
the run with a kill how many studies ended done, how many were claimed twice (the killed replica's running
ones) and whether any was lost. PostgreSQL is started on loopback by scripts/postgres.sh.

    python benchmarks/replicas_load.py --data ../shared/data/nih-cxr14/benchmark/images --studies 40 --clients 4
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psycopg
from serving import free_port, start_serve

from radsight.io import expand_inputs

TOKEN = "load-test"
ROOT = Path(__file__).resolve().parent.parent


def _serve(data: str, db: str | None) -> tuple[subprocess.Popen, str]:
    return start_serve(data, "--allow-ood", "--no-bone-views", "--lease-seconds", "5", *(["--db", db] if db else []),
                       token=TOKEN)


def _client(urls: list[str], files: list[Path], latencies: list[float], errors: list[str]) -> None:
    clients = [httpx.Client(base_url=u, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30) for u in urls]

    def call(method: str, *args, **kwargs):
        for http in clients:  # the client's own replica first, another when it is gone
            try:
                r = getattr(http, method)(*args, **kwargs)
                r.raise_for_status()
                return r
            except httpx.TransportError:
                continue
        raise httpx.TransportError("no replica answers")
    for path in files:
        start = time.perf_counter()
        try:
            study = call("post", "/api/studies", files={"file": (path.name, path.read_bytes())}).json()["id"]
            while (s := call("get", f"/api/studies/{study}").json())["status"] in ("queued", "running"):
                time.sleep(0.05)
            if s["status"] == "done":
                latencies.append(time.perf_counter() - start)
            else:
                errors.append(s["error"])
        except httpx.HTTPError as exc:
            errors.append(str(exc))


def _load(urls: list[str], files: list[Path], clients: int, kill: subprocess.Popen | None = None) -> dict:
    latencies, errors = [], []
    shares = [files[i::clients] for i in range(clients)]
    threads = [threading.Thread(target=_client, args=(urls[i % len(urls):] + urls[:i % len(urls)], share,
                                                      latencies, errors)) for i, share in enumerate(shares)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    if kill is not None:
        while len(latencies) < len(files) // 4:
            time.sleep(0.05)
        kill.send_signal(signal.SIGKILL)
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    lat = sorted(latencies)
    return {"rate": len(lat) / wall, "p50": statistics.median(lat) if lat else float("nan"),
            "p99": lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else float("nan"), "errors": len(errors)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()
    files = expand_inputs([args.data])[: args.studies]
    pg_dir = tempfile.mkdtemp(prefix="radsight-pg-")
    started = subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "start", pg_dir, str(free_port())],
                             capture_output=True, text=True, check=True)
    cluster = started.stdout.strip()
    rows = []
    try:
        with tempfile.TemporaryDirectory() as data:
            proc, url = _serve(data, None)
            rows.append(("1 replica, SQLite", _load([url], files, args.clients)))
            proc.terminate()
            proc.wait()
        for name, kill in (("2 replicas, PostgreSQL", False), ("2 replicas, PostgreSQL, one SIGKILLed", True)):
            db = f"{cluster.rsplit('/', 1)[0]}/load{len(rows)}"
            with psycopg.connect(cluster, autocommit=True) as admin:
                admin.execute(f"CREATE DATABASE load{len(rows)}")
            with tempfile.TemporaryDirectory() as data:
                replicas = [_serve(data, db) for _ in range(2)]
                result = _load([u for _, u in replicas], files, args.clients, replicas[0][0] if kill else None)
                with psycopg.connect(db) as conn:
                    result["done"] = conn.execute("SELECT COUNT(*) FROM studies WHERE status='done'").fetchone()[0]
                    result["claimed_twice"] = conn.execute(
                        "SELECT COUNT(*) FROM studies WHERE attempts > 1").fetchone()[0]
                    result["rows"] = conn.execute("SELECT COUNT(*) FROM studies").fetchone()[0]
                for proc, _ in replicas:
                    if proc.poll() is None:
                        proc.terminate()
                        proc.wait()
            rows.append((name, result))
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "postgres.sh"), "stop", pg_dir], capture_output=True)
    print(f"{len(files)} studies from {args.data}, {args.clients} clients, {os.cpu_count()} cores; demo model, "
          f"no bone views")
    print("| setup | studies/s | p50 | p99 | errors | done / uploaded | claimed twice |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base = rows[0][1]["rate"]
    for name, r in rows:
        done = f"{r['done']} / {r['rows']}" if "done" in r else "—"
        print(f"| {name} | {r['rate']:.2f} ({r['rate'] / base:.2f}x) | {r['p50'] * 1000:.0f} ms | "
              f"{r['p99'] * 1000:.0f} ms | {r['errors']} | {done} | {r.get('claimed_twice', '—')} |")


if __name__ == "__main__":
    main()
