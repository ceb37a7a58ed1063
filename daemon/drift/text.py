"""Cheap text statistics: catch a changed feed before any model runs.

Per text we measure its length in characters, the share of its words missing from a
vocabulary (optional: pass the tokenizer's or the training set's words), and the share of
its whitespace tokens that are URLs or cash-tags like "$AAPL". A new source, a scraper
that starts keeping boilerplate, or a feed turning into link spam moves these first.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
from scipy import stats

from daemon.drift.base import (
    DriftResult,
    DriftValueError,
    NotFittedError,
    check_alpha,
    check_non_negative,
    check_not_empty,
    check_positive_int,
    psi,
)
from daemon.drift.config import DEFAULTS

_WORD = re.compile(r"[a-z0-9']+")
_URL = re.compile(r"^(?:https?://|www\.)\S+", re.IGNORECASE)
# Cash-tags: $ + 1–5 letters, optional share class ($BRK.B); trailing punctuation allowed.
_TICKER = re.compile(r"^\$[A-Za-z]{1,5}(?:\.[A-Za-z]{1,2})?[.,;:!?)]*$")


class TextStatsDetector:
    """Two-sample KS test and PSI per statistic, window against reference.

    A statistic drifts when its KS p-value, Bonferroni-corrected for the number of
    statistics, is below `alpha` AND its PSI (on bins from the reference's quantiles) is at
    least `psi_threshold`; the window drifts when any statistic does. As in
    `LabelMixDetector`, the PSI floor stops large windows alerting on shifts too small to
    matter; set `psi_threshold=0` for the test alone. The result's `score` is the largest
    PSI and `p_value` the smallest corrected p.
    """

    def __init__(
        self,
        vocabulary: Iterable[str] | None = None,
        alpha: float = DEFAULTS.alpha,
        psi_threshold: float = DEFAULTS.text_psi,
        bins: int = 10,
        name: str = "text_stats",
    ) -> None:
        self.name = name
        self.vocabulary = None if vocabulary is None else frozenset(w.lower() for w in vocabulary)
        self.alpha = check_alpha(name, alpha)
        self.psi_threshold = check_non_negative(name, "psi_threshold", psi_threshold)
        self.bins = check_positive_int(name, "bins", bins, minimum=2)
        self.reference_: dict[str, np.ndarray] | None = None

    def statistics(self, texts: Iterable[str]) -> dict[str, np.ndarray]:
        """Per-text statistics, one array per name (public so the daemon can log means)."""
        texts = list(texts)
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise DriftValueError(self.name, f"text #{i}", text, "a string")
        out = {
            "length_chars": np.array([len(t) for t in texts], dtype=float),
            "url_ticker_share": np.array([_url_ticker_share(t) for t in texts]),
        }
        if self.vocabulary is not None:
            out["unknown_share"] = np.array([_unknown_share(t, self.vocabulary) for t in texts])
        return out

    def fit(self, reference: Iterable[str]) -> TextStatsDetector:
        reference = list(reference)
        check_not_empty(self.name, "reference", reference)
        self.reference_ = self.statistics(reference)
        return self

    def score(self, window: Iterable[str]) -> DriftResult:
        if self.reference_ is None:
            raise NotFittedError(self.name)
        window = list(window)
        check_not_empty(self.name, "window", window)
        seen = self.statistics(window)
        per_stat = {}
        for key, ref in self.reference_.items():
            win = seen[key]
            ks = stats.ks_2samp(ref, win)
            p_value = min(1.0, float(ks.pvalue) * len(self.reference_))
            value = _binned_psi(ref, win, self.bins)
            per_stat[key] = {
                "reference_mean": float(ref.mean()),
                "window_mean": float(win.mean()),
                "ks": float(ks.statistic),
                "p_value": p_value,
                "psi": value,
                "drifted": bool(p_value < self.alpha and value >= self.psi_threshold),
            }
        return DriftResult(
            detector=self.name,
            score=max(s["psi"] for s in per_stat.values()),
            threshold=self.psi_threshold,
            drifted=any(s["drifted"] for s in per_stat.values()),
            p_value=min(s["p_value"] for s in per_stat.values()),
            details={
                "alpha": self.alpha,
                "n_reference": len(next(iter(self.reference_.values()))),
                "n_window": len(window),
                "statistics": per_stat,
            },
        )


def _binned_psi(ref: np.ndarray, win: np.ndarray, bins: int) -> float:
    # Inner edges at the reference's quantiles; duplicates collapse (shares are often 0),
    # and a value above the last edge gets its own bin, so a statistic that was always 0
    # in the reference still shows a window where it is not.
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    ref_counts = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1)
    win_counts = np.bincount(np.searchsorted(edges, win, side="left"), minlength=len(edges) + 1)
    return psi(ref_counts, win_counts)


def _url_ticker_share(text: str) -> float:
    tokens = text.split()
    if not tokens:
        return 0.0
    return sum(bool(_URL.match(t) or _TICKER.match(t)) for t in tokens) / len(tokens)


def _unknown_share(text: str, vocabulary: frozenset[str]) -> float:
    words = _WORD.findall(text.lower())
    if not words:
        return 0.0
    return sum(w not in vocabulary for w in words) / len(words)
