"""``radsight analyze``: findings, triage, heatmaps and boxes for files, folders or studies, locally or on Ray."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from radsight.cli.common import build_predictor, check_device, fail
from radsight.models.store import (
    DEFAULT_BONE_MODEL,
    DEFAULT_LUNG_MODEL,
    DEFAULT_MODEL,
    DEFAULT_TRIAGE_MODEL,
    DEFAULT_TWO_VIEW_MODEL,
)

EXAMPLE_FILE = "RG1_UNCR.dcm"


def analyze(
    paths: list[Path] = typer.Argument(None, help="DICOM, PNG or JPEG files, or folders of them"),
    out: Path = typer.Option(Path("radsight-out"), help="folder for the JSON, overlay and heatmap files"),
    model: Optional[str] = typer.Option(None, help=f"registered model name or model folder (default: "
                                        f"{DEFAULT_MODEL}; for studies with several images or a lateral, and "
                                        f"with --study: {DEFAULT_TWO_VIEW_MODEL} when installed)"),
    study: bool = typer.Option(False, "--study", help="the files given are one study (a PNG/JPEG frontal and "
                               "lateral: the view classifier tells them apart); DICOM files are grouped into "
                               "studies by StudyInstanceUID without it"),
    example: bool = typer.Option(False, "--example", help="analyze pydicom-data's real chest CR (RG1_UNCR.dcm)"),
    save_predictions: Optional[Path] = typer.Option(None, help="also write all probabilities to this CSV"),
    lung_model: str = typer.Option(DEFAULT_LUNG_MODEL, help="lung segmentation model for lung fields and CTR"),
    anatomy: bool = typer.Option(True, help="segment the lungs and measure the cardiothoracic ratio"),
    bone_model: Optional[str] = typer.Option(None, help=f"bone suppression model for the soft-tissue and bone views "
                                             f"(default: {DEFAULT_BONE_MODEL} when installed)"),
    bone_views: bool = typer.Option(True, help="write the soft-tissue and bone views when a bone model is there"),
    triage_model: str = typer.Option(DEFAULT_TRIAGE_MODEL, help="normal/abnormal model whose score gives the "
                                     "triage when installed ('none': the classifier's own)"),
    allow_ood: bool = typer.Option(False, "--allow-ood", help="analyze images the out-of-distribution gate refuses "
                                                              "(their results say so)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no per-image table"),
    workers: Optional[int] = typer.Option(None, min=1, help="files analyzed at once (default: one a CPU core, "
                                          "at most one a file); they share the cores out"),
    explain: str = typer.Option("cam", help="what makes the heatmaps and boxes: cam (default: exact for radsight's "
                                "models, the fastest), gradcam, gradcam++, guided-gradcam or guided-backprop (the "
                                "guided ones need radsight\\[train])"),
    explain_layer: Optional[str] = typer.Option(None, help="explain this graph tensor instead of the last feature "
                                                "map (gradcam, gradcam++; needs radsight\\[train])"),
    also_explain: str = typer.Option("", help="also write heatmaps by these methods (comma-separated; as the service "
                                     "writes cam, gradcam and gradcam++ maps for its viewer)"),
    heatmaps_for: str = typer.Option("", help="heatmaps and boxes for these findings even below their thresholds: "
                                     "comma-separated names, 'all', 'Abnormal' for the triage output, or 'Age' "
                                     "for where the apparent age is read (occlusion map)"),
    device: str = typer.Option("auto", envvar="RADSIGHT_DEVICE", help="auto (a GPU when onnxruntime-gpu sees "
                               "one), cpu or cuda"),
    dicom_out: bool = typer.Option(False, "--dicom-out", help="for DICOM input also write NAME.sr.dcm (TID 1500 "
                                   "report), NAME.seg.dcm (lung fields) and NAME.sc.dcm (the overlay); for a study "
                                   "NAME.<view>.sc.dcm, one overlay a view, and one report that references every "
                                   "image read"),
    engine: str = typer.Option("local", help="local (threads), processes (one process a core: Python work of "
                               "one file never waits for another's; each loads the models once), or ray: the same "
                               "analysis on a Ray cluster, resumable "
                               "(needs radsight\\[ray])"),
    ray_address: Optional[str] = typer.Option(None, help="with --engine ray: the cluster (default: a local Ray)"),
    int8: bool = typer.Option(False, "--int8", help="run each model whose int8 variant is registered (radsight "
                              "models quantize makes one and registers it only when it passes its check)"),
    metadata: Optional[Path] = typer.Option(None, exists=True, dir_okay=False, help="a metadata table of NIH's "
                                            "form (Data_Entry_2017.csv, plain or .gz): for the files it names, the "
                                            "view position, pixel spacing (CTR diameters in mm), age and sex it "
                                            "states"),
) -> None:
    """Findings, triage, heatmaps and boxes for chest radiographs. Exit code 1 if nothing could be analyzed."""
    from radsight.batch.jobs import group_studies, image_jobs
    from radsight.concurrency import default_workers, threads_per_worker
    from radsight.core import FINDINGS
    from radsight.io import expand_inputs, load_image
    from radsight.pipeline.options import PredictorOptions

    given = list(paths or []) + ([_example_path()] if example else [])
    if not given:
        raise fail("no input: give files or folders, or --example")
    files = expand_inputs(given)
    if not files:
        raise fail(f"no DICOM, PNG or JPEG files in {', '.join(map(str, given))}", code=1)
    if engine not in ("local", "processes", "ray"):
        raise fail(f"--engine {engine!r}: choose local, processes or ray")
    check_device(device)
    studies = group_studies(files, one_study=study)
    workers = min(workers or default_workers(len(files)), len(files))
    wanted = [n.strip() for n in heatmaps_for.split(",") if n.strip()]
    wanted = list(FINDINGS) if wanted == ["all"] else wanted
    options = PredictorOptions(model=model or default_model(studies, study), lung_model=lung_model if anatomy else None,
                               bone_model=bone_model if bone_views else None, bone_views=bone_views, method=explain,
                               layer=explain_layer, alternates=tuple(m for m in also_explain.split(",") if m),
                               heatmaps_for=tuple(wanted), allow_ood=allow_ood,
                               dicom_out=dicom_out, device=device, threads=threads_per_worker(workers),
                               triage_model=None if triage_model == "none" else triage_model, int8=int8)
    predictor = build_predictor(options)
    head_maps = [head.heatmap[0] for head, _ in predictor.each_image if head.heatmap]
    unknown = [n for n in wanted if n not in predictor.cfg.labels and n not in FINDINGS and n not in head_maps]
    if unknown:
        raise fail(f"--heatmaps-for: {', '.join(unknown)}: not a label of {predictor.cfg.name} "
                   f"({', '.join(predictor.cfg.labels + head_maps)})")
    together = study or predictor.cfg.reads_lateral
    jobs = studies if together else image_jobs(files)
    report = Report(out, "studies" if together else "images", len(jobs), predictor.cfg.name, quiet)
    read = load_image
    if metadata is not None:
        from radsight.data.acquisition import StatedReader, read_acquisition
        try:
            read = StatedReader(read_acquisition(metadata))
        except (OSError, ValueError) as exc:
            raise fail(f"--metadata: {exc}")
    if engine == "ray":
        if metadata is not None:
            raise fail("--metadata is read by the local engines (local, processes), not on Ray")
        from radsight.batch.ray import run_on_ray
        try:
            report.run(run_on_ray(jobs, out, options, ray_address, workers), ray=True)
        except ValueError as exc:
            raise fail(str(exc))
    elif engine == "processes" and min(workers, len(jobs)) > 1:
        from radsight.batch.processes import analyze_in_processes
        report.run(analyze_in_processes(jobs, out, options, min(workers, len(jobs)), read))
    else:
        from radsight.batch.run import analyze_jobs
        report.run(analyze_jobs(predictor, jobs, out, options, min(workers, len(jobs)), read))
    if save_predictions is not None and report.done:
        from radsight.data.predictions import write_predictions
        write_predictions(save_predictions, report.names, predictor.cfg.findings, report.probabilities)
    if not report.done and not report.tally.skipped:
        raise typer.Exit(1)


def default_model(studies: list, one_study: bool) -> str:
    """The model when none is named: the two-view model (when installed) for input that holds a study of several
    images, a DICOM lateral, or ``--study``; the frontal model otherwise."""
    from radsight.pipeline.inputs import installed
    several = one_study or any(len(s.paths) > 1 or s.lateral_in_header for s in studies)
    return (installed(DEFAULT_TWO_VIEW_MODEL) or DEFAULT_MODEL) if several else DEFAULT_MODEL


class Report:
    """The console of a run: a line per job analyzed (and per error, on stderr), a progress bar on a terminal,
    and what the run counted; the local engine's outcomes (``batch.run.Outcome``) and Ray's (``batch.ray.Done``)."""

    def __init__(self, out: Path, unit: str, total: int, model: str, quiet: bool):
        from rich.console import Console

        from radsight.cli.tally import Tally
        self.out, self.unit, self.total, self.model = out, unit, total, model
        self.tally = Tally(Console(soft_wrap=True), Console(stderr=True, soft_wrap=True), quiet)
        self.names: list[str] = []
        self.probabilities: list[list[float]] = []

    @property
    def done(self) -> list:
        return self.tally.done

    def run(self, outcomes, ray: bool = False) -> None:
        from rich.progress import Progress
        err = self.tally.err
        # A bar only on a terminal (piped, it would leave a blank line); each job's line is printed as it ends.
        with Progress(console=err, transient=True, disable=self.total <= 3 or not err.is_terminal) as progress:
            bar = progress.add_task("analyzing", total=self.total)
            for outcome in outcomes:
                progress.advance(bar)
                self._one(outcome) if not ray else self._one_from_ray(outcome)
        t = self.tally
        rate = len(t.done) / t.seconds if t.seconds > 0 else float("inf")
        t.say(f"analyzed {len(t.done)} of {self.total} {self.unit}{' on Ray' if ray else ''} in {t.seconds:.1f} s "
              f"({rate:.2f} {self.unit}/s) with {self.model}; "
              f"{f'{t.skipped} already analyzed; ' if ray else ''}{t.failed} failed; outputs in {self.out}")

    def _one(self, outcome) -> None:
        for note in outcome.notes:
            self.tally.note(str(note))
        if outcome.error is not None:
            self.tally.failure(("study " if outcome.job.together else "") + str(outcome.error))
            return
        p = outcome.prediction
        name = p.study if outcome.job.together else Path(outcome.job.name).name
        self._success(outcome, name, outcome.probabilities,
                      (study_line if outcome.job.together else image_line)(outcome, self.out))

    def _one_from_ray(self, done) -> None:
        for note in done.notes or []:
            self.tally.note(note)
        if done.error:
            self.tally.failure(("study " if done.together else "") + done.error)
        elif done.skipped:
            self.tally.skipped += 1
        else:
            self._success(done, done.name if done.together else Path(done.name).name, done.probabilities,
                          f"{done.name} -> {self.out / done.json}")

    def _success(self, outcome, name: str, probabilities: list[float], line: str) -> None:
        self.names.append(name)
        self.probabilities.append(probabilities)
        self.tally.success(outcome, line)


def image_line(outcome, out: Path) -> str:
    p = outcome.prediction
    names = ", ".join(f"{f.name} {f.probability:.2f}" for f in p.positives) or "none above threshold"
    ctr = ""
    if p.anatomy is not None:
        a = p.anatomy
        if a.ctr is not None and a.ctr.value is not None:
            ctr = f"  CTR {a.ctr.value:.2f}"
        else:
            ctr = f"  lungs: {a.reason or (a.ctr and a.ctr.reason) or 'CTR not measurable'}"
    ood = "  OUT OF DISTRIBUTION" if p.ood is not None and not p.ood.in_distribution else ""
    return (f"{outcome.job.name}{ood}  triage {p.triage.priority} ({p.triage.abnormal_probability:.2f})  "
            f"findings: {names}{ctr}{'  views: ' + ', '.join(p.views) if p.views else ''}  -> {out / outcome.json}")


def study_line(outcome, out: Path) -> str:
    p = outcome.prediction
    names = ", ".join(f"{f.name} {f.probability:.2f}" for f in p.positives) or "none above threshold"
    views = ", ".join(f"{v.view.view} ({v.view.source})" + ("" if v.read else " not read")
                      for v in p.views if v.view is not None)
    conflicts = [v.view.disagreement for v in p.views if v.view is not None and v.view.disagreement]
    ood = "  OUT OF DISTRIBUTION" if p.ood is not None and not p.ood.in_distribution else ""
    return (f"study {p.study}: triage {p.triage.priority} ({p.triage.abnormal_probability:.2f})  findings: {names}  "
            f"views: {views}{'  VIEW CONFLICT: ' + '; '.join(conflicts) if conflicts else ''}{ood}  "
            f"-> {out / outcome.json}")


def _example_path() -> Path:
    try:
        from pydicom.data import get_testdata_file
        found = get_testdata_file(EXAMPLE_FILE)
    except (ImportError, ValueError) as exc:
        raise fail(f"the example radiograph comes from pydicom-data: pip install 'radsight[example]' ({exc})")
    if not found:
        raise fail(f"{EXAMPLE_FILE} not found: pip install 'radsight[example]'")
    return Path(found)
