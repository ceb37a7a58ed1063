"""What a reviewer sees on a model version in the MLflow UI: tags, plots and the data inputs.

Built from what the cycle already computed (no extra predictions): confusion matrices of both
models, per-class recall bars, the accuracy matrix (models × batches) over the evaluation rows,
lineage tags, and the training / replay / evaluation rows as MLflow dataset inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from registry.gate import Decision
from registry.plots import accuracy_matrix_png, class_recall_bars_png, confusion_png
from registry.review import DATASET_COLUMNS, accuracy_by_group, review_tags


@dataclass
class Review:
    tags: dict[str, str]
    files: list[Path] = field(default_factory=list)
    datasets: list[dict[str, Any]] = field(default_factory=list)


PLOTTED_BATCHES = 40


def build_review(*, work: Path, labels: list[str], decision: Decision, on_fresh, on_regression,
                 fresh: pd.DataFrame, regression: pd.DataFrame, new_train: pd.DataFrame, replay: pd.DataFrame,
                 pending, champion_version: str | None, cycle_id: str, trigger: str, rows_source: str,
                 continual: dict[str, Any] | None = None) -> Review:
    champ = f"champion v{champion_version}" if champion_version else None
    files = [confusion_png(on_fresh.candidate["confusion"], labels, "candidate, fresh test rows",
                           work / "confusion_candidate.png")]
    if on_fresh.champion:
        files.append(confusion_png(on_fresh.champion["confusion"], labels, f"{champ}, fresh test rows",
                                   work / "confusion_champion.png"))
    files.append(class_recall_bars_png(on_fresh.candidate["recall"], on_fresh.champion["recall"] if on_fresh.champion
                                       else None, "recall per class, fresh test rows", work / "class_recall.png"))

    # Accuracy of each model on each batch's test rows (fresh batches and the regression suite).
    groups = fresh["batch_id"].tolist() + (regression["batch_id"].tolist() if on_regression else [])
    truth = on_fresh.truth + (on_regression.truth if on_regression else [])
    predictions = {"candidate": on_fresh.candidate_pred + (on_regression.candidate_pred if on_regression else [])}
    if on_fresh.champion_pred is not None:
        predictions[champ] = on_fresh.champion_pred + (on_regression.champion_pred if on_regression else [])
    matrix, rows, columns = _newest(*accuracy_by_group(groups, truth, predictions))
    short = [_short(column) for column in columns]
    files.append(accuracy_matrix_png(matrix, rows, short, "accuracy per batch (test rows)",
                                     work / "accuracy_matrix.png"))

    if continual and continual["columns"]:
        # The continual-learning matrix: each version of the champion line (rows) on each batch (columns).
        cells, rows, columns = _newest(continual["cells"], continual["rows"], continual["columns"])
        files.append(accuracy_matrix_png(cells, [r[-13:] for r in rows], [_short(c) for c in columns],
                                         "macro-F1 per batch, champion line + candidate (last row)",
                                         work / "cl_accuracy_matrix.png"))

    tags = review_tags(
        decision=decision.outcome, reasons=decision.reasons, parent_version=champion_version,
        batch_ids=[b.batch_id for b in pending], batch_checksums=[b.checksum for b in pending],
        rows_new=len(new_train), rows_replay=len(replay),
        **{"cltool.cycle_id": cycle_id, "cltool.trigger": trigger},
    )
    source = rows_source
    datasets = [
        {"name": "new_train", "context": "training", "rows": new_train[list(DATASET_COLUMNS)], "source": source},
        {"name": "replay", "context": "replay", "rows": replay[list(DATASET_COLUMNS)], "source": source},
        {"name": "fresh_test", "context": "fresh_test", "rows": fresh[list(DATASET_COLUMNS)], "source": source},
    ]
    if len(regression):
        datasets.append({"name": "regression", "context": "regression", "rows": regression[list(DATASET_COLUMNS)],
                         "source": source})
    return Review(tags, files, [d for d in datasets if len(d["rows"])])


def _newest(matrix: list[list[Any]], rows: list[str], columns: list[str]) -> tuple[list[list[Any]], list[str], list[str]]:
    """At most PLOTTED_BATCHES columns, the newest batches (ids start with their time stamp): a plot of
    hundreds of batches is unreadable and slow to draw. The JSON reports keep every batch."""
    keep = sorted(sorted(range(len(columns)), key=lambda j: columns[j])[-PLOTTED_BATCHES:])
    return [[row[j] for j in keep] for row in matrix], rows, [columns[j] for j in keep]


def _short(batch_id: str) -> str:
    """A readable axis label for a batch id (<stamp>-<checksum>): end of the stamp … end of the checksum."""
    return batch_id.split("-")[0][-6:] + "…" + batch_id[-4:]
