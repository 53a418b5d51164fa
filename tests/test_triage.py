import numpy as np

from radsight.core import Finding
from radsight.evaluate.calibration import urgent_point
from radsight.evaluate.scores import Bootstrap, urgent_summary
from radsight.heads.triage import UrgentPolicy, priority, urgent_checks, withheld_reason


def separable(n_pos=20, n_neg=200, seed=0):
    rng = np.random.default_rng(seed)
    y = np.r_[np.ones(n_pos), np.zeros(n_neg)]
    return y, np.r_[rng.uniform(0.4, 1.0, n_pos), rng.uniform(0.0, 0.6, n_neg)]


def test_urgent_point_reaches_the_target_specificity_on_validation():
    y, s = separable()
    point = urgent_point(y, s, UrgentPolicy(target_specificity=0.95))
    assert point["specificity"] >= 0.95 and point["n_pos"] == 20 and point["n_neg"] == 200
    assert np.mean(s[y == 0] >= point["threshold"]) <= 0.05
    assert withheld_reason(point, UrgentPolicy()) is None


def test_a_weak_or_unvalidated_urgent_point_is_withheld_and_says_why():
    rng = np.random.default_rng(1)
    y, s = np.r_[np.ones(20), np.zeros(200)], rng.uniform(0, 1, 220)  # no better than chance
    weak = urgent_point(y, s, UrgentPolicy())
    assert "AUROC" in withheld_reason(weak, UrgentPolicy())
    few = urgent_point(*separable(n_pos=3), UrgentPolicy())
    assert "3 positives" in withheld_reason(few, UrgentPolicy())
    assert "no urgent operating point" in withheld_reason(None, UrgentPolicy())


def test_priority_is_urgent_only_when_a_flag_in_force_fires():
    y, s = separable()
    point = urgent_point(y, s, UrgentPolicy())
    above = Finding("Pneumothorax", point["threshold"] + 0.01, 0.05, True)
    below = Finding("Pneumothorax", point["threshold"] - 0.01, 0.05, True)  # past its ordinary threshold only
    assert priority(0.1, 0.5, urgent_checks([above], {"Pneumothorax": point}, UrgentPolicy())) == "urgent"
    assert priority(0.1, 0.5, urgent_checks([below], {"Pneumothorax": point}, UrgentPolicy())) == "routine"
    checks = urgent_checks([above], {}, UrgentPolicy())
    assert not checks[0].flagged and checks[0].withheld and priority(0.9, 0.5, checks) == "high"


def test_urgent_summary_counts_flags_per_100_studies():
    y, s = separable()
    point = urgent_point(y, s, UrgentPolicy())
    labels = ["Effusion", "Pneumothorax"]
    ys, ss = np.stack([y, y], 1), np.stack([s, s], 1)
    boot = Bootstrap([str(i) for i in range(len(y))], n=50)
    summary = urgent_summary(labels, ys, ss, {"Pneumothorax": 0.3}, {"Pneumothorax": point}, UrgentPolicy(), boot)
    entry = summary["findings"]["Pneumothorax"]
    assert entry["withheld"] is None
    assert summary["urgent_per_100_studies"] == entry["flags_per_100_if_in_force"] == 100 * np.mean(s >= point["threshold"])
    assert entry["flags_per_100_at_ordinary_threshold"] > entry["flags_per_100_if_in_force"]
    strict = UrgentPolicy(min_auroc=1.01)
    assert urgent_summary(labels, ys, ss, {}, {"Pneumothorax": point}, strict, boot)["urgent_per_100_studies"] == 0
