"""Faithfulness curves and adversarial attacks on models whose answers are known."""
from __future__ import annotations

import numpy as np
import pytest

from radsight.evaluate.faithfulness import area, curves, removed
from radsight.evaluate.robustness import PERTURBATIONS, triage_decisions


def test_deletion_falls_faster_and_insertion_rises_faster_in_the_true_order():
    """A score that is the mean brightness of one square: the square first beats a random order both ways."""
    x = np.zeros((1, 32, 32), np.float32)
    x[0, 8:16, 8:16] = 1.0
    truth = np.zeros((32, 32))
    truth[8:16, 8:16] = 1.0

    def score(batch):
        return batch[:, 0, 8:16, 8:16].mean(axis=(1, 2))
    d_true, i_true = curves(score, x, truth)
    d_rand, i_rand = curves(score, x, np.random.default_rng(0).random((32, 32)))
    assert d_true[0] == d_rand[0] == pytest.approx(1.0) and len(d_true) == 17
    assert area(d_true) < area(d_rand) and area(i_true) > area(i_rand)
    assert d_true[-1] == pytest.approx(score(removed(x)[None])[0])  # everything removed: the blurred input


def test_area_is_the_trapezoid_rule():
    assert area(np.array([1.0, 0.0])) == 0.5
    assert area(np.array([0.0, 1.0, 1.0])) == 0.75


def test_perturbations_keep_the_display_range_and_shape():
    pixels = np.random.default_rng(0).random((40, 30)).astype(np.float32)
    for name, change in PERTURBATIONS.items():
        out = change(pixels, 3)
        assert out.shape == pixels.shape and out.dtype == np.float32 and 0 <= out.min() and out.max() <= 1, name
        assert not np.array_equal(out, pixels), name


def test_triage_decisions_with_and_without_a_triage_output():
    p = np.array([[0.2, 0.9], [0.05, 0.1]])
    assert triage_decisions(p, ["Mass", "Abnormal"], {"Abnormal": 0.5}).tolist() == [True, False]
    assert triage_decisions(p, ["Mass", "Nodule"], {"Mass": 0.1, "Nodule": 0.95}).tolist() == [True, False]


def test_pgd_stays_in_budget_and_raises_the_loss(tiny_model):
    torch = pytest.importorskip("torch", reason="attacks need radsight[train]")
    from radsight.evaluate.robustness import _attack
    from radsight.explain.torch_graph import TorchGraph, as_tensor
    from radsight.models.config import ModelConfig
    cfg = ModelConfig.load(tiny_model)
    graph = TorchGraph(tiny_model / "model.onnx")
    rng = np.random.default_rng(0)
    x = ((rng.random((4, 1, 64, 64)) - cfg.input.mean) / cfg.input.std).astype(np.float32)
    y = (rng.random((4, len(cfg.labels))) < 0.5).astype(np.float64)
    y[0, 0] = np.nan

    def loss(batch):
        logits = graph(as_tensor(batch), outputs=["logits"])["logits"]
        known = as_tensor(~np.isnan(y))
        return float((torch.nn.functional.binary_cross_entropy_with_logits(
            logits, as_tensor(np.nan_to_num(y)), reduction="none") * known).sum())
    for steps in (1, 10):
        adv = _attack(graph, x, y, 4.0, cfg.input, steps)
        budget = 4.0 / 255 / cfg.input.std
        assert np.abs(adv - x).max() <= budget + 1e-6
        assert adv.min() >= (0 - cfg.input.mean) / cfg.input.std - 1e-6
        assert loss(adv) > loss(x)
