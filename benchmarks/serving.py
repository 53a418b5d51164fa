"""A ``radsight serve`` process on a free loopback port, for the service benchmarks."""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(data: str, *args: str, token: str, startup_s: float = 60.0) -> tuple[subprocess.Popen, str]:
    """``radsight serve --data-dir data --token token ARGS`` on a free loopback port, once it answers; its process
    and URL (SystemExit when it does not answer within ``startup_s``)."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "radsight", "serve", "--data-dir", data, "--port", str(port),
                               "--token", token, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + startup_s
    while time.time() < deadline:
        try:
            httpx.get(url + "/api/worklist", timeout=1)
            return server, url
        except httpx.HTTPError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit(f"{url} did not start")
