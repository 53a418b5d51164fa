"""``radsight models pull`` and ``import``: publishers' weights into the user store, as radsight models."""
from __future__ import annotations

import shutil
from pathlib import Path
from urllib.parse import urlparse

from radsight.models.catalog import CATALOG, FORMAT_DEFAULTS, Published
from radsight.models.config import ModelConfig
from radsight.models.download import DownloadError, Offline, Progress, download
from radsight.models.store import ModelNotFound, sha256_file, user_dir


class ConversionUnavailable(RuntimeError):
    pass


def downloads_dir() -> Path:
    return user_dir().parent / "downloads"


def published(name: str) -> Published:
    if name not in CATALOG:
        raise ModelNotFound(f"no published model named {name!r} (known: {', '.join(CATALOG)})")
    return CATALOG[name]


def pull(name: str, progress: Progress | None = None) -> ModelConfig:
    """Download (or reuse) the publisher's file, check its sha256, convert it into the user store."""
    entry = published(name)
    dest = downloads_dir() / Path(urlparse(entry.url).path).name
    record = dest.with_name(dest.name + ".sha256")
    expected = entry.sha256 or (record.read_text().split()[0] if record.is_file() else None)
    if dest.is_file():
        digest = sha256_file(dest)
        if expected and digest != expected:
            raise DownloadError(f"{dest} has sha256 {digest}, not the {expected} recorded when it was first "
                                f"downloaded; delete it and pull again")
    else:
        try:
            digest = download(entry.url, dest, expected, progress)
        except Offline as exc:
            raise Offline(f"{exc}. Without network, fetch {entry.url} on another machine and run: "
                          f"radsight models import {entry.format} FILE --name {entry.name}") from exc
    if not record.is_file():
        record.write_text(f"{digest}  {dest.name}\n")
    return import_file(entry.format, dest, entry.name, entry, digest)


def import_file(fmt: str, file: Path, name: str, entry: Published | None = None,
                source_sha256: str | None = None) -> ModelConfig:
    """Convert a checkpoint the user has into ``<store>/<name>``; the old folder is replaced only on success."""
    entry = entry or CATALOG.get(name) or FORMAT_DEFAULTS.get(fmt)
    if entry is None:
        raise ModelNotFound(f"unknown format {fmt!r}; known: {', '.join(FORMAT_DEFAULTS)}")
    if entry.format != fmt:
        raise ValueError(f"{entry.name} is a {entry.format} model, not {fmt}")
    try:
        from radsight.convert.importers import import_checkpoint
    except ImportError as exc:
        raise ConversionUnavailable(f"converting weights needs PyTorch: pip install 'radsight[train]' ({exc})") from exc
    final = user_dir() / name
    staging = final.with_name(f".{name}.importing")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        cfg = import_checkpoint(fmt, file, staging, name, entry, source_sha256)
    finally:
        if not (staging / "config.json").is_file():
            shutil.rmtree(staging, ignore_errors=True)
    if final.exists():
        shutil.rmtree(final)
    staging.rename(final)
    cfg.directory = final
    return cfg
