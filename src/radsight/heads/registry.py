"""Every head radsight has, in the order the overlay draws them: a new head is one line here."""
from __future__ import annotations

from radsight.heads import age_sex, anatomy, bone, findings, nodules, ood, view
from radsight.heads.base import Head
from radsight.models.config import TRIAGE_LABEL, ModelConfig

HEADS: dict[str, Head] = {h.task: h for h in (findings.HEAD, findings.ABNORMAL, anatomy.HEAD, bone.HEAD, view.HEAD,
                                              ood.HEAD, age_sex.HEAD, nodules.HEAD)}
# Task words of earlier releases, still taken by ``radsight train --task``.
ALIASES = {"classification": "findings", "lung-segmentation": "anatomy"}


def get_head(task: str) -> Head:
    """The head of a task word; ValueError naming the known ones."""
    task = ALIASES.get(task, task)
    if task not in HEADS:
        raise ValueError(f"unknown task {task!r}; tasks: {', '.join(HEADS)}")
    return HEADS[task]


def head_of(cfg: ModelConfig) -> Head:
    """The head a model serves: by its config's task; a classifier of the triage output alone is ``abnormal``."""
    if cfg.task == "classification" and cfg.findings == [] and TRIAGE_LABEL in cfg.labels:
        return HEADS["abnormal"]
    found = [h for h in HEADS.values() if cfg.task in h.model_tasks]
    if not found:
        raise ValueError(f"model {cfg.name}: no head reads {cfg.task!r} models")
    return found[0]
