"""``radsight evaluate --robustness``: how far the model's answers move under changes a reader would not see.

Adversarial: FGSM and PGD (L-infinity, untargeted: they raise the loss against the true labels), with budgets in
grey levels of an 8-bit display, applied to the classifier's input in pixel units and clipped to the display
range; gradients through the graph run by torch (``radsight[train]``). For a model that reads derived channels
(lung-masked, bone-suppressed) each channel is perturbed on its own, a stronger attacker than one who can change
only the film. Natural: JPEG re-compression, noise, contrast and small rotations of the film itself, through
the whole pipeline. Each gives the mean AUROC over the findings and the share of triage decisions that flip."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

from radsight.core import Radiograph
from radsight.data.manifest import Manifest
from radsight.evaluate.metrics import auroc
from radsight.evaluate.progress import stage
from radsight.heads.triage import threshold_scaled
from radsight.models.config import TRIAGE_LABEL
from radsight.pipeline.predictor import image_batches

EPSILONS = (0.5, 1.0, 2.0, 4.0)  # grey levels of 255
PGD_STEPS = 10


def _jpeg(pixels: np.ndarray, quality: int = 75) -> np.ndarray:
    import io
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=quality)
    return np.asarray(Image.open(buffer), np.float32) / 255


def _contrast(pixels: np.ndarray, factor: float) -> np.ndarray:
    mean = float(pixels.mean())
    return np.clip(mean + (pixels - mean) * factor, 0, 1).astype(np.float32)


def _noise(pixels: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(pixels + rng.normal(0, sigma, pixels.shape), 0, 1).astype(np.float32)


def _rotate(pixels: np.ndarray, degrees: float) -> np.ndarray:
    return ndimage.rotate(pixels, degrees, reshape=False, order=1, mode="nearest").astype(np.float32)


# name -> what it does to a film's display pixels (the second argument: a per-image seed)
PERTURBATIONS: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "JPEG quality 75": lambda p, s: _jpeg(p, 75),
    "noise sigma 2/255": lambda p, s: _noise(p, 2 / 255, s),
    "noise sigma 8/255": lambda p, s: _noise(p, 8 / 255, s),
    "contrast +10%": lambda p, s: _contrast(p, 1.1),
    "contrast -10%": lambda p, s: _contrast(p, 0.9),
    "rotation +5°": lambda p, s: _rotate(p, 5.0),
    "rotation -5°": lambda p, s: _rotate(p, -5.0),
}


def triage_decisions(probabilities: np.ndarray, labels: list[str], thresholds: dict[str, float]) -> np.ndarray:
    """The triage decision (abnormal or not) per row, as the predictor makes it."""
    if TRIAGE_LABEL in labels:
        j = labels.index(TRIAGE_LABEL)
        return probabilities[:, j] >= thresholds.get(TRIAGE_LABEL, 0.5)
    scaled = [np.vectorize(threshold_scaled)(probabilities[:, j], thresholds.get(label, 0.5))
              for j, label in enumerate(labels) if label != TRIAGE_LABEL]
    return np.max(scaled, axis=0) >= 0.5


def _attack(graph, x: np.ndarray, y: np.ndarray, eps_levels: float, spec, steps: int) -> np.ndarray:
    """An adversarial copy of the normalised batch ``x`` (N, C, S, S): ``steps`` = 1 is FGSM, more is PGD with
    step 2.5 eps / steps. ``y`` (N, L): 0/1 labels, NaN unknown (left out of the loss)."""
    import torch
    import torch.nn.functional as F

    from radsight.explain.torch_graph import as_tensor
    std = torch.as_tensor(np.asarray(spec.std, np.float32)).reshape(-1, 1, 1)
    mean = torch.as_tensor(np.asarray(spec.mean, np.float32)).reshape(-1, 1, 1)
    eps = eps_levels / 255 / std  # a budget in pixel units, in the normalised input's units
    low, high = (0 - mean) / std, (1 - mean) / std
    clean, target = as_tensor(x), as_tensor(np.nan_to_num(y))
    known = as_tensor(~np.isnan(y))
    step = eps if steps == 1 else 2.5 * eps / steps
    adv = clean.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        with torch.enable_grad():
            logits = graph(adv, outputs=["logits"])["logits"]
            loss = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * known).sum()
            (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() + step * grad.sign()
        adv = torch.minimum(torch.maximum(adv, clean - eps), clean + eps)
        adv = torch.minimum(torch.maximum(adv, low), high)
    return adv.numpy()


def robustness_pass(predictor, manifest: Manifest, y: np.ndarray, labels: list[str], batch_size: int = 32,
                    epsilons: tuple[float, ...] = EPSILONS, steps: int = PGD_STEPS) -> dict:
    """Scores under each attack and perturbation, summarised against the clean scores of the same images."""
    reason = predictor.explanations.gradients_unavailable()
    graph = None if reason else predictor.explanations.torch_graph()
    conditions = ["clean", *(f"{a} {e:g}" for e in epsilons for a in ("FGSM", "PGD") if graph is not None),
                  *PERTURBATIONS]
    scores = {c: np.full((len(manifest), len(labels)), np.nan) for c in conditions}
    spec = predictor.cfg.input
    with stage("robustness", len(manifest)) as progress:
        for rows, images, covered in image_batches(manifest, batch_size):
            progress.advance(covered)
            if not images:
                continue
            x = np.stack([predictor.classifier_input(im)[0] for im in images])
            scores["clean"][rows] = predictor.model(x)["probabilities"]
            for name, change in PERTURBATIONS.items():
                changed = [Radiograph(change(im.pixels, r), im.source, im.meta) for im, r in zip(images, rows)]
                scores[name][rows] = predictor.scores(changed)
            if graph is not None:
                for e in epsilons:
                    for attack, n in (("FGSM", 1), ("PGD", steps)):
                        adv = _attack(graph, x, y[rows], e, spec, n)
                        scores[f"{attack} {e:g}"][rows] = predictor.model(adv)["probabilities"]
    findings = [j for j, label in enumerate(labels) if label != TRIAGE_LABEL]
    thresholds = dict(predictor.cfg.thresholds)
    scored = ~np.isnan(scores["clean"]).any(axis=1)
    clean_triage = triage_decisions(scores["clean"][scored], labels, thresholds)

    def summary(s: np.ndarray) -> dict:
        aucs = [auroc(y[scored, j], s[scored, j]) for j in findings]
        flipped = triage_decisions(s[scored], labels, thresholds) != clean_triage
        return {"mean_auroc": float(np.nanmean(aucs)) if not np.isnan(aucs).all() else None,
                "triage_flipped": float(flipped.mean()) if scored.any() else None}
    out = {"images": int(scored.sum()), "epsilons_grey_levels": list(epsilons), "pgd_steps": steps,
           "conditions": {c: summary(scores[c]) for c in conditions}}
    if reason:
        out["adversarial_unavailable"] = reason
    return out


def robustness_markdown(r: dict) -> list[str]:
    lines = [f"**Robustness** ({r['images']} images). Adversarial: FGSM and PGD ({r['pgd_steps']} steps) against the "
             "true labels, budget ε in grey levels of an 8-bit display, on the classifier's input. Natural: changes "
             "to the film, through the whole pipeline. Triage flipped: share of abnormal/normal decisions that "
             "differ from the clean image's.", "", "| condition | mean AUROC | triage flipped |", "|---|---:|---:|"]
    for name, c in r["conditions"].items():
        auc = "—" if c["mean_auroc"] is None else f"{c['mean_auroc']:.3f}"
        flip = "—" if c["triage_flipped"] is None else f"{100 * c['triage_flipped']:.1f}%"
        lines.append(f"| {name.replace('FGSM ', 'FGSM ε=').replace('PGD ', 'PGD ε=')} | {auc} | {flip} |")
    if r.get("adversarial_unavailable"):
        lines.append(f"- adversarial attacks not measured ({r['adversarial_unavailable']})")
    return lines
