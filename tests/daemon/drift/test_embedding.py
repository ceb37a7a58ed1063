from __future__ import annotations

import numpy as np
import pytest

from daemon.drift import DriftValueError, EmbeddingMMDDetector, NotFittedError, severity
from daemon.drift.embedding import _unbiased_mmd2

D = 8


def gaussian(seed: int, n: int = 100, shift: float = 0.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(shift, 1.0, size=(n, D))


def test_unbiased_mmd2_matches_the_textbook_loops():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 3)), rng.normal(1, 1, size=(4, 3))
    z = np.vstack([x, y])
    k = np.exp(-((z[:, None] - z[None]) ** 2).sum(-1) / 2)
    m, n = 5, 4
    xx = sum(k[i, j] for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k[m + i, m + j] for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k[i, m + j] for i in range(m) for j in range(n)) / (m * n)
    sides = np.array([[1] * m + [0] * n], dtype=float)
    assert _unbiased_mmd2(k, sides, m, n)[0] == pytest.approx(xx + yy - 2 * xy, abs=1e-12)


def test_same_distribution_rarely_alarms():
    false_alarms = 0
    for seed in range(20):
        detector = EmbeddingMMDDetector(alpha=0.05, seed=seed).fit(gaussian(1000 + seed))
        false_alarms += detector.score(gaussian(2000 + seed)).drifted
    assert false_alarms <= 3


def test_shifted_mean_detected_for_every_seed():
    for seed in range(20):
        detector = EmbeddingMMDDetector(alpha=0.05, seed=seed).fit(gaussian(1000 + seed))
        result = detector.score(gaussian(2000 + seed, shift=0.5))
        assert result.drifted, seed
        assert result.p_value == pytest.approx(1 / 201)  # no permutation beat the observed split
        assert result.score > result.threshold


def test_deterministic_under_a_seed_and_seed_matters_for_subsampling():
    ref, win = gaussian(1, n=700), gaussian(2, n=650, shift=0.05)
    a = EmbeddingMMDDetector(seed=7).fit(ref)
    b = EmbeddingMMDDetector(seed=7).fit(ref)
    assert a.score(win).to_dict() == b.score(win).to_dict() == a.score(win).to_dict()
    c = EmbeddingMMDDetector(seed=8).fit(ref)
    assert c.score(win).score != a.score(win).score  # another subsample of 500 rows


def test_rows_are_capped_at_max_rows():
    detector = EmbeddingMMDDetector(max_rows=50, permutations=20).fit(gaussian(1, n=300))
    result = detector.score(gaussian(2, n=400))
    assert (result.details["n_reference"], result.details["n_window"]) == (50, 50)
    assert result.details["permutations"] == 20


def test_strong_shift_is_critical():
    result = EmbeddingMMDDetector().fit(gaussian(1)).score(gaussian(2, shift=3.0))
    assert severity(result) == "critical"


def test_validation_names_the_value():
    detector = EmbeddingMMDDetector().fit(gaussian(1))
    with pytest.raises(DriftValueError, match=r"window columns = 4 is not allowed: expected 8 columns"):
        detector.score(np.zeros((10, 4)))
    with pytest.raises(DriftValueError, match=r"embedding_mmd: window rows = 0 is not allowed"):
        detector.score(np.zeros((0, D)))
    with pytest.raises(DriftValueError, match=r"window shape = \(8,\)"):
        detector.score(np.zeros(D))
    with pytest.raises(DriftValueError, match=r"reference values = 'NaN or inf'"):
        EmbeddingMMDDetector().fit(np.full((3, 2), np.nan))
    with pytest.raises(DriftValueError, match=r"permutations = 0"):
        EmbeddingMMDDetector(permutations=0)
    with pytest.raises(DriftValueError, match=r"max_rows = 1"):
        EmbeddingMMDDetector(max_rows=1)
    with pytest.raises(NotFittedError):
        EmbeddingMMDDetector().score(gaussian(1))
