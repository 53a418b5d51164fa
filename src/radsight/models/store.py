"""Where models live: the ones shipped in the package, and a user store for added ones."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

from radsight.models.config import ModelConfig

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_MODEL = "radsight-nih64-demo"
# Lungs only. radsight-anatomy (lungs, heart, clavicles; the CTR from the heart) is not the default yet: its CTR
# ranks the NIH benchmark's Cardiomegaly worse (AUROC 0.81 against 0.90; its model card).
DEFAULT_LUNG_MODEL = "radsight-lung-unet"
ANATOMY_MODEL = "radsight-anatomy"
DEFAULT_TRIAGE_MODEL = "radsight-triage-256"  # the triage of analyze, serve and evaluate, when installed
LUNG_UNET_MODEL = "radsight-lung-unet"  # what the shipped classifiers' thorax and lung-masked inputs used
DEFAULT_BONE_MODEL = "radsight-bone-gan"
DEFAULT_VIEW_MODEL = "radsight-view-cnn"
DEFAULT_TWO_VIEW_MODEL = "radsight-twoview-demo"


class ModelNotFound(LookupError):
    pass


class ChecksumMismatch(RuntimeError):
    pass


def user_dir() -> Path:
    """``$RADSIGHT_HOME/models``, default ``~/.cache/radsight/models``."""
    home = os.environ.get("RADSIGHT_HOME") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "radsight"
    return Path(home) / "models"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def list_models() -> list[ModelConfig]:
    found: dict[str, ModelConfig] = {}
    for root in (BUILTIN_DIR, user_dir()):
        if root.is_dir():
            for cfg_file in sorted(root.glob("*/config.json")):
                cfg = ModelConfig.load(cfg_file.parent)
                found.setdefault(cfg.name, cfg)
    return list(found.values())


def get_model(name_or_path: str = DEFAULT_MODEL) -> ModelConfig:
    """A registered model by name, or a model folder (config.json + weights) by path."""
    path = Path(name_or_path)
    if (path / "config.json").is_file():
        return ModelConfig.load(path)
    for cfg in list_models():
        if cfg.name == name_or_path:
            return cfg
    known = ", ".join(c.name for c in list_models()) or "none"
    raise ModelNotFound(f"no model named {name_or_path!r} (registered: {known})")


INT8_SUFFIX = "-int8"


def int8_variant(model):
    """``NAME-int8`` for a model name whose int8 variant is registered (``radsight models quantize`` registers one
    only when it passed its check), else ``model`` as it is (a config, None, or a name without one)."""
    if not isinstance(model, str):
        return model
    try:
        return get_model(model + INT8_SUFFIX).name
    except ModelNotFound:
        return model


def verify(cfg: ModelConfig) -> Path:
    """The weights file, after checking it exists and matches the recorded sha256."""
    path = cfg.weights_path
    if not path.is_file():
        raise ModelNotFound(f"model {cfg.name}: weights file {path} is missing")
    if cfg.sha256:
        actual = sha256_file(path)
        if actual != cfg.sha256:
            raise ChecksumMismatch(f"model {cfg.name}: {path.name} sha256 {actual} != recorded {cfg.sha256}")
    return path
