"""Rows for ``radsight models list``: installed models, then publishers' weights not yet pulled."""
from __future__ import annotations

from radsight.models.catalog import CATALOG
from radsight.models.config import ModelConfig
from radsight.models.store import list_models


def _metrics(metrics: dict) -> str:
    return "; ".join(f"{k} {v}" for k, v in metrics.items()) or "not measured here"


def _quantized(cfg: ModelConfig) -> str:
    q = cfg.quantization
    if not q:
        return ""
    check = q.get("check") or {}
    shown = [(label, check[key]) for key, label in CHECK_FIGURES if key in check]
    measured = f"; {', '.join(f'{label} {v:.4f}' for label, v in shown)} on {check['set']}" if shown else ""
    return f"\n    {q['precision']} variant of {q['source']} {q['source_version']}{measured}"


# what each kind of int8 check measured, as its quantization block names it
CHECK_FIGURES = (("max_abs_dp", "max |Δp|"), ("max_dice_drop", "max Dice drop"),
                 ("max_abs_age_years", "max |Δage| (years)"), ("max_abs_dp_female", "max |ΔP(female)|"),
                 ("psnr_drop_db", "PSNR drop (dB)"), ("max_abs_dp_lateral", "max |ΔP(lateral)|"))


def _views(cfg: ModelConfig) -> str:
    """Which views a classifier reads (other tasks: nothing to say)."""
    if cfg.task != "classification":
        return ""
    return "; views: frontal + lateral (a study)" if cfg.reads_lateral else "; views: frontal"


def _installed_row(cfg: ModelConfig) -> str:
    return (f"{cfg.name}  [installed: {cfg.directory}]{_quantized(cfg)}\n"
            f"    {cfg.task}{_views(cfg)}: {cfg.architecture}, input {cfg.input.size}px ({' + '.join(cfg.input.sources)}; "
            f"{cfg.input.pixels} pixels, {cfg.input.resample}), "
            f"{len(cfg.labels)} outputs: {', '.join(cfg.labels)}\n"
            f"    trained on: {cfg.training_data or 'unknown'}; licence: {cfg.license or 'unknown'}; "
            f"metrics: {_metrics(cfg.metrics)}")


def model_rows() -> list[str]:
    installed = list_models()
    rows = [_installed_row(cfg) for cfg in installed]
    names = {cfg.name for cfg in installed}
    for entry in CATALOG.values():
        if entry.name in names:
            continue
        labels = [label for label in entry.labels if label]
        rows.append(f"{entry.name}  [not pulled: radsight models pull {entry.name}]\n"
                    f"    {entry.architecture}, input {entry.input.size}px, {len(labels)} outputs: {', '.join(labels)}\n"
                    f"    trained on: {entry.training_data}; licence: {entry.license}; "
                    f"metrics: {_metrics(entry.metrics)}\n    from {entry.url}")
    return rows
