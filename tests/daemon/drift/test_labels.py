from __future__ import annotations

import json
import math

import numpy as np
import pytest

from daemon.drift import (
    DriftResult,
    DriftValueError,
    LabelMixDetector,
    NegativeSurgeDetector,
    NotFittedError,
    psi,
    severity,
)


def labels(**counts: int) -> list[str]:
    return [name for name, n in counts.items() for _ in range(n)]


# --- PSI -------------------------------------------------------------------------------


def test_psi_matches_hand_computed_value():
    # (0.25-0.5)·ln(0.25/0.5) + (0.75-0.5)·ln(0.75/0.5) = 0.25·(ln 2 + ln 1.5) = 0.25·ln 3
    assert psi([50, 50], [25, 75]) == pytest.approx(0.25 * math.log(3), abs=1e-12)


def test_psi_three_bins_hand_computed():
    # 60/30/10 -> 10/30/60: the middle bin contributes 0, the outer two 0.5·ln 6 each.
    assert psi([0.6, 0.3, 0.1], [0.1, 0.3, 0.6]) == pytest.approx(math.log(6), abs=1e-12)


def test_psi_is_zero_for_identical_and_finite_for_an_empty_bin():
    assert psi([3, 2, 5], [30, 20, 50]) == pytest.approx(0.0, abs=1e-12)
    value = psi([10, 0], [5, 5], eps=1e-4)
    # With the empty bin floored at 1e-4 and renormalised (hand-computed):
    e = np.array([1, 1e-4]) / 1.0001
    assert value == pytest.approx(float(np.sum((0.5 - e) * np.log(0.5 / e))), rel=1e-12)


def test_psi_rejects_mismatched_bins_naming_them():
    with pytest.raises(DriftValueError, match=r"bins = \(\(2,\), \(3,\)\)"):
        psi([1, 1], [1, 1, 1])


# --- LabelMixDetector ------------------------------------------------------------------


def test_label_mix_detects_a_flipped_mix():
    detector = LabelMixDetector().fit(labels(pos=180, neu=90, neg=30))
    result = detector.score(labels(pos=30, neu=90, neg=180))
    assert result.drifted
    assert result.p_value < 1e-30
    assert result.score == pytest.approx(math.log(6), abs=1e-12)
    assert result.details["window_share"] == {"neg": 0.6, "neu": 0.3, "pos": 0.1}
    assert severity(result) == "critical"


def test_label_mix_quiet_on_a_same_distribution_sample():
    detector = LabelMixDetector().fit(labels(pos=180, neu=90, neg=30))
    result = detector.score(labels(pos=176, neu=94, neg=30))
    assert not result.drifted
    assert result.p_value > 0.5
    assert result.score < 0.01
    assert severity(result) == "none"


def test_label_mix_needs_both_test_and_psi():
    # Huge windows make a 2-point shift significant, but PSI is far below 0.2: no alert.
    detector = LabelMixDetector().fit(labels(pos=60_000, neg=40_000))
    result = detector.score(labels(pos=58_000, neg=42_000))
    assert result.p_value < 0.01
    assert result.score < 0.2
    assert not result.drifted


def test_label_mix_counts_a_class_unseen_in_reference_and_works_on_predictions():
    detector = LabelMixDetector(name="predicted_mix").fit([0] * 100 + [1] * 100)
    result = detector.score(["0"] * 50 + ["1"] * 50 + ["2"] * 100)
    assert result.detector == "predicted_mix"
    assert result.drifted
    assert result.details["reference_share"]["2"] == 0.0


def test_label_mix_single_class_is_never_drift():
    result = LabelMixDetector().fit(["a"] * 10).score(["a"] * 5)
    assert (result.p_value, result.score, result.drifted) == (1.0, 0.0, False)


def test_result_to_dict_is_json_ready():
    result = LabelMixDetector().fit(labels(a=5, b=5)).score(labels(a=9, b=1))
    data = result.to_dict()
    assert json.loads(json.dumps(data)) == data
    assert set(data) == {"detector", "score", "threshold", "drifted", "p_value", "details"}


def test_label_mix_validation_names_the_value():
    with pytest.raises(DriftValueError, match=r"label_mix: alpha = 1.5 is not allowed"):
        LabelMixDetector(alpha=1.5)
    with pytest.raises(DriftValueError, match=r"psi_threshold = -1"):
        LabelMixDetector(psi_threshold=-1)
    with pytest.raises(NotFittedError, match="label_mix: score\\(\\) called before fit"):
        LabelMixDetector().score(["a"])
    with pytest.raises(DriftValueError, match=r"label_mix: window rows = 0 is not allowed"):
        LabelMixDetector().fit(["a", "b"]).score([])
    with pytest.raises(DriftValueError, match=r"reference rows = 0"):
        LabelMixDetector().fit([])


# --- NegativeSurgeDetector -------------------------------------------------------------


def test_negative_surge_detected_from_15_to_40_percent():
    detector = NegativeSurgeDetector().fit(labels(negative=30, other=170))
    result = detector.score(labels(negative=80, other=120))
    assert result.drifted
    assert result.score == pytest.approx(0.25)
    # Pooled share 0.275, se = sqrt(0.275·0.725·(2/200)) = 0.044651..., z = 0.25/se
    assert result.details["z"] == pytest.approx(0.25 / math.sqrt(0.275 * 0.725 * 0.01), rel=1e-12)
    assert result.p_value < 1e-6
    assert severity(result) == "critical"


def test_negative_surge_not_for_15_to_17_percent():
    detector = NegativeSurgeDetector().fit(labels(negative=30, other=170))
    result = detector.score(labels(negative=34, other=166))
    assert not result.drifted
    assert result.score == pytest.approx(0.02)
    assert result.p_value > 0.1


def test_negative_surge_ignores_a_falling_share_and_a_tiny_significant_rise():
    detector = NegativeSurgeDetector().fit(labels(negative=80, other=120))
    assert detector.score(labels(negative=10, other=190)).p_value > 0.99
    big = NegativeSurgeDetector().fit(labels(negative=15_000, other=85_000))
    result = big.score(labels(negative=17_000, other=83_000))
    assert result.p_value < 1e-10 and not result.drifted  # significant, but lift 0.02 < 0.10


def test_negative_surge_custom_target_and_degenerate_shares():
    detector = NegativeSurgeDetector(target="bearish").fit(["bullish"] * 20)
    assert detector.score(["bullish"] * 10).p_value == 1.0  # nobody bearish anywhere
    assert detector.score(["bearish"] * 10).drifted


def test_negative_surge_validation():
    with pytest.raises(DriftValueError, match=r"negative_surge: min_lift = 1.2 is not allowed"):
        NegativeSurgeDetector(min_lift=1.2)
    with pytest.raises(DriftValueError, match=r"window rows = 0"):
        NegativeSurgeDetector().fit(["negative"]).score([])


# --- severity --------------------------------------------------------------------------


def test_severity_levels():
    base = dict(detector="d", threshold=0.2, details={"alpha": 0.01})
    assert severity(DriftResult(score=0.5, drifted=False, p_value=1e-9, **base)) == "none"
    assert severity(DriftResult(score=0.25, drifted=True, p_value=0.005, **base)) == "warning"
    assert severity(DriftResult(score=0.25, drifted=True, p_value=0.0005, **base)) == "critical"
    assert severity(DriftResult(score=0.4, drifted=True, p_value=0.005, **base)) == "critical"
    assert severity(DriftResult(score=0.25, drifted=True, p_value=0.005, **base), alpha=0.1) == "critical"
