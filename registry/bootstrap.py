"""Paired bootstrap of a macro-F1 difference: how sure can the gate be that one model beats another?

Both models were scored on the same rows, so the comparison is *paired*: each resample draws row
indices with replacement once and scores both models on that draw. The per-row difference in
correctness is what varies, not each model's luck with the rows, which makes the interval much
narrower than two independent intervals would be.

Everything is vectorised: a block of resamples becomes a (resamples × rows) matrix of how often
each row was drawn (one np.bincount), and one matrix product with the rows' one-hot indicators
gives every resample's per-class counts at once. No Python loop over resamples, no sklearn call per
resample. Pure: numpy only, the seed is an argument.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

# Resamples are scored in blocks of at most this many (resample, row) cells, so 100,000 resamples
# of 2,000 rows never hold a 200M-cell matrix (1.6 GB); 2M cells of float64 are 16 MB.
_BLOCK_CELLS = 2_000_000


@dataclass(frozen=True)
class PairedGain:
    """Macro-F1 of a new and an old model on the same rows, and a percentile bootstrap interval
    for `new − old` at `confidence` (two-sided)."""

    new: float
    old: float
    low: float
    high: float
    n: int
    """Rows the estimate rests on."""
    samples: int
    confidence: float

    @property
    def gain(self) -> float:
        return self.new - self.old


def encode(values: Sequence[Hashable], labels: Sequence[Hashable]) -> np.ndarray:
    """Label ids in `labels` order; a value not in `labels` gets -1 and counts for no class."""
    index = {label: i for i, label in enumerate(labels)}
    return np.fromiter((index.get(value, -1) for value in values), dtype=np.int64, count=len(values))


def _one_hot(ids: np.ndarray, k: int) -> np.ndarray:
    return (ids[:, None] == np.arange(k)[None, :]).astype(np.float64)


def _f1_from_counts(tp: np.ndarray, true_count: np.ndarray, pred_count: np.ndarray) -> np.ndarray:
    """Macro-F1 along the last axis: F1_c = 2·tp / (true + predicted), 0 where a class has neither.

    2·tp / (2·tp + fp + fn) is the same number as the harmonic mean of precision and recall, and
    with zero_division=0 sklearn gives 0 both for a class never predicted and one never present.
    """
    denominator = true_count + pred_count
    f1 = np.divide(2.0 * tp, denominator, out=np.zeros_like(tp, dtype=np.float64), where=denominator > 0)
    return f1.mean(axis=-1)


def _indicators(true_ids: np.ndarray, pred_ids: np.ndarray, k: int) -> np.ndarray:
    """Per row, one-hot (true | predicted | true-positive) over k classes: shape (rows, 3k)."""
    truth = _one_hot(true_ids, k)
    return np.hstack([truth, _one_hot(pred_ids, k), truth * (true_ids == pred_ids)[:, None]])


def _macro_f1_of(counts: np.ndarray, k: int) -> np.ndarray:
    """Macro-F1 from (…, 3k) counts laid out as _indicators lays out a row."""
    return _f1_from_counts(counts[..., 2 * k :], counts[..., :k], counts[..., k : 2 * k])


def macro_f1(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], labels: Sequence[Hashable]) -> float:
    """sklearn's f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)."""
    k = len(labels)
    if k == 0:
        return 0.0
    counts = _indicators(encode(y_true, labels), encode(y_pred, labels), k).sum(axis=0)
    return float(_macro_f1_of(counts, k))


def paired_gain(
    y_true: Sequence[Hashable],
    new_pred: Sequence[Hashable],
    old_pred: Sequence[Hashable],
    labels: Sequence[Hashable],
    *,
    samples: int,
    confidence: float,
    seed: int,
) -> PairedGain:
    """Macro-F1 of `new_pred` and of `old_pred`, with a paired percentile bootstrap interval of the gain.

    The same `seed`, rows and `samples` give the same interval, to the last bit.
    """
    n, k = len(y_true), len(labels)
    if not n == len(new_pred) == len(old_pred):
        raise ValueError(f"y_true, new_pred, old_pred have {n}, {len(new_pred)}, {len(old_pred)} rows; expected equal")
    if n == 0 or k == 0:
        return PairedGain(0.0, 0.0, 0.0, 0.0, n, samples, confidence)
    true_ids = encode(y_true, labels)
    # One (rows, 6k) matrix: the first 3k columns score the new model, the last 3k the old one.
    rows = np.hstack([_indicators(true_ids, encode(new_pred, labels), k),
                      _indicators(true_ids, encode(old_pred, labels), k)])
    total = rows.sum(axis=0)
    new, old = float(_macro_f1_of(total[: 3 * k], k)), float(_macro_f1_of(total[3 * k :], k))

    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n)
    gains = np.empty(samples)
    for start in range(0, samples, block):
        m = min(block, samples - start)
        draws = rng.integers(0, n, size=(m, n))
        # weights[b, i] = how often resample b drew row i, for m resamples in one bincount.
        weights = np.bincount((draws + (np.arange(m) * n)[:, None]).ravel(), minlength=m * n).reshape(m, n)
        counts = weights.astype(np.float64) @ rows  # (m, 6k), exact integers in float64
        gains[start : start + m] = _macro_f1_of(counts[:, : 3 * k], k) - _macro_f1_of(counts[:, 3 * k :], k)
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(gains, [tail, 1.0 - tail])
    return PairedGain(new, old, float(low), float(high), n, samples, confidence)


def negative_flips(y_true: Sequence[Hashable], new_pred: Sequence[Hashable], old_pred: Sequence[Hashable]) -> int:
    """Rows the old model got right and the new one gets wrong."""
    truth, new, old = (np.asarray(list(v), dtype=object) for v in (y_true, new_pred, old_pred))
    return int(np.count_nonzero((old == truth) & (new != truth)))
