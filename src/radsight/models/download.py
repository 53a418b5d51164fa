"""Downloads that resume, check their sha256 and appear only when complete (atomic rename)."""
from __future__ import annotations

import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from radsight.models.store import sha256_file

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes so far, total bytes or None)


class DownloadError(RuntimeError):
    pass


class Offline(DownloadError):
    """The server cannot be reached at all (no network, no DNS, connection refused)."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def download(url: str, dest: Path, sha256: str | None = None, progress: Progress | None = None,
             timeout: float = 15.0) -> str:
    """Fetch ``url`` to ``dest`` and return its sha256.

    Bytes arrive in ``dest.part``; an interrupted transfer leaves that file and the next call asks the server
    for the rest (HTTP Range). Only a complete file whose sha256 matches ``sha256`` (when given) is renamed to
    ``dest``; a mismatch deletes the partial file. Nothing is left behind when the server cannot be reached.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "radsight"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part file is already whole
            return _finish(part, dest, sha256)
        _drop_empty(part)
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (TimeoutError, urllib.error.URLError, ConnectionError) as exc:
        _drop_empty(part)
        reason = getattr(exc, "reason", exc)
        raise Offline(f"cannot reach {url} ({reason})") from exc
    with response:
        resumed = have and response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        received = have
        with open(part, "ab" if resumed else "wb") as fh:
            try:
                for block in iter(lambda: response.read(CHUNK), b""):
                    fh.write(block)
                    received += len(block)
                    if progress:
                        progress(received, total)
            except http.client.IncompleteRead as exc:  # the server closed before Content-Length bytes
                fh.write(exc.partial)
                received += len(exc.partial)
            except (TimeoutError, OSError) as exc:
                raise DownloadError(f"{url}: transfer broke off after {received} bytes ({exc}); "
                                    f"run again to resume") from exc
    if total is not None and received < total:
        raise DownloadError(f"{url}: transfer truncated at {received} of {total} bytes; run again to resume")
    return _finish(part, dest, sha256)


def _finish(part: Path, dest: Path, sha256: str | None) -> str:
    actual = sha256_file(part)
    if sha256 and actual != sha256.lower():
        part.unlink()
        raise DownloadError(f"{dest.name}: sha256 {actual} does not match the expected {sha256}; "
                            f"the download was deleted")
    os.replace(part, dest)
    return actual


def _drop_empty(part: Path) -> None:
    if part.exists() and part.stat().st_size == 0:
        part.unlink()

