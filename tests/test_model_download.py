"""Model downloads against a local HTTP server: resume, truncation, checksum, offline; and the catalog."""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from radsight.convert import pull
from radsight.models import catalog
from radsight.models.download import DownloadError, Offline, download, part_path

from conftest import free_port

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    truncate_at: int | None = None  # send only this many bytes of the body, then close
    ranges: list[str | None] = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        start = 0
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        if header:
            start = int(re.match(r"bytes=(\d+)-", header).group(1))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        limit = type(self).truncate_at
        self.wfile.write(body if limit is None else body[:limit])
        if limit is not None:
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.truncate_at, _Handler.ranges = None, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/weights.pt"
    httpd.shutdown()


def test_download_checks_sha256_and_renames_atomically(server, tmp_path):
    seen = []
    dest = tmp_path / "w.pt"
    assert download(server, dest, DIGEST, progress=lambda n, total: seen.append((n, total))) == DIGEST
    assert dest.read_bytes() == PAYLOAD and not part_path(dest).exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_truncated_transfer_keeps_the_part_and_resumes(server, tmp_path):
    dest = tmp_path / "w.pt"
    _Handler.truncate_at = 300_000
    with pytest.raises(DownloadError, match="truncated at 300000 of 1048576"):
        download(server, dest, DIGEST)
    assert not dest.exists() and part_path(dest).stat().st_size == 300_000
    _Handler.truncate_at = None
    assert download(server, dest, DIGEST) == DIGEST
    assert _Handler.ranges[-1] == "bytes=300000-"
    assert dest.read_bytes() == PAYLOAD


def test_checksum_mismatch_deletes_the_download(server, tmp_path):
    dest = tmp_path / "w.pt"
    with pytest.raises(DownloadError, match="does not match"):
        download(server, dest, "0" * 64)
    assert not dest.exists() and not part_path(dest).exists()


def test_offline_fails_fast_and_leaves_nothing(tmp_path):
    port = free_port()  # nobody listens there
    dest = tmp_path / "w.pt"
    start = time.perf_counter()
    with pytest.raises(Offline, match="cannot reach"):
        download(f"http://127.0.0.1:{port}/w.pt", dest)
    assert time.perf_counter() - start < 5
    assert list(tmp_path.iterdir()) == []


def test_pull_offline_says_how_to_import_by_hand(tmp_path, monkeypatch):
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path))
    entry = catalog.CATALOG["xrv-densenet121-res224-nih"]
    monkeypatch.setitem(catalog.CATALOG, entry.name, replace(entry, url="http://radsight.invalid/w.pt"))
    with pytest.raises(Offline, match="radsight models import xrv-densenet FILE --name xrv-densenet121-res224-nih"):
        pull.pull(entry.name)
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


def test_pull_records_the_first_digest_and_refuses_a_changed_file(server, tmp_path, monkeypatch):
    monkeypatch.setenv("RADSIGHT_HOME", str(tmp_path))
    entry = replace(catalog.CATALOG["xrv-densenet121-res224-nih"], url=server)
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    monkeypatch.setattr(pull, "import_file", lambda *a, **k: "converted")
    assert pull.pull(entry.name) == "converted"
    record = pull.downloads_dir() / "weights.pt.sha256"
    assert record.read_text().split()[0] == DIGEST
    (pull.downloads_dir() / "weights.pt").write_bytes(b"tampered")
    with pytest.raises(DownloadError, match="not the .* recorded"):
        pull.pull(entry.name)


def test_catalog_keeps_publishers_labels_and_thresholds():
    nih = catalog.CATALOG["xrv-densenet121-res224-nih"]
    assert len(nih.labels) == 18 and nih.labels[14:] == [""] * 4
    assert nih.operating_points()["Atelectasis"] == pytest.approx(0.039117552)
    chex = catalog.CATALOG["xrv-densenet121-res224-chex"]
    assert "Lung Opacity" in chex.operating_points() and "Infiltration" not in chex.operating_points()
    assert set(catalog.FORMAT_DEFAULTS) == {"xrv-densenet", "xrv-resnet", "chexnet", "gusarev-bone", "xrv-pspnet",
                                            "xrv-riken-age"}
    assert catalog.CATALOG["xrv-riken-age"].input.size == 320 and catalog.CATALOG["xrv-riken-age"].labels == ["age"]
