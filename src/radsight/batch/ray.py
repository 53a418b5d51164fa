"""``radsight analyze --engine ray``: the same analysis over an archive on a Ray cluster (``radsight[ray]``).

Ray Data streams the jobs (``radsight.batch.jobs``) to actors that each hold one predictor (built once, on one
core) and analyze each job as ``radsight analyze`` does (``radsight.batch.run.analyze_job``). A re-run skips what
already has its JSON in the output folder, so an interrupted run resumes. Jobs and their output names are made
from the whole list before anything runs, exactly as the local engine makes them, so both engines write the same
files.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from radsight.batch.jobs import Job
from radsight.pipeline.options import PredictorOptions


@dataclass
class Done:
    """One job's outcome, as it comes back from an actor."""

    name: str  # the job's name: an image's path, a study's name
    together: bool
    json: str | None = None  # the JSON file's name in the output folder
    probabilities: list[float] | None = None
    error: str | None = None  # "NAME: reason" for a job that could not be analyzed
    skipped: bool = False  # analyzed by an earlier run
    notes: list[str] | None = None  # a study's files that could not be read ("FILE: reason"), the study analyzed


class _Analyzer:
    """A Ray Data actor: one predictor, built once, analyzing a batch of jobs at a time."""

    def __init__(self, options: PredictorOptions, out_dir: str):
        self.options, self.out_dir = replace(options, threads=1), Path(out_dir)
        self.predictor = self.options.predictor()

    def __call__(self, batch: dict) -> dict:
        from radsight.batch.run import analyze_job
        out = {"name": [], "json": [], "probabilities": [], "error": [], "notes": []}
        for name, paths, stem, together in zip(batch["name"], batch["paths"], batch["stem"], batch["together"]):
            o = analyze_job(self.predictor, Job(name, [Path(p) for p in paths], stem, bool(together)), self.out_dir,
                            self.options)
            out["name"].append(name)
            out["json"].append(o.json if o.ok else "")
            out["probabilities"].append(o.probabilities if o.ok else [])
            out["error"].append(str(o.error) if o.error else "")
            out["notes"].append("\n".join(str(e) for e in o.notes))
        return out


def run_on_ray(jobs: list[Job], out_dir: Path, options: PredictorOptions, address: str | None = None,
               actors: int | None = None) -> Iterator[Done]:
    """Outcomes as jobs complete (in no fixed order); jobs analyzed by an earlier run come first, skipped."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError(f"--engine ray needs Ray: pip install 'radsight[ray]' ({exc})") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = []
    for job in jobs:
        if (out_dir / f"{job.stem}.json").is_file():
            yield Done(job.name, job.together, json=f"{job.stem}.json", skipped=True)
        else:
            todo.append({"name": job.name, "paths": [str(p) for p in job.paths], "stem": job.stem,
                         "together": job.together})
    if not todo:
        return
    together = {row["name"]: row["together"] for row in todo}
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             configure_logging=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = max(1, min(actors or cpus, len(todo)))
    dataset = ray.data.from_items(todo, override_num_blocks=len(todo))
    results = dataset.map_batches(_Analyzer, fn_constructor_kwargs={"options": options,
                                                                   "out_dir": str(out_dir.resolve())},
                                  batch_size=1, concurrency=count, num_cpus=1)
    for row in results.iter_rows():
        yield Done(row["name"], together[row["name"]], json=row["json"] or None,
                   probabilities=list(row["probabilities"]) or None, error=row["error"] or None,
                   notes=row["notes"].splitlines() or None)
