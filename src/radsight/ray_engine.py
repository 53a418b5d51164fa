"""``radsight analyze --engine ray``: the same analysis over an archive on a Ray cluster (``radsight[ray]``).

Ray Data streams the file list (or the list of studies) to actors that each hold the ONNX sessions once (one
predictor an actor, on one core) and write each file's (study's) outputs as it completes, as ``radsight analyze``
does. A re-run skips what already has its JSON in the output folder, so an interrupted run resumes. Output names
are chosen from the whole list before anything runs, exactly as the local engine chooses them, so both engines
write the same files.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from radsight.explain import DEFAULT_METHOD


@dataclass(frozen=True)
class Job:
    """What every actor needs: the predictor's settings and the analysis options."""

    model: str
    lung_model: str | None
    bone_model: str | None
    bone_views: bool
    method: str = DEFAULT_METHOD
    layer: str | None = None
    allow_ood: bool = False
    explain: tuple[str, ...] = ()
    dicom_out: bool = False


@dataclass
class Done:
    """One file's outcome, as it comes back from an actor."""

    path: str
    json: str | None = None  # the JSON file's name in the output folder
    probabilities: list[float] | None = None
    error: str | None = None  # "FILE: reason" for a file that could not be analyzed
    skipped: bool = False  # analyzed by an earlier run
    notes: str | None = None  # a study's files that could not be read ("FILE: reason" lines), the study analyzed


class _Analyzer:
    """A Ray Data actor: one predictor, built once, analyzing a batch of rows at a time."""

    def __init__(self, job: Job, out_dir: str):
        from radsight.pipeline import Predictor
        self.job, self.out_dir = job, Path(out_dir)
        self.predictor = Predictor(job.model, lung_model=job.lung_model, threads=1, bone_model=job.bone_model,
                                   bone_views=job.bone_views, method=job.method, layer=job.layer)

    def __call__(self, batch: dict) -> dict:
        from radsight.pipeline import analyze_one
        out = {"path": [], "json": [], "probabilities": [], "error": []}
        for path, stem in zip(batch["path"], batch["stem"]):
            o = analyze_one(self.predictor, Path(path), stem, self.out_dir, self.job.allow_ood, self.job.explain,
                            self.job.dicom_out)
            out["path"].append(path)
            out["json"].append(o.files.json if o.files else "")
            out["probabilities"].append([f.probability for f in o.prediction.findings] if o.prediction else [])
            out["error"].append(str(o.error) if o.error else "")
        return out


class _StudyAnalyzer(_Analyzer):
    """A Ray Data actor for studies (``radsight.study``): rows name a study, its files and its output stem."""

    def __call__(self, batch: dict) -> dict:
        from radsight.study import StudyInput, analyze_study
        out = {"path": [], "json": [], "probabilities": [], "error": [], "notes": []}
        for name, paths, stem, lateral in zip(batch["name"], batch["paths"], batch["stem"], batch["lateral"]):
            study = StudyInput(name, [Path(p) for p in paths], bool(lateral), stem)
            o = analyze_study(self.predictor, study, self.out_dir, self.job.explain, self.job.dicom_out,
                              self.job.allow_ood)
            out["path"].append(name)
            out["json"].append(o.json if o.error is None else "")
            out["probabilities"].append([f.probability for f in o.prediction.findings] if o.error is None else [])
            out["error"].append(f"study {o.error}" if o.error else "")
            out["notes"].append("\n".join(str(e) for e in o.unreadable))
        return out


def run_on_ray(paths: list[Path], out_dir: Path, job: Job, address: str | None = None,
               actors: int | None = None) -> Iterator[Done]:
    """Outcomes as files complete (in no fixed order); files analyzed by an earlier run come first, skipped."""
    from radsight.pipeline import output_stems
    rows = [{"path": str(path), "stem": stem} for path, stem in zip(paths, output_stems(paths))]
    yield from _run(rows, "path", _Analyzer, out_dir, job, address, actors)


def run_studies_on_ray(studies: list, out_dir: Path, job: Job, address: str | None = None,
                       actors: int | None = None) -> Iterator[Done]:
    """:func:`run_on_ray` for studies (``radsight.study.StudyInput``); a Done's ``path`` is the study's name and
    its ``error`` every line the study's files and the study gave."""
    rows = [{"name": s.name, "paths": [str(p) for p in s.paths], "stem": s.stem, "lateral": s.lateral_in_header}
            for s in studies]
    yield from _run(rows, "name", _StudyAnalyzer, out_dir, job, address, actors)


def _run(rows: list[dict], key: str, actor, out_dir: Path, job: Job, address: str | None,
         actors: int | None) -> Iterator[Done]:
    try:
        import ray
    except ImportError as exc:
        raise ValueError(f"--engine ray needs Ray: pip install 'radsight[ray]' ({exc})") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = []
    for row in rows:
        if (out_dir / f"{row['stem']}.json").is_file():
            yield Done(row[key], json=f"{row['stem']}.json", skipped=True)
        else:
            todo.append(row)
    if not todo:
        return
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             configure_logging=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = max(1, min(actors or cpus, len(todo)))
    dataset = ray.data.from_items(todo, override_num_blocks=len(todo))
    results = dataset.map_batches(actor, fn_constructor_kwargs={"job": job, "out_dir": str(out_dir.resolve())},
                                  batch_size=1, concurrency=count, num_cpus=1)
    for row in results.iter_rows():
        yield Done(row["path"], json=row["json"] or None, probabilities=list(row["probabilities"]) or None,
                   error=row["error"] or None, notes=row.get("notes") or None)
