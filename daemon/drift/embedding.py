"""Input drift on sentence embeddings: kernel two-sample test (MMD) with permutations.

The caller embeds the texts (the champion's encoder, mean-pooled) and hands over n×d
arrays; this module only compares them, so it needs neither torch nor a model.

Why MMD rather than a domain classifier (alibi-detect's `MMDDrift` rather than
Evidently's domain-classifier AUC):
- no training loop: a classifier needs a split, epochs and its own hyper-parameters, and a
  held-out AUC is noisy on the few hundred rows a window has;
- a calibrated p-value: under "no drift" the permutation p-value is uniform, so `alpha`
  is a false-alarm rate we choose, not a threshold on AUC we would have to tune;
- bounded cost: both sides are subsampled to `max_rows`, so one score is one
  (2·max_rows)² kernel matrix plus `permutations` matrix-vector products, whatever the
  window size.
"""

from __future__ import annotations

import numpy as np

from daemon.drift.base import (
    DriftResult,
    DriftValueError,
    NotFittedError,
    check_alpha,
    check_positive_int,
)
from daemon.drift.config import DEFAULTS


class EmbeddingMMDDetector:
    """Unbiased MMD² with an RBF kernel; bandwidth from the reference (median heuristic).

    The bandwidth is fixed at `fit` so every window is measured with the same ruler.
    `seed` drives the subsampling and the permutations; each call starts from it afresh,
    so scoring the same window twice gives the same result.
    """

    def __init__(
        self,
        alpha: float = DEFAULTS.alpha,
        permutations: int = DEFAULTS.mmd_permutations,
        max_rows: int = DEFAULTS.mmd_max_rows,
        seed: int = DEFAULTS.seed,
        name: str = "embedding_mmd",
    ) -> None:
        self.name = name
        self.alpha = check_alpha(name, alpha)
        self.permutations = check_positive_int(name, "permutations", permutations)
        # The unbiased estimator divides by n(n-1): at least two rows per side.
        self.max_rows = check_positive_int(name, "max_rows", max_rows, minimum=2)
        self.seed = check_positive_int(name, "seed", seed, minimum=0)
        self.reference_: np.ndarray | None = None
        self.sigma2_: float | None = None

    def fit(self, reference: np.ndarray) -> EmbeddingMMDDetector:
        ref = self._matrix("reference", reference)
        ref = self._subsample(ref, np.random.default_rng(self.seed))
        sq = _sq_dists(ref, ref)
        off_diagonal = sq[~np.eye(len(ref), dtype=bool)]
        median = float(np.median(off_diagonal))
        # All reference rows identical: any positive width works; 1.0 keeps the kernel finite.
        self.sigma2_ = median if median > 0 else 1.0
        self.reference_ = ref
        return self

    def score(self, window: np.ndarray) -> DriftResult:
        if self.reference_ is None or self.sigma2_ is None:
            raise NotFittedError(self.name)
        win = self._matrix("window", window)
        if win.shape[1] != self.reference_.shape[1]:
            raise DriftValueError(
                self.name, "window columns", win.shape[1],
                f"{self.reference_.shape[1]} columns, like the reference",
            )
        # A separate stream for the window keeps the reference subsample fixed since fit.
        rng = np.random.default_rng([self.seed, 1])
        win = self._subsample(win, rng)
        m, n = len(self.reference_), len(win)
        pooled = np.vstack([self.reference_, win])
        kernel = np.exp(-_sq_dists(pooled, pooled) / (2 * self.sigma2_))

        # Row p of `sides` marks which pooled rows play "reference" in permutation p;
        # row 0 is the observed split, the rest are shuffles of it.
        observed = np.r_[np.ones(m), np.zeros(n)]
        sides = np.vstack([observed] + [rng.permutation(observed) for _ in range(self.permutations)])
        stats = _unbiased_mmd2(kernel, sides, m, n)
        value, null = float(stats[0]), stats[1:]
        # +1 on both sides: the observed split is one of the possible permutations,
        # which keeps p > 0 and the test exact at level alpha.
        p_value = float((1 + np.sum(null >= value)) / (1 + len(null)))
        return DriftResult(
            detector=self.name,
            score=value,
            threshold=float(np.quantile(null, 1 - self.alpha)),
            drifted=bool(p_value < self.alpha),
            p_value=p_value,
            details={
                "alpha": self.alpha,
                "n_reference": m,
                "n_window": n,
                "bandwidth_sigma2": self.sigma2_,
                "permutations": self.permutations,
            },
        )

    def _matrix(self, what: str, values: np.ndarray) -> np.ndarray:
        array = np.asarray(values, dtype=float)
        if array.ndim != 2:
            raise DriftValueError(self.name, f"{what} shape", array.shape, "a 2-D array (rows × dims)")
        if len(array) < 2:
            raise DriftValueError(self.name, f"{what} rows", len(array), "at least 2 rows")
        if not np.isfinite(array).all():
            raise DriftValueError(self.name, f"{what} values", "NaN or inf", "finite numbers")
        return array

    def _subsample(self, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if len(rows) <= self.max_rows:
            return rows
        return rows[np.sort(rng.choice(len(rows), self.max_rows, replace=False))]


def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    sq = np.sum(a**2, axis=1)[:, None] + np.sum(b**2, axis=1)[None, :] - 2 * a @ b.T
    return np.maximum(sq, 0.0)  # rounding can make tiny distances negative


def _unbiased_mmd2(kernel: np.ndarray, sides: np.ndarray, m: int, n: int) -> np.ndarray:
    """MMD² for every split in `sides` (P × (m+n), 1 = reference) at once.

    With a = indicator of the reference side and b = 1 − a: Σ_XX = aᵀKa, Σ_XY = aᵀK1 − aᵀKa,
    Σ_YY = 1ᵀK1 − 2aᵀK1 + aᵀKa. The RBF diagonal is 1, so dropping i = j (the unbiased
    estimator) subtracts m and n. One matrix product covers all permutations.
    """
    k_sides = kernel @ sides.T  # (m+n) × P
    aka = np.einsum("pi,ip->p", sides, k_sides)
    ak1 = sides @ kernel.sum(axis=1)
    total = kernel.sum()
    sum_xx = aka - m
    sum_yy = total - 2 * ak1 + aka - n
    sum_xy = ak1 - aka
    return sum_xx / (m * (m - 1)) + sum_yy / (n * (n - 1)) - 2 * sum_xy / (m * n)
