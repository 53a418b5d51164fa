"""The age and sex head: the film's apparent age, bias-corrected, with an 80% interval and its gap from the stated
age; its apparent sex, and a flag when that confidently contradicts the stated sex (a possible mix-up of films).

An age model's estimates regress towards the training mean: old patients are underestimated, young ones over.
The correction is fitted on validation films as ``raw = a·age + b`` and applied as ``(raw − b) / a``, so it needs
no stated age. The gap (estimate minus stated age) keeps a dependence on age even so; it is corrected the
brain-age way, ``gap − (α·age + β)``, fitted on the same films. Both live in the model config's ``fitted``.
"""
from __future__ import annotations

import numpy as np

from radsight.core import OLDEST_WRITTEN, AgeEstimate, ModelRef, Prediction, Radiograph, SexEstimate
from radsight.heads.base import Head
from radsight.inputs.preprocess import prepare, resize, working_size
from radsight.models.config import AGE_SEX, ModelConfig
from radsight.runtime.onnx import sigmoid

DEFAULT_AGE_MODEL = "radsight-age-sex-demo"
AGE_MAP = "Age"  # the name ``--heatmaps-for`` takes for the age evidence map
FALSE_ALARMS = 0.01  # the share of correctly labelled validation films the sex check may flag
AGE_COLOUR, ALERT_COLOUR = (120, 230, 120), (255, 90, 90)
IDENTITY = {"age_correction": {"slope": 1.0, "intercept": 0.0}, "gap_correction": {"alpha": 0.0, "beta": 0.0}}


def fit_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of y on x."""
    slope, intercept = np.polyfit(np.asarray(x, float), np.asarray(y, float), 1)
    return float(slope), float(intercept)


def corrected_age(raw: np.ndarray | float, fitted: dict) -> np.ndarray | float:
    c = fitted.get("age_correction", IDENTITY["age_correction"])
    return (raw - c["intercept"]) / c["slope"]


def age_gap(raw: np.ndarray | float, stated: np.ndarray | float, fitted: dict) -> np.ndarray | float:
    """The raw estimate's excess over the stated age, less its fitted dependence on the stated age."""
    g = fitted.get("gap_correction", IDENTITY["gap_correction"])
    return raw - stated - (g["alpha"] * stated + g["beta"])


def fit_calibration(raw: np.ndarray, age: np.ndarray, p_female: np.ndarray | None = None,
                    female: np.ndarray | None = None) -> dict:
    """What :func:`read_age_sex` applies, fitted on validation films: the age correction, the gap's, the corrected
    estimate's 10th and 90th residual percentiles (the 80% interval), and the sex check's threshold on the
    probability of the other sex, exceeded by :data:`FALSE_ALARMS` of the films (None without sexes)."""
    known = ~np.isnan(age) & ~np.isnan(raw)
    raw, age = raw[known], age[known]
    if len(age) < 10:
        raise ValueError(f"{len(age)} validation films with an age: too few to fit the age correction")
    slope, intercept = fit_line(age, raw)
    if slope < 0.1:
        raise ValueError(f"the estimates hardly follow age (slope {slope:.3f}): no correction can be fitted")
    fitted = {"age_correction": {"slope": slope, "intercept": intercept}}
    alpha, beta = fit_line(age, raw - age)
    fitted["gap_correction"] = {"alpha": alpha, "beta": beta}
    residual = corrected_age(raw, fitted) - age
    fitted["interval_80"] = [float(np.percentile(residual, 10)), float(np.percentile(residual, 90))]
    fitted["films"] = int(len(age))
    if p_female is not None and female is not None:
        sexed = ~np.isnan(female) & ~np.isnan(p_female)
        other = np.where(female[sexed] == 1, 1 - p_female[sexed], p_female[sexed])
        if len(other):
            fitted["sex_mismatch_threshold"] = float(np.quantile(other, 1 - FALSE_ALARMS, method="higher"))
    return fitted


def read_age_sex(cfg: ModelConfig, outputs: dict[str, np.ndarray], image: Radiograph) -> dict:
    """The ``age`` and ``sex`` sections from a model's ``age`` (N, 1) in years and, where it has one,
    ``female_logit`` (N, 1); the stated age and sex come from the header (``image.meta``) and are not copied."""
    ref, fitted = ModelRef(cfg.name, cfg.version), cfg.fitted
    raw = float(outputs["age"].reshape(-1)[0])
    estimate = float(corrected_age(raw, fitted))
    lo, hi = fitted.get("interval_80", [0.0, 0.0])
    stated = image.meta.stated_age_years
    # no gap for a stated age over 89: with the estimate and the fitted corrections it would give the age back
    gap = None if stated is None or stated > OLDEST_WRITTEN else float(age_gap(raw, stated, fitted))
    age = AgeEstimate(ref, estimate, (max(0.0, estimate + lo), estimate + hi), gap)
    if "female_logit" not in outputs:
        return {"age": age, "sex": SexEstimate(ref, None, reason=f"model {cfg.name} estimates no sex")}
    p_female = float(sigmoid(outputs["female_logit"].reshape(-1)[0]))
    threshold = fitted.get("sex_mismatch_threshold")
    stated_sex = image.meta.stated_sex
    mismatch = None
    if stated_sex is not None and threshold is not None:
        mismatch = (1 - p_female if stated_sex == "F" else p_female) > threshold
    return {"age": age, "sex": SexEstimate(ref, p_female, mismatch, threshold)}


def age_map(session, image: Radiograph, grid: int = 7) -> np.ndarray:
    """Where the age evidence lies: how far the estimate moves when each of ``grid`` x ``grid`` overlapping patches
    (a quarter of the side, centres evenly spaced) is blurred away, each change placed at its patch's centre and
    interpolated between them, in [0, 1] on the image's heatmap grid. One batch of ``grid``² runs of ``session``."""
    x = prepare(image, session.cfg.input)[0]
    size = x.shape[-1]
    patch = size // 4
    coarse = resize(resize(x[0], 8, 8), size, size)  # what is left of a patch once it is blurred away
    starts = np.linspace(0, size - patch, grid).round().astype(int)
    batch = []
    for y0 in starts:
        for x0 in starts:
            occluded = x.copy()
            occluded[:, y0:y0 + patch, x0:x0 + patch] = coarse[y0:y0 + patch, x0:x0 + patch]
            batch.append(occluded)
    base = float(session.run(x[None], ["age"])["age"].reshape(-1)[0])
    changes = np.abs(session.run(np.stack(batch), ["age"])["age"].reshape(grid, grid) - base).astype(np.float32)
    heat = resize(changes, *working_size(image.height, image.width))
    top = float(heat.max())
    return (heat / top if top > 0 else heat).clip(0, 1)


def age_line(age: AgeEstimate) -> str:
    text = f"apparent age {_years(age.estimate)} (80%: {_years(age.interval_80[0])}-{_years(age.interval_80[1])})"
    return text if age.gap is None else f"{text}, gap {age.gap:+.0f} y"


def _years(value: float) -> str:
    return "90+" if value > OLDEST_WRITTEN else f"{value:.0f}"


def draw_age_sex(draw, prediction: Prediction, scale: float, w: int, h: int) -> None:
    """The apparent age (and the gap) in the picture's lower left; a sex mismatch in red above it."""
    from PIL import ImageFont
    age, sex = prediction.sections.get("age"), prediction.sections.get("sex")
    if age is None:
        return
    font = ImageFont.load_default(size=max(12, w // 60))
    lines = [(age_line(age), AGE_COLOUR)]
    if sex is not None and sex.mismatch:
        lines.insert(0, ("apparent sex differs from the stated sex: check the patient", ALERT_COLOUR))
    y = h - 8 - len(lines) * (font.size + 6)
    for text, colour in lines:
        width = draw.textlength(text, font=font)
        draw.rectangle([6, y - 2, 14 + width, y + font.size + 3], fill=(0, 0, 0))
        draw.text((10, y), text, fill=colour, font=font)
        y += font.size + 6


HEAD = Head(task=AGE_SEX, summary="the film's apparent age (with its gap from the stated age) and sex",
            model_tasks=(AGE_SEX,), default_model=DEFAULT_AGE_MODEL, read=read_age_sex, sections=("age", "sex"),
            draw=draw_age_sex, heatmap=(AGE_MAP, age_map), train="radsight.train.age_sex:from_request",
            evaluate="radsight.evaluate.age_sex:from_request", on_each_image=True)
