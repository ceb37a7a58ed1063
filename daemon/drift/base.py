"""What every drift detector shares: the result type, its errors, PSI and severity.

Detectors follow renate's `shift/` shape: `fit(reference)` remembers what "normal" looks
like, `score(window)` compares one window of new rows against it and returns a
`DriftResult`. They are pure: no MLflow, no registry, no clock, no files, so the daemon
can run them on whatever rows it has and the tests can assert exact numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from daemon.errors import CltoolError

SEVERITIES = ("none", "warning", "critical")


class DriftValueError(CltoolError, ValueError):
    """A detector setting or input has a value that is not allowed."""

    def __init__(self, detector: str, what: str, value: object, expected: str) -> None:
        self.detector, self.what, self.value, self.expected = detector, what, value, expected
        super().__init__(f"{detector}: {what} = {value!r} is not allowed: expected {expected}")


class NotFittedError(CltoolError, RuntimeError):
    """`score()` was called before `fit()` gave the detector a reference."""

    def __init__(self, detector: str) -> None:
        self.detector = detector
        super().__init__(f"{detector}: score() called before fit(); call fit(reference) first")


@dataclass
class DriftResult:
    """One window's verdict.

    `score` is the detector's effect size (PSI, lift in share, MMD²) and `threshold` the value
    it is compared with, so a dashboard can plot both without knowing the detector.
    `p_value` is None only for detectors without a test.
    """

    detector: str
    score: float
    threshold: float
    drifted: bool
    p_value: float | None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy (plain floats and bools), for the state store and `cltool drift`."""
        return _plain(asdict(self))


def _plain(value: Any) -> Any:
    # numpy scalars sneak into details easily; json.dumps refuses them.
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index of `actual` against `expected` (counts or shares, same bins).

    PSI = Σ (a_i − e_i) · ln(a_i / e_i). A bin empty on one side would make it infinite, so
    shares are floored at `eps` and renormalised; bins above `eps` are left exactly as given,
    which keeps hand-computed values exact. Rule of thumb: < 0.1 stable, 0.1–0.2 moderate,
    ≥ 0.2 a real shift.
    """
    e = _shares(np.asarray(expected, dtype=float), eps)
    a = _shares(np.asarray(actual, dtype=float), eps)
    if e.shape != a.shape:
        raise DriftValueError("psi", "bins", (e.shape, a.shape), "the same number of bins on both sides")
    return float(np.sum((a - e) * np.log(a / e)))


def _shares(counts: np.ndarray, eps: float) -> np.ndarray:
    total = counts.sum()
    if total <= 0 or np.any(counts < 0):
        raise DriftValueError("psi", "counts", counts.tolist(), "non-negative counts with a positive total")
    shares = np.clip(counts / total, eps, None)
    return shares / shares.sum()


def severity(result: DriftResult, alpha: float | None = None) -> str:
    """Map a result to "none" / "warning" / "critical" for alert routing.

    Critical when the evidence is ten times stronger than needed (p < alpha/10) or the effect
    is twice the threshold; either alone is enough because a huge window makes tiny shifts
    significant while a tiny window can show a big shift with a modest p-value.
    `alpha` defaults to the one the detector used (`details["alpha"]`).
    """
    if not result.drifted:
        return "none"
    alpha = result.details.get("alpha") if alpha is None else alpha
    strong_p = result.p_value is not None and alpha is not None and result.p_value < alpha / 10
    strong_effect = result.threshold > 0 and result.score >= 2 * result.threshold
    return "critical" if strong_p or strong_effect else "warning"


def check_alpha(detector: str, alpha: float) -> float:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise DriftValueError(detector, "alpha", alpha, "a number strictly between 0 and 1")
    return float(alpha)


def check_non_negative(detector: str, what: str, value: float) -> float:
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise DriftValueError(detector, what, value, "a finite number ≥ 0")
    return float(value)


def check_positive_int(detector: str, what: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise DriftValueError(detector, what, value, f"an integer ≥ {minimum}")
    return int(value)


def check_not_empty(detector: str, what: str, values: Any) -> None:
    if len(values) == 0:
        raise DriftValueError(detector, f"{what} rows", 0, "at least one row")
