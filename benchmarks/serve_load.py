"""Load on ``radsight serve`` over loopback: N concurrent clients upload studies and wait for their results.

Reports sustained studies/s, p50/p99 latency (upload until the result is ready), errors, and the ratio of
the service's p50 latency to bare analyze time (``Predictor.predict`` on the same images, same machine): with the
default predictor, and with the service's own options (its alternate maps, its deferred computed views).

    python benchmarks/serve_load.py --data ../shared/data/nih-cxr14/benchmark/images --clients 4 --studies 40

Clients poll each study every 20 ms (``--wait``: one request that the server answers once the outcome is there);
``--processes``: the service's workers as processes.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import httpx
from serving import start_serve

from radsight.io import expand_inputs, load_image
from radsight.pipeline.options import PredictorOptions
from radsight.pipeline.predictor import Predictor
from radsight.service.app import service_options
from radsight.service.context import Settings

TOKEN = "load-test"


def _client(url: str, files: list[Path], latencies: list[float], errors: list[str], wait: bool) -> None:
    """Upload each file and wait for its outcome: polling every 20 ms, or with ``wait`` asking the server to
    answer once it is there (``?wait=``)."""
    http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    for path in files:
        start = time.perf_counter()
        try:
            r = http.post("/api/studies", files={"file": (path.name, path.read_bytes())})
            r.raise_for_status()
            ask = f"/api/studies/{r.json()['id']}" + ("?wait=30" if wait else "")
            while (s := http.get(ask).json())["status"] in ("queued", "running"):
                if not wait:
                    time.sleep(0.02)
            if s["status"] != "done":
                errors.append(s["error"])
                continue
            latencies.append(time.perf_counter() - start)
        except httpx.HTTPError as exc:
            errors.append(str(exc))


def _predict_times(predictor: Predictor, files: list[Path]) -> list[float]:
    """Seconds to read and predict each file, after one run to warm the predictor."""
    predictor.predict(load_image(files[0]))
    times = []
    for f in files:
        t = time.perf_counter()
        predictor.predict(load_image(f))
        times.append(time.perf_counter() - t)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--studies", type=int, default=40, help="in all, spread over the clients")
    parser.add_argument("--workers", type=int, default=1, help="the service's analysis threads")
    parser.add_argument("--int8", action="store_true", help="the service runs the registered int8 variants")
    parser.add_argument("--processes", action="store_true", help="the service's workers as processes")
    parser.add_argument("--wait", action="store_true", help="clients wait with ?wait= instead of polling")
    parser.add_argument("--data-dir", type=Path, help="where the service's data folder is made (default: the "
                        "system's temporary folder; the service writes about 20 files a study there)")
    args = parser.parse_args()
    files = expand_inputs([args.data])[: args.studies]
    bare = _predict_times(Predictor(), files)
    options = PredictorOptions(bone_views=True, int8=args.int8)
    served_predictor = service_options(Settings(Path("."), TOKEN, options, workers=args.workers)).predictor()
    served = _predict_times(served_predictor, files)
    with tempfile.TemporaryDirectory(dir=args.data_dir) as data:
        server, url = start_serve(data, "--allow-ood", "--workers", str(args.workers), *["--int8"][:args.int8],
                                  *["--worker-processes"][:args.processes],
                                  token=TOKEN)
        try:
            latencies, errors = [], []
            shares = [files[i::args.clients] for i in range(args.clients)]
            threads = [threading.Thread(target=_client, args=(url, share, latencies, errors, args.wait))
                       for share in shares]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - start
        finally:
            server.terminate()
            server.wait(timeout=30)
    served_after = _predict_times(served_predictor, files)  # the machine drifts: the same again, after the load
    lat = sorted(latencies)
    p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    print(f"{len(files)} studies from {args.data}, {args.clients} clients, {args.workers} worker(s), loopback"
          + (", worker processes" if args.processes else "") + (", clients wait (?wait=)" if args.wait else ""))
    print(f"sustained {len(lat) / elapsed:.2f} studies/s; latency p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; "
          f"errors {len(errors)}")
    print(f"bare analyze (Predictor.predict): median {statistics.median(bare) * 1000:.0f} ms/image; "
          f"service p50 / bare: {p50 / statistics.median(bare):.2f}")
    print(f"predict with the service's options: median {statistics.median(served) * 1000:.0f} ms/image; "
          f"service p50 / it: {p50 / statistics.median(served):.2f}")
    both = statistics.median(served + served_after)
    print(f"predict with the service's options, before and after the load: median {both * 1000:.0f} ms/image; "
          f"service p50 / it: {p50 / both:.2f}")


if __name__ == "__main__":
    main()
