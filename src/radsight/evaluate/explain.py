"""``radsight evaluate --explain``: each explanation method's localization against radiologists' boxes,
faithfulness (deletion and insertion against a random order) and time per map."""
from __future__ import annotations

import time

import numpy as np

from radsight.core import InputError
from radsight.data.manifest import Manifest
from radsight.evaluate.faithfulness import STEPS, area, curve_inputs, removed
from radsight.evaluate.localization import box_cases, localization_summary
from radsight.evaluate.progress import stage
from radsight.explain import METHODS, get_method
from radsight.io import load_image

RANDOM = "random"  # the baseline order of the faithfulness curves
PAIRS_A_BATCH = 4  # curves of this many (order, finding) pairs are scored in one batch (136 inputs)


def chosen_methods(spec: str) -> list[str]:
    """``all`` or a comma-separated list of method names."""
    names = list(METHODS) if spec == "all" else [n.strip() for n in spec.split(",") if n.strip()]
    for name in names:
        get_method(name)  # unknown names: one error that lists the methods
    return names


def method_pass(predictor, manifest: Manifest, y: np.ndarray, labels: list[str], names: list[str],
                seed: int = 0) -> dict:
    """Per method: localization on the images with boxes, faithfulness over every (image, finding present)
    pair, median milliseconds per map. Methods that need what is not installed are listed with the reason."""
    methods, unavailable = predictor.explanations.usable(names)
    findings = [f for f in predictor.cfg.findings if f in labels]
    truths = manifest.boxes or [{}] * len(manifest)
    cases: dict[str, list[dict]] = {m.name: [] for m in methods}
    deletion: dict[str, list[float]] = {name: [] for name in (*cases, RANDOM)}
    insertion: dict[str, list[float]] = {name: [] for name in (*cases, RANDOM)}
    seconds: dict[str, list[float]] = {m.name: [] for m in methods}
    rng = np.random.default_rng(seed)
    size = predictor.cfg.input.size
    with stage("explanation methods", len(manifest)) as progress:
        for i, truth in enumerate(truths):
            progress.advance()
            present = [f for f in findings if y[i, labels.index(f)] == 1]
            if not present and not truth:
                continue
            try:
                image = load_image(manifest.path(i))
            except InputError:
                continue
            for m in methods:
                if truth:
                    p = predictor.predict(image, explain=set(truth), method=m)
                    cases[m.name] += box_cases(p, truth, image.height, image.width)
            if not present:
                continue
            x = predictor.classifier_input(image)[0]
            out = predictor.model(x[None], predictor.explanations.outputs(*methods))
            orders = {RANDOM: {f: rng.random((size, size)) for f in present}}
            for m in methods:
                start = time.perf_counter()
                maps = predictor.explanations.raw_maps(x, out, present, m)
                seconds[m.name].append((time.perf_counter() - start) / len(present))
                orders[m.name] = {f: m.heat(raw, size, size) for f, raw in maps.items()}
            # the curves of this image's (order, finding) pairs, a few pairs a batch
            base, pairs = removed(x), [(name, f) for name, saliency in orders.items() for f in saliency]
            for start in range(0, len(pairs), PAIRS_A_BATCH):
                group = pairs[start:start + PAIRS_A_BATCH]
                batch = np.concatenate([curve_inputs(x, base, orders[name][f]) for name, f in group])
                probs = predictor.model(batch)["probabilities"].reshape(len(group), 2 * (STEPS + 1), -1)
                for (name, finding), p in zip(group, probs):
                    row = labels.index(finding)
                    deletion[name].append(area(p[:STEPS + 1, row]))
                    insertion[name].append(area(p[STEPS + 1:, row]))
    out: dict = {"methods": {}, "unavailable": unavailable, "random": _faithfulness(deletion[RANDOM], insertion[RANDOM])}
    for m in methods:
        entry = {"title": m.title, "faithfulness": _faithfulness(deletion[m.name], insertion[m.name]),
                 "ms_per_map": 1000 * float(np.median(seconds[m.name])) if seconds[m.name] else None}
        if any(truths):
            entry["localization"] = localization_summary(cases[m.name])
        out["methods"][m.name] = entry
    return out


def _faithfulness(deletion: list[float], insertion: list[float]) -> dict:
    return {"maps": len(deletion), "deletion_auc": float(np.mean(deletion)) if deletion else None,
            "insertion_auc": float(np.mean(insertion)) if insertion else None}


def methods_markdown(e: dict) -> list[str]:
    from radsight.evaluate.localization import IOU_THRESHOLDS
    ts = [f"{t:.1f}" for t in IOU_THRESHOLDS]
    rnd = e["random"]
    lines = ["**Explanation methods.** Localization: share of radiologists' boxes found (T(IoU), T(IoBB)) and the "
             "pointing game, from each method's own heatmaps and boxes. Faithfulness: mean area under the "
             "probability curve as the most highlighted input pixels are removed (deletion, lower is better) or "
             f"restored (insertion, higher is better), over {rnd['maps']} maps of findings present; a random "
             f"order gives deletion {_f(rnd['deletion_auc'])}, insertion {_f(rnd['insertion_auc'])}.", "",
             "| method | boxes | " + " | ".join(f"T(IoU)={t}" for t in ts) + " | T(IoBB)=0.5 | pointing | "
             "deletion AUC | insertion AUC | ms a map |",
             "|---|---:|" + "---:|" * (len(ts) + 5)]
    for name, m in e["methods"].items():
        loc = (m.get("localization") or {}).get("overall")
        cells = ([str(loc["boxes"]), *(f"{loc['iou'][t]:.2f}" for t in ts), f"{loc['iobb']['0.5']:.2f}",
                  f"{loc['pointing_game']:.2f}"] if loc else ["0", *["—"] * (len(ts) + 2)])
        f = m["faithfulness"]
        ms = "—" if m["ms_per_map"] is None else f"{m['ms_per_map']:.1f}"
        lines.append(f"| {m['title']} | " + " | ".join(cells)
                     + f" | {_f(f['deletion_auc'])} | {_f(f['insertion_auc'])} | {ms} |")
    lines += [f"- {name}: not measured ({reason})" for name, reason in e["unavailable"].items()]
    return lines


def _f(value) -> str:
    return "—" if value is None else f"{value:.3f}"
