"""SCALP: patient-aware supervised contrastive learning beside the BCE (needs radsight[train])."""
from __future__ import annotations

import json

import numpy as np
import pytest

from radsight.core import FINDINGS

from conftest import chest_phantom, image_set

torch = pytest.importorskip("torch", reason="needs radsight[train]")

from radsight.train.loop import TrainConfig, train  # noqa: E402
from radsight.train.scalp import partners, patient_batches, scalp_loss, shared_labels, supcon  # noqa: E402


def test_batches_hold_one_image_a_patient():
    patients = [0, 0, 0, 1, 1, 2, 3, 4, 5, 5, 6, 7]
    order = list(np.random.default_rng(0).permutation(len(patients)))
    batches = patient_batches(order, patients, 4)
    assert len(batches) == 3 and all(len({patients[i] for i in b}) == len(b) for b in batches)
    assert len({i for b in batches for i in b}) == sum(map(len, batches)) >= 10  # a few may wait for a later epoch
    by_patient = {p: [i for i, q in enumerate(patients) if q == p] for p in set(patients)}
    mates = partners(torch.tensor([0, 5, 8]), by_patient, patients, torch.Generator().manual_seed(0))
    assert mates[0].item() in (1, 2) and mates[1].item() == 5 and mates[2].item() == 9


def test_contrastive_loss_is_lower_when_positives_are_close():
    y = torch.tensor([[1, 0, 1], [1, 0, 1], [0, 1, 1], [0, 0, 0]], dtype=torch.float32)  # 2 findings + any
    share = shared_labels(y)
    assert share[0, 1] and not share[0, 2] and share[3, 3] and not share[0, 3]
    together = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [1, 0.1], [0, 1], [-1, 0]]), dim=1)
    apart = together[[0, 2, 1, 3]]
    assert supcon(together, share) < supcon(apart, share)
    logits = torch.zeros(4, 3)
    loss = scalp_loss(logits, torch.cat([together, together]), y, y, lambda a, b: a.sum() * 0, 0.8)
    assert torch.isfinite(loss)


@pytest.fixture(scope="module")
def patient_set(tmp_path_factory):
    """Two films a patient; Effusion is a bright square in the lower lung, in both of a patient's films."""
    rng = np.random.default_rng(1)

    def films():
        for patient in range(30):
            positive = patient % 2
            for film in range(2):
                img = chest_phantom(64, 64, seed=2 * patient + film)
                if positive:
                    cy, cx = rng.integers(34, 46), rng.integers(14, 50)
                    img[cy - 5:cy + 5, cx - 5:cx + 5] = 1.0
                yield (f"{patient}-{film}.png", img, f"p{patient}", "val" if patient >= 22 else "train",
                       [positive if f == "Effusion" else 0 for f in FINDINGS])
    return image_set(tmp_path_factory.mktemp("scalp"), films())


def config(root, out, **kw):
    return TrainConfig(**{"manifest": str(root / "manifest.csv"), "images": str(root / "images"), "out": str(out),
                          "epochs": 8, "batch_size": 8, "lr": 3e-3, "threads": 1, "scalp": 0.8, **kw})


def test_scalp_learns_resumes_exactly_and_exports_the_classifier_alone(patient_set, tmp_path):
    from radsight.train.export import export_checkpoint
    train(config(patient_set, tmp_path / "run"))
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert max(h["val_mean_auroc"] for h in history) > 0.75  # Effusion, the one finding that varies
    train(config(patient_set, tmp_path / "cut", epochs=3, stop_after=2))
    train(config(patient_set, tmp_path / "cut", epochs=3))
    train(config(patient_set, tmp_path / "whole", epochs=3))
    a, b = (torch.load(tmp_path / r / "last.pt", weights_only=False) for r in ("cut", "whole"))
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=0, atol=0)
    assert any(k.startswith("projector.") for k in a["extra"]) and not any(k.startswith("projector") for k in a["model"])
    export_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "model", "scalp-test", "0.0.1", "test", "phantoms")
    assert (tmp_path / "model" / "model.onnx").is_file()


def test_scalp_is_refused_where_it_does_not_apply():
    with pytest.raises(ValueError, match="SCALP"):
        TrainConfig(manifest="m", images="i", out="o", scalp=1.5)
    with pytest.raises(ValueError, match="SCALP"):
        TrainConfig(manifest="m", images="i", out="o", scalp=0.8, shards="s")
