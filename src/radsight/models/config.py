"""A model's pretrained config: everything needed to run it, stored beside its weights."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from radsight.inputs.preprocess import InputSpec

TRIAGE_LABEL = "Abnormal"
CLASSIFICATION = "classification"
SEGMENTATION = "lung-segmentation"
BONE_SUPPRESSION = "bone-suppression"
VIEW_CLASSIFICATION = "view-classification"
AGE_SEX = "age-sex"
NODULE_DETECTION = "nodule-detection"


@dataclass
class ModelConfig:
    name: str
    version: str
    architecture: str
    labels: list[str]  # output order of the network; TRIAGE_LABEL is the any-finding output
    input: InputSpec
    thresholds: dict[str, float] = field(default_factory=dict)  # operating points, per label
    threshold_methods: dict[str, str] = field(default_factory=dict)  # how each was chosen
    # a two-view model's thresholds for studies read with their lateral (radsight calibrate --lateral)
    lateral_thresholds: dict[str, float] = field(default_factory=dict)
    validated: dict[str, dict] = field(default_factory=dict)  # per label on the calibration split: auroc, n_pos, n_neg
    # a finding validated below these bars (min_auroc, min_positives) is shown but never called positive
    finding_policy: dict = field(default_factory=dict)
    urgent: dict[str, dict] = field(default_factory=dict)  # urgent findings' own operating points (triage.py)
    urgent_policy: dict = field(default_factory=dict)  # the bars an urgent point must pass; empty: the defaults
    task: str = "classification"  # or "lung-segmentation", "bone-suppression", "view-classification"
    views: list[str] = field(default_factory=lambda: ["frontal"])  # a classifier's views: frontal, and lateral
    outputs: list[str] = field(default_factory=lambda: ["logits", "cams"])  # ONNX outputs, in this order
    weights: str = "model.onnx"  # file name beside config.json
    sha256: str = ""
    license: str = ""
    training_data: str = ""
    model_card: str = "MODEL_CARD.md"
    intended_use: str = "Research and demonstration only; not for diagnostic use."
    provenance: dict = field(default_factory=dict)  # imported models: format, publisher's URL, source sha256
    metrics: dict = field(default_factory=dict)  # measured figures worth listing (e.g. mean AUROC and where)
    source_models: dict[str, str] = field(default_factory=dict)  # input source -> the model that makes it
    ood: dict = field(default_factory=dict)  # the out-of-distribution gate: file, sha256, threshold, how it was fitted
    quantization: dict = field(default_factory=dict)  # an int8 variant: its float source, calibration, measured cost
    fitted: dict = field(default_factory=dict)  # what a head's reading was fitted with on validation (age correction)
    directory: Path | None = field(default=None, compare=False, repr=False)

    @property
    def findings(self) -> list[str]:
        return [label for label in self.labels if label != TRIAGE_LABEL]

    @property
    def weights_path(self) -> Path:
        if self.directory is None:
            raise ValueError(f"model {self.name} has no directory")
        return self.directory / self.weights

    def threshold(self, label: str, lateral: bool = False) -> float:
        """``label``'s operating threshold; ``lateral``: for a study read with its lateral view."""
        if lateral and label in self.lateral_thresholds:
            return float(self.lateral_thresholds[label])
        return float(self.thresholds.get(label, 0.5))

    def withheld(self, label: str) -> str | None:
        """Why ``label`` is never called positive under the config's ``finding_policy``, or None."""
        if not self.finding_policy:
            return None
        point = self.validated.get(label) or {}
        n_pos, auroc = point.get("n_pos", 0), point.get("auroc")
        if n_pos < self.finding_policy.get("min_positives", 3):
            return f"validated on {n_pos} positives"
        if auroc is None or auroc < self.finding_policy.get("min_auroc", 0.0):
            return f"validated AUROC {auroc:.2f} is below {self.finding_policy['min_auroc']:.2f}" if auroc is not None \
                else "no validated AUROC"
        return None

    def to_dict(self) -> dict:
        out = asdict(self)
        del out["directory"]
        return out

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "config.json"
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: Path) -> ModelConfig:
        data = json.loads((directory / "config.json").read_text())
        data["input"] = InputSpec(**data["input"])
        return cls(**data, directory=directory)

    @property
    def reads_lateral(self) -> bool:
        return "lateral" in self.views
