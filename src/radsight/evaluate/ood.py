"""``radsight fit-ood`` and ``radsight evaluate --ood-test``: fit a model's out-of-distribution gate on chest
radiographs, and measure it against images that are not frontal chest radiographs.

A set is ``CSV[#split]``: the CSV's ``image`` (or ``filename``) column names files under ``images/`` beside it;
``#split`` keeps the rows of that split. Each row's kind is its ``kind`` column, else its ``view`` column (PA, AP:
frontal; L, LL: lateral), else ``frontal``. Frontal rows are radiographs the gate must admit; every other kind
is one it should refuse.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsight.core import InputError
from radsight.evaluate.metrics import auroc
from radsight.evaluate.progress import stage
from radsight.evaluate.request import EvaluateRequest
from radsight.heads.ood import PARTS, fit_gate
from radsight.io import load_image
from radsight.models.store import sha256_file

FRONTAL = "frontal"
VIEW_KINDS = {"PA": FRONTAL, "AP": FRONTAL, "L": "lateral", "LL": "lateral", "RL": "lateral"}
GATE_FILE = "ood.npz"


@dataclass
class ImageSet:
    name: str
    paths: list[Path]
    kinds: list[str]


def read_set(spec: str) -> ImageSet:
    csv_path, _, split = spec.partition("#")
    path = Path(csv_path)
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if not split or r.get("split") == split]
    if not rows:
        raise ValueError(f"no rows in {spec}")
    names = [r.get("image") or r.get("filename") for r in rows]
    kinds = [r.get("kind") or VIEW_KINDS.get((r.get("view") or "").upper(), FRONTAL) for r in rows]
    return ImageSet(spec, [path.parent / "images" / n for n in names], kinds)


def gate_vectors(predictor, paths: list[Path], label: str) -> tuple[dict[str, np.ndarray], list[bool]]:
    """The gate's vectors (part -> (N, K)) for the readable images, and which of ``paths`` were readable."""
    found: dict[str, list[np.ndarray]] = {name: [] for name in PARTS}
    readable = []
    with stage(label, len(paths)) as progress:
        for path in paths:
            progress.advance()
            try:
                image = load_image(path)
            except InputError:
                readable.append(False)
                continue
            readable.append(True)
            for name, vector in predictor.gate_vectors(image).items():
                found[name].append(vector)
    return {name: np.asarray(v) for name, v in found.items()}, readable


def run_fit(predictor, fit_specs: list[str], held_specs: list[str], refuse_rate: float) -> dict:
    """Fit the gate on ``fit_specs``, scale it and set its threshold on ``held_specs``; store it with the model."""
    cfg = predictor.cfg
    if "features" not in cfg.outputs:
        raise ValueError(f"model {cfg.name} has no 'features' output; export or import it again with this version")
    fit = _stacked([gate_vectors(predictor, read_set(s).paths, f"fit {s}")[0] for s in fit_specs])
    held = _stacked([gate_vectors(predictor, read_set(s).paths, f"held-out {s}")[0] for s in held_specs])
    gate, scores = fit_gate(fit, held, refuse_rate)
    gate.save(cfg.directory / GATE_FILE)
    cfg.ood = {"file": GATE_FILE, "sha256": sha256_file(cfg.directory / GATE_FILE), "threshold": gate.threshold,
               "parts": list(PARTS), "refuse_rate": refuse_rate, "fitted_on": fit_specs,
               "fitted_images": len(fit["classifier"]), "held_out": held_specs, "held_out_images": len(scores),
               "held_out_refused": float(np.mean(scores > gate.threshold))}
    cfg.save(cfg.directory)
    return cfg.ood


def _stacked(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in PARTS}


def run_ood_evaluation(predictor, test_specs: list[str], out: Path) -> dict:
    """AUROC of the gate's score (frontal radiographs against everything else), and the share refused of each
    set and kind at the gate's threshold."""
    if predictor.gate is None:
        raise ValueError(f"model {predictor.cfg.name} has no out-of-distribution gate (radsight fit-ood)")
    scores, kinds, sets, unreadable = [], [], [], {}
    for spec in test_specs:
        image_set = read_set(spec)
        vectors, readable = gate_vectors(predictor, image_set.paths, spec)
        scores.append(predictor.gate.scores(vectors) if any(readable) else np.zeros(0))
        kinds += [k for k, ok in zip(image_set.kinds, readable) if ok]
        sets += [spec] * int(sum(readable))
        unreadable[spec] = {k: int(sum(1 for kk, ok in zip(image_set.kinds, readable) if kk == k and not ok))
                            for k in sorted(set(image_set.kinds))}
    score, kinds, sets = np.concatenate(scores), np.asarray(kinds), np.asarray(sets)
    refused, threshold = score > predictor.gate.threshold, predictor.gate.threshold
    outside = (kinds != FRONTAL).astype(float)
    metrics = {
        "model": predictor.cfg.name, "threshold": threshold, "sets": test_specs,
        "auroc": auroc(outside, score),
        "frontal_refused": float(refused[kinds == FRONTAL].mean()) if (kinds == FRONTAL).any() else None,
        "other_refused": float(refused[kinds != FRONTAL].mean()) if (kinds != FRONTAL).any() else None,
        "by_kind": {k: {"images": int((kinds == k).sum()), "refused": float(refused[kinds == k].mean())}
                    for k in sorted(set(kinds))},
        "by_set": {s: {"images": int((sets == s).sum()), "refused": float(refused[sets == s].mean())}
                   for s in test_specs},
        "refused_when_read": unreadable,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "ood_metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out / "ood_report.md").write_text(ood_markdown(metrics))
    print(ood_markdown(metrics))
    return metrics


def ood_markdown(m: dict) -> str:
    lines = [f"**Out-of-distribution gate** ({m['model']}, threshold {m['threshold']:.3f}): AUROC {m['auroc']:.3f} "
             f"(frontal chest radiographs against every other kind); frontal radiographs refused "
             f"{m['frontal_refused']:.1%}; other images refused {m['other_refused']:.1%}.", "",
             "| kind | images | refused |", "|---|---:|---:|"]
    lines += [f"| {k} | {v['images']} | {v['refused']:.1%} |" for k, v in m["by_kind"].items()]
    lines += ["", "| set | images | refused |", "|---|---:|---:|"]
    lines += [f"| `{k}` | {v['images']} | {v['refused']:.1%} |" for k, v in m["by_set"].items()]
    read = {s: {k: n for k, n in v.items() if n} for s, v in m["refused_when_read"].items()}
    if any(read.values()):
        lines += ["", "Refused by the reader before the gate (size, aspect, colour): "
                  + "; ".join(f"`{s}`: " + ", ".join(f"{n} {k}" for k, n in v.items()) for s, v in read.items() if v)
                  + "."]
    return "\n".join(lines) + "\n"


def from_request(r: EvaluateRequest) -> None:
    """``radsight evaluate --task ood``: the gate of ``--model`` on ``--ood-test`` sets."""
    from radsight.pipeline.options import PredictorOptions
    r.need("ood_test")
    run_ood_evaluation(PredictorOptions(model=r.model, lung_model=r.lung_model).predictor(), list(r.ood_test), r.out)
