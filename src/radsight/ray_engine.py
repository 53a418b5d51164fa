"""``radsight analyze --engine ray``: the same analysis over an archive on a Ray cluster (``radsight[ray]``).

Ray Data streams the file list to actors that each hold the ONNX sessions once (one predictor an actor, on one
core) and write each file's outputs as it completes, as ``radsight analyze`` does. A re-run skips files whose JSON
is already in the output folder, so an interrupted run resumes. Output names are chosen from the whole list
before anything runs, exactly as the local engine chooses them, so both engines write the same files.
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


def run_on_ray(paths: list[Path], out_dir: Path, job: Job, address: str | None = None,
               actors: int | None = None) -> Iterator[Done]:
    """Outcomes as files complete (in no fixed order); files analyzed by an earlier run come first, skipped."""
    try:
        import ray
    except ImportError as exc:
        raise ValueError(f"--engine ray needs Ray: pip install 'radsight[ray]' ({exc})") from exc
    from radsight.pipeline import output_stems
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for path, stem in zip(paths, output_stems(paths)):
        if (out_dir / f"{stem}.json").is_file():
            yield Done(str(path), json=f"{stem}.json", skipped=True)
        else:
            rows.append({"path": str(path), "stem": stem})
    if not rows:
        return
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
             configure_logging=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    count = max(1, min(actors or cpus, len(rows)))
    dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
    results = dataset.map_batches(_Analyzer, fn_constructor_kwargs={"job": job, "out_dir": str(out_dir.resolve())},
                                  batch_size=1, concurrency=count, num_cpus=1)
    for row in results.iter_rows():
        yield Done(row["path"], json=row["json"] or None, probabilities=list(row["probabilities"]) or None,
                   error=row["error"] or None)
