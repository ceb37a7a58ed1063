"""Continual-learning scores over an accuracy matrix.

`matrix[i][j]` is a model's score (macro-F1 here) on task j's test rows after update i; a task is
a batch, a source or a domain, and `learned_at[j]` is the update that first trained on task j.
Cells of tasks not learned yet may be None. Definitions follow Lopez-Paz & Ranzato (GEM, 2017)
and Chaudhry et al. (2018):

- average score after update i: mean of `matrix[i][j]` over the tasks learned so far;
- backward transfer (BWT): mean over earlier tasks of `matrix[last][j] - matrix[learned_at[j]][j]`
  (negative = forgetting);
- forgetting of task j: the best score it ever had after being learned, minus its score now
  (>= 0 up to noise), averaged over tasks learned before the last update.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

Matrix = Sequence[Sequence[float | None]]


def _check(matrix: Matrix, learned_at: Sequence[int]) -> int:
    if not matrix:
        raise ValueError("empty accuracy matrix: no update has been scored")
    width = len(learned_at)
    for i, row in enumerate(matrix):
        if len(row) != width:
            raise ValueError(f"row {i} has {len(row)} cells; expected one per task ({width})")
    for j, t in enumerate(learned_at):
        if not 0 <= t < len(matrix):
            raise ValueError(f"task {j} learned at update {t}; expected 0..{len(matrix) - 1}")
        if matrix[t][j] is None:
            raise ValueError(f"task {j} has no score right after it was learned (update {t})")
    return len(matrix) - 1


def average_score(matrix: Matrix, learned_at: Sequence[int], update: int | None = None) -> float:
    """Mean score over the tasks learned by `update` (default: the last one)."""
    last = _check(matrix, learned_at)
    i = last if update is None else update
    scores = [matrix[i][j] for j, t in enumerate(learned_at) if t <= i and matrix[i][j] is not None]
    if not scores:
        raise ValueError(f"no task learned by update {i} has a score")
    return float(np.mean(scores))


def task_forgetting(matrix: Matrix, learned_at: Sequence[int], update: int | None = None) -> list[float | None]:
    """Per task: best score between learning it and `update` (exclusive) minus the score at `update`.
    None for tasks learned at or after `update`, or not scored then."""
    last = _check(matrix, learned_at)
    i = last if update is None else update
    out: list[float | None] = []
    for j, t in enumerate(learned_at):
        if t >= i or matrix[i][j] is None:
            out.append(None)
            continue
        best = max(matrix[k][j] for k in range(t, i) if matrix[k][j] is not None)
        out.append(float(best - matrix[i][j]))
    return out


def forgetting(matrix: Matrix, learned_at: Sequence[int], update: int | None = None) -> float | None:
    """Mean of `task_forgetting` over the tasks it covers; None when only the newest task exists."""
    values = [v for v in task_forgetting(matrix, learned_at, update) if v is not None]
    return float(np.mean(values)) if values else None


def backward_transfer(matrix: Matrix, learned_at: Sequence[int], update: int | None = None) -> float | None:
    """Mean over earlier tasks of (score at `update`) − (score right after learning the task)."""
    last = _check(matrix, learned_at)
    i = last if update is None else update
    values = [matrix[i][j] - matrix[t][j] for j, t in enumerate(learned_at)
              if t < i and matrix[i][j] is not None]
    return float(np.mean(values)) if values else None
