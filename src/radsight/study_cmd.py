"""``radsight analyze`` on studies: which model reads them, and the console lines of a study run."""
from __future__ import annotations

from pathlib import Path

from radsight.inputs import installed
from radsight.models.store import DEFAULT_MODEL, DEFAULT_TWO_VIEW_MODEL
from radsight.study import StudyInput, analyze_studies
from radsight.tally import Tally


def default_model(studies: list[StudyInput], one_study: bool) -> str:
    """The model when none is named: the two-view model (when installed) for input that holds a study of several
    images, a DICOM lateral, or ``--study``; the frontal model otherwise."""
    several = one_study or any(len(s.paths) > 1 or s.lateral_in_header for s in studies)
    return (installed(DEFAULT_TWO_VIEW_MODEL) or DEFAULT_MODEL) if several else DEFAULT_MODEL


def run_studies(studies: list[StudyInput], out: Path, predictor, workers: int, explain, console, err,
                quiet: bool = False, dicom_out: bool = False, allow_ood: bool = False) -> tuple[list, int]:
    """Analyze each study, printing a line per study and per error; the outcomes analyzed and the failures."""
    tally = Tally(console, err, quiet)
    for outcome in analyze_studies(studies, out, predictor, workers, explain, dicom_out, allow_ood):
        for exc in outcome.unreadable:
            tally.note(str(exc))
        if outcome.error is not None:
            tally.failure(f"study {outcome.error}")
        else:
            tally.success(outcome, study_line(outcome, out))
    tally.say(f"analyzed {len(tally.done)} of {len(studies)} studies in {tally.seconds:.1f} s with "
              f"{predictor.cfg.name}; {tally.failed} failed; outputs in {out}")
    return tally.done, tally.failed


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
