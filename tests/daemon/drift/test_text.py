from __future__ import annotations

import numpy as np
import pytest

from daemon.drift import DriftValueError, TextStatsDetector


def test_statistics_are_exact():
    detector = TextStatsDetector(vocabulary={"shares", "rose"})
    stats = detector.statistics(["Shares rose 5%", "$AAPL up, see https://x.io now", ""])
    assert stats["length_chars"].tolist() == [14.0, 30.0, 0.0]
    assert stats["url_ticker_share"].tolist() == [0.0, 2 / 5, 0.0]
    assert stats["unknown_share"].tolist() == [1 / 3, 1.0, 0.0]  # "5" is unknown; "" has no words


def test_no_vocabulary_means_no_unknown_share():
    assert set(TextStatsDetector().statistics(["a b"])) == {"length_chars", "url_ticker_share"}


def headlines(seed: int, n: int) -> list[str]:
    rng = np.random.default_rng(seed)
    words = ["shares", "of", "company", "rose", "after", "earnings", "beat", "estimates"]
    return [" ".join(rng.choice(words, size=int(k))) for k in rng.integers(4, 12, size=n)]


def test_quiet_on_the_same_kind_of_text():
    detector = TextStatsDetector(vocabulary={"shares", "of", "company"}).fit(headlines(0, 300))
    result = detector.score(headlines(1, 200))
    assert not result.drifted
    assert result.details["n_reference"] == 300 and result.details["n_window"] == 200
    assert result.p_value > 0.5  # PSI alone is noisy at n=200 (~0.1), which is why both must agree


def test_detects_longer_texts_and_link_spam():
    rng = np.random.default_rng(0)
    reference = ["word " * int(n) for n in rng.integers(5, 15, size=200)]
    detector = TextStatsDetector().fit(reference)

    longer = detector.score(["word " * int(n) for n in rng.integers(30, 40, size=200)])
    assert longer.drifted
    assert longer.details["statistics"]["length_chars"]["drifted"]
    assert not longer.details["statistics"]["url_ticker_share"]["drifted"]

    spam = detector.score([f"buy $TSLA now https://spam.example/{i}" for i in range(200)])
    assert spam.drifted
    assert spam.details["statistics"]["url_ticker_share"]["drifted"]
    assert spam.details["statistics"]["url_ticker_share"]["window_mean"] == pytest.approx(0.5)


def test_validation_names_the_value():
    with pytest.raises(DriftValueError, match=r"text_stats: window rows = 0"):
        TextStatsDetector().fit(["a"]).score([])
    with pytest.raises(DriftValueError, match=r"text #1 = None is not allowed"):
        TextStatsDetector().fit(["a", None])
    with pytest.raises(DriftValueError, match=r"bins = 1"):
        TextStatsDetector(bins=1)
