"""Temperature scaling and the label-free macro-F1 estimate, on synthetic rows whose truth is known."""

from __future__ import annotations

import numpy as np
import pytest

from retrain.calibration import expected_macro_f1, fit_temperature, scaled


def synthetic(n=4000, classes=3, seed=0):
    """Logits, the calibrated probabilities they imply and labels drawn from them."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, classes))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = np.array([rng.choice(classes, p=p) for p in probs])
    return logits, probs, truth


def macro_f1(pred, truth, classes=3):
    return np.mean([2 * np.sum((pred == c) & (truth == c)) / (np.sum(pred == c) + np.sum(truth == c))
                    for c in range(classes)])


def test_an_over_confident_model_gets_its_temperature_back():
    logits, _, truth = synthetic()
    over_confident = scaled(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 0.5)  # logits x 2
    assert fit_temperature(over_confident, truth) == pytest.approx(2.0, rel=0.08)
    _, calibrated, truth = synthetic(seed=1)
    assert fit_temperature(calibrated, truth) == pytest.approx(1.0, rel=0.08)


def test_the_estimate_on_calibrated_probabilities_brackets_the_true_score():
    _, probs, truth = synthetic(n=3000, seed=2)
    true = macro_f1(probs.argmax(axis=1), truth)
    estimate = expected_macro_f1(probs, draws=300)
    assert estimate.low <= true <= estimate.high
    assert estimate.macro_f1 == pytest.approx(true, abs=0.03)
    assert estimate.high - estimate.low < 0.06  # 3,000 rows: a narrow interval


def test_an_uncalibrated_model_is_over_estimated_until_it_is_recalibrated():
    logits, _, truth = synthetic(n=3000, seed=3)
    over_confident = scaled(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True), 0.4)
    true = macro_f1(over_confident.argmax(axis=1), truth)
    naive = expected_macro_f1(over_confident)
    recalibrated = expected_macro_f1(scaled(over_confident, fit_temperature(over_confident, truth)))
    assert naive.macro_f1 > true + 0.1
    assert recalibrated.macro_f1 == pytest.approx(true, abs=0.03)
