"""``radsight fit-ood`` and ``radsight evaluate --ood-test``: fit a model's out-of-distribution gate on chest
radiographs, and measure it against images that are not frontal chest radiographs.

A set is ``CSV[#split]``: the CSV's ``image`` (or ``filename``) column names files under ``images/`` beside it;
``#split`` keeps the rows of that split. Each row's kind is its ``kind`` column, else its ``view`` column (PA, AP:
frontal; L, LL: lateral), else ``frontal``. Frontal rows are radiographs the gate must admit; every other kind
is one it should refuse. Each row's source (hospital, dataset) is its ``source`` column, else the CSV's folder.

``--by-source`` fits the gate to admit sites it has not seen (``radsight.heads.ood.fit_gate``); the
leave-one-source-out measurement fits it without each source in turn and counts what it admits of that source's
radiographs, and refuses of the other kinds.
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
from radsight.heads.anatomy import thoracic_anatomy_absent
from radsight.heads.ood import PARTS, fit_gate
from radsight.io import load_image
from radsight.models.store import sha256_file

FRONTAL = "frontal"
NO_THORAX = "no_thorax"
VIEW_KINDS = {"PA": FRONTAL, "AP": FRONTAL, "L": "lateral", "LL": "lateral", "RL": "lateral"}
GATE_FILE = "ood.npz"


@dataclass
class ImageSet:
    name: str
    paths: list[Path]
    kinds: list[str]
    sources: list[str]


def read_set(spec: str) -> ImageSet:
    csv_path, _, split = spec.partition("#")
    path = Path(csv_path)
    with open(path, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if not split or r.get("split") == split]
    if not rows:
        raise ValueError(f"no rows in {spec}")
    names = [r.get("image") or r.get("filename") for r in rows]
    kinds = [r.get("kind") or VIEW_KINDS.get((r.get("view") or "").upper(), FRONTAL) for r in rows]
    sources = [r.get("source") or path.parent.name for r in rows]
    return ImageSet(spec, [path.parent / "images" / n for n in names], kinds, sources)


def gate_vectors(predictor, paths: list[Path], label: str, framed: bool | None = None
                 ) -> tuple[dict[str, np.ndarray], list[bool]]:
    """The gate's vectors (part -> (N, K)) for the readable images, and which of ``paths`` were readable
    (``framed``: as ``Predictor.gate_vectors``). With a lung model, the vectors hold ``no_thorax`` too (N,): the
    images refused for showing no thoracic anatomy."""
    found: dict[str, list[np.ndarray]] = {name: [] for name in (*PARTS, NO_THORAX)}
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
            built = predictor.inputs.build(image, anatomy=True)
            for name, vector in predictor.gate_vectors(image, predictor.model(built.x[None]), framed).items():
                found[name].append(vector)
            found[NO_THORAX].append(built.lungs is not None and thoracic_anatomy_absent(built.lungs) is not None)
    return {name: np.asarray(v) for name, v in found.items()}, readable


def refused_by(gate, vectors: dict[str, np.ndarray]) -> np.ndarray:
    """(N,) what the gate refuses: a score over its threshold, or no thoracic anatomy."""
    return (gate.scores(vectors) > gate.threshold) | vectors[NO_THORAX].astype(bool)


@dataclass
class Vectors:
    """The gate's vectors of the readable images of some sets, with each one's kind and source."""

    parts: dict[str, np.ndarray]
    kinds: np.ndarray
    sources: np.ndarray

    def rows(self, keep: np.ndarray) -> Vectors:
        return Vectors({n: v[keep] for n, v in self.parts.items()}, self.kinds[keep], self.sources[keep])


def read_vectors(predictor, specs: list[str], label: str) -> Vectors:
    """The vectors of ``specs``' readable images, as a gate being fitted reads them."""
    found = []
    for spec in specs:
        image_set = read_set(spec)
        parts, readable = gate_vectors(predictor, image_set.paths, f"{label} {spec}", framed=True)
        keep = np.asarray(readable, bool)
        found.append(Vectors(parts, np.asarray(image_set.kinds)[keep], np.asarray(image_set.sources)[keep]))
    return Vectors({n: np.concatenate([f.parts[n] for f in found]) for n in found[0].parts},
                   np.concatenate([f.kinds for f in found]), np.concatenate([f.sources for f in found]))


def fit_vectors(fit: Vectors, held: Vectors, refuse_rate: float, by_source: bool):
    return fit_gate(fit.parts, held.parts, refuse_rate, *((fit.sources, held.sources) if by_source else ()))


def run_fit(predictor, fit_specs: list[str], held_specs: list[str], refuse_rate: float, by_source: bool = False,
            test_specs: list[str] = (), loso_out: Path | None = None) -> dict:
    """Fit the gate on ``fit_specs``, scale it and set its threshold on ``held_specs`` (``by_source``: each
    held-out radiograph against a fit without its source); store it with the model. With ``loso_out``, measure
    leave-one-source-out first, for both ways of fitting, against ``test_specs``' other kinds."""
    cfg = predictor.cfg
    if "features" not in cfg.outputs:
        raise ValueError(f"model {cfg.name} has no 'features' output; export or import it again with this version")
    if loso_out is not None and not test_specs:
        raise ValueError("--loso measures what each left-out gate refuses too: give --test with images that are not "
                         "frontal chest radiographs")
    fit, held = read_vectors(predictor, fit_specs, "fit"), read_vectors(predictor, held_specs, "held-out")
    loso = None
    if loso_out is not None:
        loso = leave_one_source_out(fit, held, read_vectors(predictor, list(test_specs), "test"), refuse_rate)
        loso_out.mkdir(parents=True, exist_ok=True)
        (loso_out / "loso_metrics.json").write_text(json.dumps(loso, indent=2) + "\n")
        (loso_out / "loso_report.md").write_text(loso_markdown(loso))
        print(loso_markdown(loso))
    gate, scores = fit_vectors(fit, held, refuse_rate, by_source)
    gate.save(cfg.directory / GATE_FILE)
    cfg.ood = {"file": GATE_FILE, "sha256": sha256_file(cfg.directory / GATE_FILE), "threshold": gate.threshold,
               "parts": list(PARTS), "refuse_rate": refuse_rate, "fitted_on": fit_specs,
               "fitted_images": len(fit.kinds), "held_out": held_specs, "held_out_images": len(scores),
               "held_out_refused": float(np.mean(scores > gate.threshold)), "by_source": by_source,
               "sources": sorted(set(fit.sources))}
    if loso is not None:
        cfg.ood["leave_one_source_out"] = loso["by_source" if by_source else "pooled"]
    cfg.save(cfg.directory)
    return cfg.ood


def leave_one_source_out(fit: Vectors, held: Vectors, test: Vectors, refuse_rate: float) -> dict:
    """For each source of ``fit``: the gate fitted without it, pooled and by source; the share of that source's
    radiographs (its fit and held-out rows, never seen) it admits, and of ``test``'s other kinds it refuses
    (laterals aside: the view stage refuses them before the gate)."""
    others = test.rows((test.kinds != FRONTAL) & (test.kinds != "lateral"))
    out: dict = {"sources": {}, "other_images": int(len(others.kinds)), "refuse_rate": refuse_rate}
    for mode in ("pooled", "by_source"):
        rows = {}
        for source in sorted(set(fit.sources)):
            own = np.r_[fit.sources == source, held.sources == source]
            mine = Vectors({n: np.concatenate([fit.parts[n], held.parts[n]])[own] for n in fit.parts},
                           np.r_[fit.kinds, held.kinds][own], np.r_[fit.sources, held.sources][own])
            gate, _ = fit_vectors(fit.rows(fit.sources != source), held.rows(held.sources != source), refuse_rate,
                                  mode == "by_source")
            rows[source] = {"images": int(own.sum()), "admitted": float(np.mean(~refused_by(gate, mine.parts))),
                            "others_refused": float(np.mean(refused_by(gate, others.parts)))
                            if len(others.kinds) else None, "threshold": gate.threshold}
            out["sources"][source] = rows[source]["images"]
        out[mode] = rows
    return out


def loso_markdown(m: dict) -> str:
    lines = ["**Leave one source out**: the gate fitted without a source, then shown that source's radiographs "
             f"(admitted) and {m['other_images']} images that are not chest radiographs (refused by the score or for "
             "showing no thoracic anatomy); pooled: scaled on held-out films of the fitted sources; by source: each "
             "held-out film scaled against a fit without its own source.", "",
             "| held-out source | films | admitted, pooled | admitted, by source | others refused, pooled | "
             "others refused, by source |", "|---|---:|---:|---:|---:|---:|"]
    for source, n in m["sources"].items():
        p, b = m["pooled"][source], m["by_source"][source]
        lines.append(f"| {source} | {n} | {p['admitted']:.1%} | {b['admitted']:.1%} | "
                     f"{_share(p['others_refused'])} | {_share(b['others_refused'])} |")
    return "\n".join(lines) + "\n"


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def run_ood_evaluation(predictor, test_specs: list[str], out: Path) -> dict:
    """AUROC of the gate's score (frontal radiographs against everything else), and the share refused of each
    set and kind at the gate's threshold or for showing no thoracic anatomy."""
    if predictor.gate is None:
        raise ValueError(f"model {predictor.cfg.name} has no out-of-distribution gate (radsight fit-ood)")
    scores, kinds, sets, unreadable, no_thorax = [], [], [], {}, []
    for spec in test_specs:
        image_set = read_set(spec)
        vectors, readable = gate_vectors(predictor, image_set.paths, spec)
        scores.append(predictor.gate.scores(vectors) if any(readable) else np.zeros(0))
        no_thorax.append(vectors[NO_THORAX].astype(bool) if any(readable) else np.zeros(0, bool))
        kinds += [k for k, ok in zip(image_set.kinds, readable) if ok]
        sets += [spec] * int(sum(readable))
        unreadable[spec] = {k: int(sum(1 for kk, ok in zip(image_set.kinds, readable) if kk == k and not ok))
                            for k in sorted(set(image_set.kinds))}
    score, kinds, sets = np.concatenate(scores), np.asarray(kinds), np.asarray(sets)
    threshold = predictor.gate.threshold
    refused = (score > threshold) | np.concatenate(no_thorax)
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
