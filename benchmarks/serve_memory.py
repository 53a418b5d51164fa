"""The service's memory under a burst: ``radsight serve`` (defaults, one worker) is warmed with one study, then N
clients upload one benchmark film each at once; its resident memory (RSS, from /proc, with
its worker processes') is sampled throughout.

    python benchmarks/serve_memory.py --data ../shared/data/nih-cxr14/benchmark/images --uploads 50

Prints the idle baseline after warm-up, the peak during the burst, and the RSS once the queue is done and the
server idle (``--settle`` seconds), as MB and as ratios to the baseline (the targets: peak under 2 GB, after within
20% of the baseline).
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import httpx
from serving import start_serve

from radsight.io import expand_inputs

TOKEN = "memory-test"


def rss_mb(pid: int) -> float:
    """The resident memory of ``pid`` and its descendants (worker processes), in MB."""
    total = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            total = int(line.split()[1]) / 1024
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                total += rss_mb(int(child))
            except (FileNotFoundError, ProcessLookupError):  # ended meanwhile
                pass
    return total


def _upload(url: str, path: Path, ids: list[str], errors: list[str]) -> None:
    try:
        r = httpx.post(url + "/api/studies", files={"file": (path.name, path.read_bytes())},
                       headers={"Authorization": f"Bearer {TOKEN}"}, timeout=600)
        if r.status_code == 202:
            ids.append(r.json()["id"])
        else:
            errors.append(f"{r.status_code} {r.text[:120]}")
    except httpx.HTTPError as exc:
        errors.append(str(exc))


def _wait_done(url: str, ids: list[str], deadline: float) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    pending = set(ids)
    while pending and time.time() < deadline:
        pending = {i for i in pending
                   if httpx.get(f"{url}/api/studies/{i}", headers=headers).json()["status"] in ("queued", "running")}
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--uploads", type=int, default=50)
    parser.add_argument("--settle", type=float, default=10.0, help="idle seconds before the 'after' reading")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--processes", action="store_true", help="the service's workers as processes")
    args = parser.parse_args()
    files = expand_inputs([args.data])[: args.uploads + 1]
    with tempfile.TemporaryDirectory() as data:
        server, url = start_serve(data, "--workers", str(args.workers), *["--worker-processes"][:args.processes],
                                  token=TOKEN)
        try:
            warm_ids: list[str] = []
            _upload(url, files[0], warm_ids, [])
            _wait_done(url, warm_ids, time.time() + 120)
            time.sleep(args.settle)
            baseline = rss_mb(server.pid)
            ids, errors, peak, stop = [], [], [baseline], threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    peak.append(rss_mb(server.pid))
                    time.sleep(0.05)
            sampler = threading.Thread(target=sample)
            sampler.start()
            start = time.perf_counter()
            clients = [threading.Thread(target=_upload, args=(url, f, ids, errors)) for f in files[1:]]
            for t in clients:
                t.start()
            for t in clients:
                t.join()
            _wait_done(url, ids, time.time() + 1200)
            burst = time.perf_counter() - start
            stop.set()
            sampler.join()
            time.sleep(args.settle)
            after = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=60)
    kind = "processes" if args.processes else "thread(s)"
    print(f"{len(files) - 1} concurrent uploads from {args.data}, {args.workers} worker {kind}: {len(ids)} queued, "
          f"{len(errors)} refused or failed, done in {burst:.1f} s")
    print(f"RSS idle baseline {baseline:.0f} MB; peak {max(peak):.0f} MB ({max(peak) / baseline:.2f}x); "
          f"after {args.settle:g} s idle {after:.0f} MB ({after / baseline:.2f}x the baseline)")


if __name__ == "__main__":
    main()
