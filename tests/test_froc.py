"""FROC on a hand-made case list equals the hand computation."""
from __future__ import annotations

import numpy as np
import pytest

from radsight.evaluate.froc import Case, froc, mark, sensitivities, threshold_at


def _cases() -> list[Case]:
    # 1 mm a pixel; lesions of 30 mm reach 15 px, smaller ones 10 px (the 10 mm floor)
    return [
        Case(lesions=[(50, 50, 30)], detections=[(60, 50, 0.9), (52, 48, 0.8), (200, 200, 0.7)], spacing_mm=1.0),
        Case(lesions=[(100, 100, 6)], detections=[(115, 100, 0.95), (105, 100, 0.3)], spacing_mm=1.0),
        Case(lesions=[], detections=[(10, 10, 0.6), (20, 20, 0.2)], spacing_mm=1.0),
        Case(lesions=[], detections=[], spacing_mm=1.0),
    ]


def test_each_lesion_counts_once_and_repeated_hits_are_ignored():
    m = mark(_cases())
    # image 0: 0.9 hits lesion 0, 0.8 hits it again (ignored), 0.7 misses; image 1: 0.95 is 15 px from a 6 mm
    # lesion (reach 10 px): a false positive; 0.3 hits lesion 1; image 2: two false positives
    assert m.lesion.tolist() == [0, -2, -1, -1, 1, -1, -1]
    assert m.scores.tolist() == [0.9, 0.8, 0.7, 0.95, 0.3, 0.6, 0.2]


def test_sensitivities_at_each_false_positive_rate_match_the_hand_computation():
    # descending: 0.95 FP (fppi .25, found 0), 0.9 TP (.25, 1), 0.8 ignored, 0.7 FP (.5, 1), 0.6 FP (.75, 1),
    # 0.3 TP (.75, 2), 0.2 FP (1.0, 2)
    s = sensitivities(_cases())
    assert s == {"0.125": 0.0, "0.25": 0.5, "0.5": 0.5, "1": 1.0, "2": 1.0, "4": 1.0, "8": 1.0}
    assert threshold_at(_cases(), 0.5) == pytest.approx(0.7)


def test_cpm_and_image_auroc():
    out = froc(_cases(), bootstrap=50)
    assert out["cpm"] == pytest.approx((0 + 0.5 + 0.5 + 1 + 1 + 1 + 1) / 7)
    # best scores: 0.9 and 0.95 (lesions) against 0.6 and 0 (none): every pair ordered
    assert out["image_auroc"] == 1.0
    assert set(out["sensitivity_ci"]) == set(out["sensitivity"]) and len(out["cpm_ci"]) == 2


def test_bootstrap_weights_count_repeated_cases():
    doubled = sensitivities(_cases(), np.array([2.0, 0.0, 1.0, 1.0]))
    # lesions: 2 (image 0 twice); FPs per image over 4 draws: 0.7 twice (.5), 0.6 (.75), 0.2 (1.0)
    assert doubled["0.25"] == 1.0 and doubled["8"] == 1.0
