"""The paired bootstrap of a macro-F1 difference, checked against sklearn and a naive loop."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import f1_score

from registry import bootstrap
from registry.bootstrap import macro_f1, negative_flips, paired_gain

LABELS = ["negative", "neutral", "positive"]


def random_pair(n: int, seed: int, labels=LABELS, accuracy=(0.8, 0.7)):
    """Truth and two models right on about `accuracy` of the rows, uniformly wrong otherwise."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(labels, size=n)
    models = []
    for acc in accuracy:
        noise = rng.choice(labels, size=n)
        models.append(np.where(rng.random(n) < acc, truth, noise))
    return truth.tolist(), models[0].tolist(), models[1].tolist()


def sk_macro_f1(y_true, y_pred, labels=LABELS) -> float:
    return f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)


@pytest.mark.parametrize("seed", range(5))
def test_macro_f1_equals_sklearn_on_random_data(seed):
    y_true, new, old = random_pair(int(np.random.default_rng(seed).integers(5, 300)), seed)
    assert macro_f1(y_true, new, LABELS) == pytest.approx(sk_macro_f1(y_true, new), abs=1e-12)
    gain = paired_gain(y_true, new, old, LABELS, samples=200, confidence=0.95, seed=seed)
    assert gain.new == pytest.approx(sk_macro_f1(y_true, new), abs=1e-12)
    assert gain.old == pytest.approx(sk_macro_f1(y_true, old), abs=1e-12)


def test_macro_f1_counts_absent_and_never_predicted_classes_as_sklearn_does():
    # 'neutral' never occurs and is never predicted (F1 0 with zero_division=0); 'positive' is
    # never predicted; 'mixed' is not a known label: a wrong prediction for no class.
    labels = ["negative", "neutral", "positive", "other"]
    y_true = ["negative", "negative", "positive", "positive", "other"]
    y_pred = ["negative", "mixed", "negative", "negative", "other"]
    expected = f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)
    assert macro_f1(y_true, y_pred, labels) == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx((0.4 + 0 + 0 + 1) / 4)


def test_bootstrap_distribution_equals_a_naive_sklearn_loop():
    y_true, new, old = random_pair(40, seed=7)
    samples, seed = 200, 11
    draws = np.random.default_rng(seed).integers(0, 40, size=(samples, 40))
    t, a, b = (np.asarray(v) for v in (y_true, new, old))
    gains = [sk_macro_f1(t[i], a[i]) - sk_macro_f1(t[i], b[i]) for i in draws]
    low, high = np.quantile(gains, [0.05, 0.95])
    gain = paired_gain(y_true, new, old, LABELS, samples=samples, confidence=0.90, seed=seed)
    assert (gain.low, gain.high) == pytest.approx((low, high), abs=1e-12)


def test_same_seed_same_interval_other_seed_other_interval():
    y_true, new, old = random_pair(500, seed=3)
    run = lambda seed: paired_gain(y_true, new, old, LABELS, samples=1000, confidence=0.95, seed=seed)  # noqa: E731
    assert run(0) == run(0)
    assert (run(0).low, run(0).high) != (run(1).low, run(1).high)


def test_interval_narrows_as_rows_grow():
    widths = {}
    for n in (100, 2000):
        gain = paired_gain(*random_pair(n, seed=5), LABELS, samples=1000, confidence=0.95, seed=0)
        assert gain.low <= gain.gain <= gain.high
        widths[n] = gain.high - gain.low
    # The width shrinks like 1/sqrt(n): about 4.5x for 20x the rows.
    assert widths[2000] < widths[100] / 3


def test_identical_models_give_a_zero_width_interval():
    y_true, new, _ = random_pair(200, seed=1)
    gain = paired_gain(y_true, new, new, LABELS, samples=500, confidence=0.95, seed=0)
    assert (gain.gain, gain.low, gain.high) == (0.0, 0.0, 0.0)


def test_scoring_resamples_in_blocks_does_not_change_the_interval(monkeypatch):
    # 100,000 resamples x 2,000 rows would be a 1.6 GB matrix in one piece, so resamples are scored
    # in blocks; the blocks draw from one generator stream, so their size cannot change the answer.
    y_true, new, old = random_pair(300, seed=2)
    whole = paired_gain(y_true, new, old, LABELS, samples=1000, confidence=0.99, seed=0)
    monkeypatch.setattr(bootstrap, "_BLOCK_CELLS", 300 * 7)  # blocks of 7 resamples, the last one short
    assert paired_gain(y_true, new, old, LABELS, samples=1000, confidence=0.99, seed=0) == whole


def test_thousand_resamples_of_two_thousand_rows_take_well_under_a_second():
    y_true, new, old = random_pair(2000, seed=4)
    start = time.perf_counter()
    paired_gain(y_true, new, old, LABELS, samples=1000, confidence=0.95, seed=0)
    assert time.perf_counter() - start < 1.0


def test_negative_flips_count_rows_right_before_and_wrong_now():
    y_true = ["a", "a", "b", "b", "c"]
    old = ["a", "b", "b", "b", "a"]
    new = ["b", "a", "b", "a", "b"]  # row 0 and row 3 flipped to wrong; row 1 fixed
    assert negative_flips(y_true, new, old) == 2
