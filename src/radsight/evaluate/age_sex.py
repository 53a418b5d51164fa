"""The age and sex model measured on films with stated ages and sexes (``radsight evaluate --task age-sex``).

metrics.json: ``age.mae`` (the bias-corrected estimate), ``age.uncorrected_mae``, ``age.baseline_mae`` (always
saying the training films' mean age), ``age.r2``, ``age.pearson_r``, ``age.bias_slope_before``/``_after`` (the slope
of estimate minus age against age, raw and corrected), ``age.gap_slope`` (of the reported gap), ``age.mae_by_decade``;
``sex.auroc`` and ``sex.false_alarm_rate`` (correctly labelled films the mix-up check flags); 95% CIs under ``..._ci``
from a patient bootstrap. Plots: estimate against stated age, and Bland-Altman of the gap.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import r2_score, roc_auc_score

from radsight.core import InputError
from radsight.data.demographics import Demographics, read_demographics
from radsight.evaluate.progress import stage
from radsight.evaluate.request import EvaluateRequest
from radsight.evaluate.scores import Bootstrap
from radsight.heads.age_sex import age_gap, corrected_age
from radsight.inputs.preprocess import prepare
from radsight.io import load_image
from radsight.models.config import ModelConfig
from radsight.models.store import get_model
from radsight.runtime.onnx import OnnxModel, sigmoid


def estimate(cfg: ModelConfig, rows: Demographics) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Raw age estimates and P(female) (NaN where the model has no sex output or the film is unreadable) for every
    row, and the unreadable films' errors."""
    session = OnnxModel(cfg)
    raw, p_female, errors = np.full(len(rows), np.nan), np.full(len(rows), np.nan), []
    with stage(f"estimating {len(rows)} films", len(rows)) as progress:
        for i in range(len(rows)):
            try:
                out = session.run(prepare(load_image(rows.path(i)), cfg.input)[0][None])
            except InputError as exc:
                errors.append(str(exc))
            else:
                raw[i] = float(out["age"].reshape(-1)[0])
                if "female_logit" in out:
                    p_female[i] = float(sigmoid(out["female_logit"].reshape(-1)[0]))
            progress.advance()
    return raw, p_female, errors


def _mae(err: np.ndarray, w: np.ndarray | None = None) -> float:
    return float(np.average(np.abs(err), weights=w))


def _pearson(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    c = np.cov(x, y, aweights=w)
    return float(c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]))


def _auroc(y: np.ndarray, s: np.ndarray, w: np.ndarray | None = None) -> float:
    if w is not None:
        keep = w > 0
        y, s, w = y[keep], s[keep], w[keep]
    return float(roc_auc_score(y, s, sample_weight=w)) if len(np.unique(y)) == 2 else float("nan")


def _with_ci(out: dict, name: str, fn, weights: np.ndarray) -> None:
    out[name] = fn(None)
    draws = np.asarray([fn(w) for w in weights if w.sum() > 0])
    draws = draws[np.isfinite(draws)]
    out[f"{name}_ci"] = [float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))] if len(draws) else None


def age_metrics(raw: np.ndarray, age: np.ndarray, patients: list[str], fitted: dict, n: int) -> dict:
    est = corrected_age(raw, fitted)
    gap = age_gap(raw, age, fitted)
    weights = Bootstrap(patients, n).weights().astype(float)
    out: dict = {"films": int(len(age)), "mean_stated_age": float(age.mean())}
    mean = fitted.get("train_mean_age")
    _with_ci(out, "mae", lambda w: _mae(est - age, w), weights)
    _with_ci(out, "uncorrected_mae", lambda w: _mae(raw - age, w), weights)
    if mean is not None:
        _with_ci(out, "baseline_mae", lambda w: _mae(mean - age, w), weights)
    else:
        out["baseline_mae"] = None
    _with_ci(out, "r2", lambda w: float(r2_score(age, est, sample_weight=w)), weights)
    _with_ci(out, "pearson_r", lambda w: _pearson(est, age, w), weights)
    slope = lambda d: (lambda w: float(np.polyfit(age, d, 1, w=None if w is None else np.sqrt(w))[0]))  # noqa: E731
    _with_ci(out, "bias_slope_before", slope(raw - age), weights)
    _with_ci(out, "bias_slope_after", slope(est - age), weights)
    _with_ci(out, "gap_slope", slope(gap), weights)
    out["mean_gap"] = float(gap.mean())
    decades = np.clip(age // 10 * 10, 0, 90).astype(int)
    out["mae_by_decade"] = {f"{d}-{d + 9}" if d < 90 else "90+": {"films": int((decades == d).sum()),
                                                                    "mae": _mae((est - age)[decades == d])}
                            for d in sorted(set(decades))}
    return out


def sex_metrics(p_female: np.ndarray, female: np.ndarray, patients: list[str], threshold: float | None,
                n: int) -> dict:
    weights = Bootstrap(patients, n).weights().astype(float)
    out: dict = {"films": int(len(female)), "female": int(female.sum())}
    _with_ci(out, "auroc", lambda w: _auroc(female, p_female, w), weights)
    if threshold is not None:
        other = np.where(female == 1, 1 - p_female, p_female)
        out["mismatch_threshold"] = threshold
        out["false_alarm_rate"] = float((other > threshold).mean())
    return out


def plots(out: Path, raw: np.ndarray, age: np.ndarray, fitted: dict) -> None:
    est = corrected_age(raw, fitted)
    fig = Figure(figsize=(10, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    left.scatter(age, raw, s=6, alpha=0.4, c="grey", label="raw")
    left.scatter(age, est, s=6, alpha=0.6, c="tab:blue", label="bias-corrected")
    top = max(100.0, float(np.nanmax(est)))
    left.plot([0, top], [0, top], ls=":", c="k")
    left.set(xlabel="stated age (years)", ylabel="apparent age (years)", title="Apparent against stated age")
    left.legend(fontsize=8)
    mean, diff = (est + age) / 2, est - age
    centre, spread = float(diff.mean()), 1.96 * float(diff.std())
    right.scatter(mean, diff, s=6, alpha=0.6, c="tab:blue")
    for level, style in ((centre, "-"), (centre - spread, "--"), (centre + spread, "--")):
        right.axhline(level, ls=style, c="k", lw=0.8)
    right.set(xlabel="mean of apparent and stated age", ylabel="apparent − stated (years)",
              title=f"Bland-Altman: {centre:+.1f} ± {spread:.1f} y")
    fig.savefig(out / "age.png", dpi=110)


def evaluate_age_sex(cfg: ModelConfig, rows: Demographics, out: Path, bootstrap: int = 1000) -> dict:
    raw, p_female, errors = estimate(cfg, rows)
    aged = ~np.isnan(raw) & ~np.isnan(rows.age)
    sexed = ~np.isnan(p_female) & ~np.isnan(rows.female)
    patients = np.asarray(rows.patients)
    metrics: dict = {"model": cfg.name, "version": cfg.version, "fitted": cfg.fitted, "unreadable": errors}
    if aged.sum() < 2:
        raise ValueError("fewer than 2 readable films with a stated age")
    metrics["age"] = age_metrics(raw[aged], rows.age[aged], list(patients[aged]), cfg.fitted, bootstrap)
    metrics["sex"] = sex_metrics(p_female[sexed], rows.female[sexed], list(patients[sexed]),
                                 cfg.fitted.get("sex_mismatch_threshold"), bootstrap) if sexed.any() else None
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    plots(out, raw[aged], rows.age[aged], cfg.fitted)
    (out / "report.md").write_text(report(metrics))
    return metrics


def _ci(d: dict, name: str, fmt: str = ".2f") -> str:
    ci = d.get(f"{name}_ci")
    value = d.get(name)
    if value is None:
        return "—"
    return f"{value:{fmt}}" + (f" [{ci[0]:{fmt}}, {ci[1]:{fmt}}]" if ci else "")


def report(m: dict) -> str:
    a, s = m["age"], m["sex"]
    lines = [f"# Age and sex: {m['model']} {m['version']}", "",
             f"{a['films']} films with a stated age (mean {a['mean_stated_age']:.1f} y); 95% CIs from a patient "
             "bootstrap.", "", "| age | value |", "|---|---|",
             f"| MAE, bias-corrected (years) | {_ci(a, 'mae')} |", f"| MAE, uncorrected | {_ci(a, 'uncorrected_mae')} |",
             f"| MAE of the training mean (baseline) | {_ci(a, 'baseline_mae')} |", f"| R² | {_ci(a, 'r2', '.3f')} |",
             f"| Pearson r | {_ci(a, 'pearson_r', '.3f')} |",
             f"| slope of (estimate − age) on age, before correction | {_ci(a, 'bias_slope_before', '.3f')} |",
             f"| the same after correction | {_ci(a, 'bias_slope_after', '.3f')} |",
             f"| slope of the reported gap on age | {_ci(a, 'gap_slope', '.3f')} |", "",
             "| decade | films | MAE |", "|---|---|---|"]
    lines += [f"| {d} | {v['films']} | {v['mae']:.2f} |" for d, v in a["mae_by_decade"].items()]
    if s:
        lines += ["", f"Sex: {s['films']} films ({s['female']} female); AUROC {_ci(s, 'auroc', '.3f')}"
                  + (f"; the mix-up check (threshold {s['mismatch_threshold']:.3f}) flags "
                     f"{100 * s['false_alarm_rate']:.1f}% of correctly labelled films" if "false_alarm_rate" in s
                     else "") + "."]
    if m["unreadable"]:
        lines += ["", f"{len(m['unreadable'])} films could not be read."]
    return "\n".join(lines + ["", "![apparent against stated age; Bland-Altman](age.png)", ""])


def from_request(r: EvaluateRequest) -> str:
    """``radsight evaluate --task age-sex``: the manifest's rows (``--split``), ages and sexes from its columns,
    filled from ``--metadata``."""
    r.need("manifest", "images")
    rows = read_demographics(r.manifest, r.images, r.metadata)
    if r.split is not None:
        rows = rows.split(r.split)
    if r.subset:
        rows = rows.select([i for i, name in enumerate(rows.images) if name in r.subset])
    keep = [i for i in range(len(rows)) if not (np.isnan(rows.age[i]) and np.isnan(rows.female[i]))]
    if not keep:
        raise ValueError("no rows with a stated age or sex (give --metadata for manifests without those columns)")
    m = evaluate_age_sex(get_model(r.model), rows.select(keep), r.out, r.bootstrap)
    sex = f"; sex AUROC {m['sex']['auroc']:.3f}" if m["sex"] else ""
    return (f"{m['age']['films']} films: age MAE {m['age']['mae']:.2f} y (uncorrected {m['age']['uncorrected_mae']:.2f})"
            f"{sex}; report in {r.out}")
