"""What every command shares: the error line and exit code, the predictor built from options, the model store."""
from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: MESSAGE`` and return the exit to raise (2: a usage error; 1: nothing could be done)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def echo_once(line: str) -> None:
    """Under torchrun, one line for the run (rank 0's)."""
    if os.environ.get("RANK", "0") == "0":
        typer.echo(line)


def build_predictor(model_or_options, lung_model: str | None = None):
    """A predictor from :class:`~radsight.pipeline.options.PredictorOptions`, or from a model name and lung model;
    a model that cannot be loaded is a usage error."""
    from radsight.models.store import ChecksumMismatch, ModelNotFound
    from radsight.pipeline.options import PredictorOptions
    options = model_or_options if isinstance(model_or_options, PredictorOptions) else \
        PredictorOptions(model=model_or_options, lung_model=lung_model)
    try:
        return options.predictor()
    except (ModelNotFound, ChecksumMismatch, ValueError) as exc:
        raise fail(str(exc))


def check_device(device: str) -> None:
    """A usage error unless ONNX Runtime can run on ``device`` (``radsight.runtime.onnx.execution_providers``)."""
    from radsight.runtime.onnx import execution_providers
    try:
        execution_providers(device)
    except ValueError as exc:
        raise fail(str(exc))


def use_cache_dir(cache_dir: Optional[Path]) -> None:
    if cache_dir is not None:
        os.environ["RADSIGHT_HOME"] = str(cache_dir)


def models_call(fn, *args):
    from radsight.convert.pull import ConversionUnavailable
    from radsight.models.download import DownloadError
    from radsight.models.store import ModelNotFound
    try:
        return fn(*args)
    except (DownloadError, ConversionUnavailable, ModelNotFound, ValueError) as exc:
        raise fail(str(exc))


def stderr():
    from rich.console import Console
    return Console(stderr=True)


@contextmanager
def training_log():
    """Training's progress lines (the ``radsight.train`` logger) as plain lines on this command's standard output."""
    logger = logging.getLogger("radsight.train")
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)


def configure_logging(level: int = logging.WARNING, fmt: str = "%(levelname)s %(name)s: %(message)s") -> None:
    """The command's log on stderr with no patient data in it: every handler redacts quoted values, Python warnings
    pass through it (redacted), pydicom's own warning lines (radsight logs them redacted at DEBUG) and highdicom's
    INFO lines are left out."""
    from radsight.io.library_warnings import Redacting
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(fmt))
        root.addHandler(handler)
    root.setLevel(level)
    for handler in root.handlers:
        if not any(isinstance(f, Redacting) for f in handler.filters):
            handler.addFilter(Redacting())
    logging.captureWarnings(True)
    logging.getLogger("pydicom").setLevel(logging.ERROR)
    logging.getLogger("highdicom").setLevel(logging.WARNING)
    logging.getLogger("dicomweb_client").setLevel(logging.WARNING)  # a line per request otherwise
