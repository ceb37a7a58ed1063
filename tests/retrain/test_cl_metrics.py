"""Continual-learning scores on hand-made accuracy matrices, with exact expected values."""

from __future__ import annotations

import pytest

from retrain.cl_metrics import average_score, backward_transfer, forgetting, task_forgetting

# Three tasks learned at updates 0, 1, 2; rows are "after update i", cells unknown before learning.
MATRIX = [
    [0.80, None, None],
    [0.70, 0.90, None],
    [0.60, 0.85, 0.75],
]
LEARNED = [0, 1, 2]


def test_average_score_covers_only_learned_tasks():
    assert average_score(MATRIX, LEARNED) == pytest.approx((0.60 + 0.85 + 0.75) / 3)
    assert average_score(MATRIX, LEARNED, update=1) == pytest.approx((0.70 + 0.90) / 2)
    assert average_score(MATRIX, LEARNED, update=0) == pytest.approx(0.80)


def test_forgetting_is_best_earlier_score_minus_now():
    assert task_forgetting(MATRIX, LEARNED) == pytest.approx([0.20, 0.05, None])
    assert forgetting(MATRIX, LEARNED) == pytest.approx(0.125)
    assert forgetting(MATRIX, LEARNED, update=1) == pytest.approx(0.10)
    assert forgetting(MATRIX, LEARNED, update=0) is None


def test_forgetting_uses_the_best_score_not_the_first():
    # Task 0 improved after update 0 (positive transfer), then dropped: forgetting counts from the peak.
    matrix = [[0.5, None], [0.7, 0.8], [0.6, 0.9]]
    assert task_forgetting(matrix, [0, 1]) == pytest.approx([0.1, -0.1])  # task 1 improved: negative
    assert backward_transfer(matrix, [0, 1]) == pytest.approx(0.1)  # 0.6 - 0.5


def test_backward_transfer_is_negative_when_old_tasks_drop():
    assert backward_transfer(MATRIX, LEARNED) == pytest.approx(((0.60 - 0.80) + (0.85 - 0.90)) / 2)
    assert backward_transfer(MATRIX, LEARNED, update=0) is None


def test_bad_matrices_are_named():
    with pytest.raises(ValueError, match="empty"):
        average_score([], [])
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        forgetting([[0.5, None], [0.5]], [0, 1])
    with pytest.raises(ValueError, match="no score right after"):
        forgetting([[None, None], [0.5, 0.5]], [0, 1])
    with pytest.raises(ValueError, match="learned at update 5"):
        forgetting(MATRIX, [0, 1, 5])
