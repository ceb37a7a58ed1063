"""Label drift: the mix of classes in a window against the reference mix.

`LabelMixDetector` watches the whole distribution (true labels as they arrive, or the
champion's predicted labels: same class, another `name`). `NegativeSurgeDetector` watches
one class going up, the financial case where a burst of "negative" news matters more than
any other change in the mix.

Labels are compared as strings, so 0/1 and "0"/"1" count as the same class.
"""

from __future__ import annotations

from collections import Counter
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
    psi,
)
from daemon.drift.config import DEFAULTS


def _count(detector: str, what: str, labels: Iterable[object]) -> Counter[str]:
    labels = list(labels)
    check_not_empty(detector, what, labels)
    return Counter(str(label) for label in labels)


class LabelMixDetector:
    """Chi-square test and PSI of the window's label counts against the reference's.

    Drifted only when both agree: p < `alpha` (the change is not sampling noise) AND
    PSI ≥ `psi_threshold` (the change is big enough to act on). The test alone fires on
    trivial shifts once windows hold thousands of rows; PSI alone fires on noise in
    windows of a few dozen. Requiring both keeps alerts rare and meaningful at either end.

    The test is chi-square on the 2×k contingency table (reference counts, window counts),
    not goodness-of-fit against fixed shares, because the reference is a sample too.
    A class unseen in the reference still counts: it gets its own column.
    """

    def __init__(
        self,
        alpha: float = DEFAULTS.alpha,
        psi_threshold: float = DEFAULTS.label_psi,
        eps: float = 1e-4,
        name: str = "label_mix",
    ) -> None:
        self.name = name
        self.alpha = check_alpha(name, alpha)
        self.psi_threshold = check_non_negative(name, "psi_threshold", psi_threshold)
        if not 0 < eps < 1:
            raise DriftValueError(name, "eps", eps, "a number strictly between 0 and 1")
        self.eps = eps
        self.reference_: Counter[str] | None = None

    def fit(self, reference: Iterable[object]) -> LabelMixDetector:
        self.reference_ = _count(self.name, "reference", reference)
        return self

    def score(self, window: Iterable[object]) -> DriftResult:
        if self.reference_ is None:
            raise NotFittedError(self.name)
        seen = _count(self.name, "window", window)
        classes = sorted(set(self.reference_) | set(seen))
        ref = np.array([self.reference_[c] for c in classes], dtype=float)
        win = np.array([seen[c] for c in classes], dtype=float)

        if len(classes) < 2:
            p_value, chi2 = 1.0, 0.0  # one class on both sides: nothing can have moved
        else:
            chi2, p_value, _, _ = stats.chi2_contingency(np.vstack([ref, win]), correction=False)
        value = psi(ref, win, self.eps)
        drifted = bool(p_value < self.alpha and value >= self.psi_threshold)
        return DriftResult(
            detector=self.name,
            score=value,
            threshold=self.psi_threshold,
            drifted=drifted,
            p_value=float(p_value),
            details={
                "alpha": self.alpha,
                "chi2": float(chi2),
                "n_reference": int(ref.sum()),
                "n_window": int(win.sum()),
                "reference_share": {c: float(r / ref.sum()) for c, r in zip(classes, ref)},
                "window_share": {c: float(w / win.sum()) for c, w in zip(classes, win)},
            },
        )


class NegativeSurgeDetector:
    """Did the share of `target` (default "negative") rise above its reference share?

    One-sided pooled two-proportion z-test (H1: window share > reference share); again the
    reference is a sample, so its size enters the standard error. Drifted when p < `alpha`
    AND the share rose by at least `min_lift` (absolute, 0.10 = ten points): a 15% → 17%
    rise on 50k rows is significant but not news. A falling share never counts here.
    """

    def __init__(
        self,
        target: str = DEFAULTS.surge_label,
        alpha: float = DEFAULTS.alpha,
        min_lift: float = DEFAULTS.surge_min_lift,
        name: str = "negative_surge",
    ) -> None:
        self.name = name
        self.target = str(target)
        self.alpha = check_alpha(name, alpha)
        if not (isinstance(min_lift, (int, float)) and 0 <= min_lift < 1):
            raise DriftValueError(name, "min_lift", min_lift, "a share in [0, 1)")
        self.min_lift = float(min_lift)
        self.reference_: tuple[int, int] | None = None  # (target rows, all rows)

    def fit(self, reference: Iterable[object]) -> NegativeSurgeDetector:
        counts = _count(self.name, "reference", reference)
        self.reference_ = (counts[self.target], sum(counts.values()))
        return self

    def score(self, window: Iterable[object]) -> DriftResult:
        if self.reference_ is None:
            raise NotFittedError(self.name)
        counts = _count(self.name, "window", window)
        k0, n0 = self.reference_
        k1, n1 = counts[self.target], sum(counts.values())
        p0, p1 = k0 / n0, k1 / n1
        pooled = (k0 + k1) / (n0 + n1)
        se = float(np.sqrt(pooled * (1 - pooled) * (1 / n0 + 1 / n1)))
        # pooled share 0 or 1 means every row on both sides agrees: no evidence of a change.
        z = (p1 - p0) / se if se > 0 else 0.0
        p_value = float(stats.norm.sf(z)) if se > 0 else 1.0
        lift = p1 - p0
        return DriftResult(
            detector=self.name,
            score=float(lift),
            threshold=self.min_lift,
            drifted=bool(p_value < self.alpha and lift >= self.min_lift),
            p_value=p_value,
            details={
                "alpha": self.alpha,
                "target": self.target,
                "z": float(z),
                "reference_share": float(p0),
                "window_share": float(p1),
                "n_reference": int(n0),
                "n_window": int(n1),
            },
        )
