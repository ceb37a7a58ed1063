"""The candidate's row of the accuracy matrix, and plots that stay readable as batches pile up."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from daemon.cycle.continual import candidate_row
from daemon.cycle.review import PLOTTED_BATCHES, _newest
from retrain.evaluation import score

LABELS = ["negative", "neutral", "positive"]


def test_a_batch_cell_is_the_macro_f1_the_evaluate_module_gives():
    rng = np.random.default_rng(0)
    n = 600
    batches = [f"2026120{i % 7}T000000-b{i % 7}" for i in range(n)]
    truth = list(rng.choice(LABELS, n))
    predictions = list(rng.choice(LABELS[:2], n))  # one class never predicted: its F1 is 0 and still counts
    row = candidate_row(pd.DataFrame({"batch_id": batches}), truth, predictions, LABELS)
    assert len(row) == 7
    for batch, cell in row.items():
        mine = [i for i, b in enumerate(batches) if b == batch]
        expected = score([truth[i] for i in mine], [predictions[i] for i in mine], LABELS)["macro_f1"]
        assert cell == pytest.approx(expected, abs=1e-12)


def test_plots_keep_the_newest_batches_in_their_order():
    columns = [f"20261203T{i:06d}-abcd{i:04d}" for i in range(100, 0, -1)]  # oldest last, as a suite may list them
    matrix = [[float(i) for i in range(100)], [None] * 100]
    cells, rows, kept = _newest(matrix, ["v1", "v2"], columns)
    assert len(kept) == PLOTTED_BATCHES and rows == ["v1", "v2"]
    assert set(kept) == set(sorted(columns)[-PLOTTED_BATCHES:])  # the newest
    assert kept == [c for c in columns if c in kept]  # in the order given
    assert cells[0] == [float(columns.index(c)) for c in kept]
    few = [matrix[0][:3]]
    assert _newest(few, ["v1"], columns[:3]) == (few, ["v1"], columns[:3])  # fewer than the cap: all of them
