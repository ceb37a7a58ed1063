"""The monitor suite on hand-made rows and outputs: exact live macro-F1, the right detectors skipped."""

from __future__ import annotations

import numpy as np
import pytest

from daemon.drift.suite import DETECTORS, DriftSuite, Outputs, SuiteConfig, _macro_f1
from retrain.evaluation import score

LABELS = ["negative", "neutral", "positive"]


def outputs(pred: list[str], rng: np.random.Generator, shift: float = 0.0) -> Outputs:
    return Outputs(list(pred), np.full(len(pred), 0.8), rng.normal(shift, 1.0, size=(len(pred), 4)))


def test_vectorised_macro_f1_matches_the_evaluation_report():
    rng = np.random.default_rng(0)
    truth, pred = rng.integers(0, 3, size=200), rng.integers(0, 3, size=200)
    pred[:5] = 0  # keep every class present in predictions
    expected = score([LABELS[i] for i in truth], [LABELS[i] for i in pred], LABELS)["macro_f1"]
    assert _macro_f1(truth[None, :], pred[None, :], 3)[0] == pytest.approx(expected)
    # A class absent from both sides scores 0 in the average, as in the evaluation report.
    assert _macro_f1(np.array([[0, 1]]), np.array([[0, 1]]), 3)[0] == pytest.approx(2 / 3)


def test_live_performance_drifts_on_a_real_drop_only():
    rng = np.random.default_rng(1)
    labels = [LABELS[i % 3] for i in range(300)]
    suite = DriftSuite(SuiteConfig(), LABELS).fit(["a text"] * 300, labels, outputs(labels, rng), baseline_f1=0.9)
    good, _ = suite.score(["a text"] * 300, labels, outputs(labels, rng))
    live = {r.detector: r for r in good}["live_performance"]
    assert live.details["live_macro_f1"] == pytest.approx(1.0) and not live.drifted and live.score < 0

    wrong = [LABELS[(i + 1) % 3] if i % 2 else labels[i] for i in range(300)]  # half of them wrong
    bad, _ = suite.score(["a text"] * 300, labels, outputs(wrong, rng))
    live = {r.detector: r for r in bad}["live_performance"]
    assert live.drifted and live.score == pytest.approx(0.9 - live.details["live_macro_f1"])
    assert live.details["live_accuracy"] == pytest.approx(0.5) and live.p_value < 0.01


def test_without_outputs_the_model_monitors_are_skipped_and_results_keep_their_order():
    rng = np.random.default_rng(2)
    labels = [LABELS[i % 3] for i in range(90)]
    suite = DriftSuite(SuiteConfig(), LABELS).fit(["x"] * 90, labels)
    results, skipped = suite.score(["x"] * 30, labels[:30])
    assert [r.detector for r in results] == ["label_mix", "text_stats", "negative_surge"]
    assert set(skipped) == {"live_performance", "prediction_mix", "embedding_mmd"}

    full = DriftSuite(SuiteConfig(mmd_permutations=100), LABELS).fit(["x"] * 90, labels, outputs(labels, rng), 0.8)
    results, skipped = full.score(["x"] * 90, labels, outputs(labels, rng, shift=3.0))
    assert [r.detector for r in results] == list(DETECTORS) and skipped == {}
    by_name = {r.detector: r for r in results}
    assert by_name["embedding_mmd"].drifted  # embeddings moved by 3 standard deviations
    assert by_name["prediction_mix"].details["window_mean_confidence"] == pytest.approx(0.8)
