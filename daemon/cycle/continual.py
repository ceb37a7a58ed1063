"""Continual-learning metrics of a candidate: its row of the accuracy matrix, forgetting, backward transfer.

The accuracy matrix has one row per model version in the champion's line (oldest first, the
candidate last) and one column per batch: macro-F1 of that version on that batch's test rows.
Each version stores its matrix in `cl_metrics.json`, so the candidate only scores itself on the
batches it can see (fresh + regression rows, grouped by batch) and appends its row to the
champion's. Forgetting and backward transfer then come from `retrain.cl_metrics` over the matrix,
with each batch "learned" by the first version whose row scores it.

Past batches are scored on the regression suite (a uniform sample of their test rows capped by
`gate.regression_max_rows`, daemon/cycle/evidence.py), so a batch with few rows in the sample gives a noisy cell.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from registry.bootstrap import macro_f1
from retrain import cl_metrics

MAX_ROWS = 30  # versions kept in the stored matrix (the newest), so the artifact stays small


def candidate_row(rows: pd.DataFrame, truth: list[str], predictions: list[str], labels: list[str]) -> dict[str, float]:
    """Macro-F1 per batch id of the evaluation rows (fresh and regression together). Counted with numpy, not
    the `evaluate` module (same figure): the regression suite can span hundreds of batches."""
    frame = pd.DataFrame({"batch_id": rows["batch_id"].tolist(), "truth": truth, "pred": predictions})
    return {batch: macro_f1(g["truth"].tolist(), g["pred"].tolist(), labels)
            for batch, g in frame.groupby("batch_id", sort=False)}


def build(parent: dict[str, Any] | None, name: str, scores: dict[str, float]) -> dict[str, Any]:
    """The candidate's `cl_metrics.json`: the parent's matrix plus this row, and the summary numbers."""
    rows = list((parent or {}).get("rows", []))
    columns = list((parent or {}).get("columns", []))
    cells = [list(r) for r in (parent or {}).get("cells", [])]
    for batch in scores:
        if batch not in columns:
            columns.append(batch)
            for row in cells:
                row.append(None)
    rows.append(name)
    cells.append([scores.get(batch) for batch in columns])
    rows, cells = rows[-MAX_ROWS:], cells[-MAX_ROWS:]
    # Batches no kept row ever scored (only possible after trimming) leave the matrix.
    keep = [j for j in range(len(columns)) if any(row[j] is not None for row in cells)]
    columns = [columns[j] for j in keep]
    cells = [[row[j] for j in keep] for row in cells]
    return {"rows": rows, "columns": columns, "cells": cells, **summary(cells)}


def summary(cells: list[list[float | None]]) -> dict[str, float | None]:
    """Average macro-F1, forgetting and backward transfer of the last row."""
    learned_at = [next(i for i, row in enumerate(cells) if row[j] is not None) for j in range(len(cells[-1]))]
    scored = [j for j in range(len(learned_at)) if cells[-1][j] is not None]
    if not scored:
        return {"avg_macro_f1": None, "forgetting": None, "backward_transfer": None}
    matrix = [[row[j] for j in scored] for row in cells]
    learned = [learned_at[j] for j in scored]
    return {"avg_macro_f1": cl_metrics.average_score(matrix, learned),
            "forgetting": cl_metrics.forgetting(matrix, learned),
            "backward_transfer": cl_metrics.backward_transfer(matrix, learned)}


def flat_metrics(report: dict[str, Any]) -> dict[str, float]:
    """The MLflow metrics of a `cl_metrics.json` (names prefixed `cl_`; None left out)."""
    names = {"avg_macro_f1": "cl_avg_macro_f1", "forgetting": "cl_forgetting",
             "backward_transfer": "cl_backward_transfer"}
    return {metric: float(report[key]) for key, metric in names.items() if report.get(key) is not None}
