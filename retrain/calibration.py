"""Calibrated probabilities and a label-free estimate of macro-F1 (confidence-based performance
estimation, in the way of NannyML's CBPE).

A classifier's softmax is usually over-confident. Temperature scaling fits one number T on labeled
validation rows so that softmax(logits / T) matches how often the model is right; with calibrated
probabilities, each unlabeled prediction is right with probability p(predicted class), which gives the
expected confusion matrix, hence an expected macro-F1, without a single label. The interval comes from
drawing labels from those probabilities (what the score could be if the calibration holds); it does not
cover a calibration that has itself gone stale (concept drift), which only labels can show.

Only probabilities are needed: softmax(log p / T) equals softmax(logits / T), so served probabilities
can be recalibrated after the fact.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_T_GRID = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))  # 0.05 .. 20, ~2.5 % apart
_EPS = 1e-12


def scaled(probs: np.ndarray, temperature: float) -> np.ndarray:
    """`probs` re-softmaxed at `temperature` (1 = unchanged; > 1 softer, < 1 sharper)."""
    logits = np.log(np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


def fit_temperature(probs: np.ndarray, truth: np.ndarray) -> float:
    """The temperature that minimises the negative log-likelihood of `truth` (class ids) on these rows."""
    probs, truth = np.asarray(probs, dtype=np.float64), np.asarray(truth, dtype=np.int64)
    if len(truth) == 0:
        return 1.0
    log_p = np.log(np.clip(probs, _EPS, 1.0))
    best, best_nll = 1.0, np.inf
    for t in _T_GRID:
        z = log_p / t
        z -= z.max(axis=1, keepdims=True)
        nll = -(z[np.arange(len(truth)), truth] - np.log(np.exp(z).sum(axis=1))).mean()
        if nll < best_nll:
            best, best_nll = float(t), nll
    return best


@dataclass(frozen=True)
class Estimate:
    macro_f1: float
    low: float  # the interval's bounds (`level`, from label draws)
    high: float
    rows: int
    level: float = 0.9

    def to_dict(self) -> dict[str, float]:
        return {"macro_f1": round(self.macro_f1, 4), "low": round(self.low, 4), "high": round(self.high, 4),
                "rows": self.rows, "level": self.level}


def _macro_f1(pred: np.ndarray, truth: np.ndarray, classes: int) -> float:
    scores = []
    for c in range(classes):
        tp = np.sum((pred == c) & (truth == c))
        denominator = np.sum(pred == c) + np.sum(truth == c)
        scores.append(2 * tp / denominator if denominator else 0.0)
    return float(np.mean(scores))


def expected_macro_f1(probs: np.ndarray, draws: int = 200, level: float = 0.9, seed: int = 0) -> Estimate:
    """Macro-F1 expected from calibrated `probs` alone (rows x classes; predicted = argmax).

    The point estimate is the F1 of the expected confusion matrix (CBPE); the interval holds the middle
    `level` of the F1s obtained by drawing each row's label from its probabilities `draws` times."""
    probs = np.asarray(probs, dtype=np.float64)
    n, classes = probs.shape
    pred = probs.argmax(axis=1)
    scores = []
    for c in range(classes):
        predicted_c = pred == c
        tp = probs[predicted_c, c].sum()
        fp = predicted_c.sum() - tp
        fn = probs[~predicted_c, c].sum()
        denominator = 2 * tp + fp + fn
        scores.append(2 * tp / denominator if denominator > 0 else 0.0)
    rng = np.random.default_rng(seed)
    cumulative = probs.cumsum(axis=1)
    sampled = []
    for _ in range(draws):
        u = rng.random((n, 1))
        truth = np.minimum((u > cumulative).sum(axis=1), classes - 1)
        sampled.append(_macro_f1(pred, truth, classes))
    tail = (1 - level) / 2
    low, high = np.quantile(sampled, [tail, 1 - tail]) if sampled else (np.nan, np.nan)
    return Estimate(float(np.mean(scores)), float(low), float(high), n, level)
