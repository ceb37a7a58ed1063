"""The rows a cycle trains and judges on, read back from the state store.

fresh = test rows of the batches this update learns from (plasticity);
regression = test rows of every earlier batch, stratified by batch and label and capped (forgetting).
Champion and candidate are scored on exactly these rows, in the same process.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from daemon.state.store import ROW_COLUMNS, Batch, StateStore
from retrain.evaluation import Predictor, negative_flip_rate, score
from retrain.update import split, stratified_cap  # noqa: F401 (the cycle's and probation's row helpers)

COLUMNS = ROW_COLUMNS


def load_rows(store: StateStore, batches: list[Batch]) -> pd.DataFrame:
    return pd.DataFrame(store.rows([batch.batch_id for batch in batches]), columns=COLUMNS)


@dataclass
class Scores:
    """One model pair scored on one set of rows."""

    candidate: dict
    champion: dict | None
    negative_flip_rate: float | None
    candidate_pred: list[str]
    champion_pred: list[str] | None
    truth: list[str]


def score_pair(rows: pd.DataFrame, labels: list[str], candidate: Predictor, champion: Predictor | None) -> Scores:
    texts, truth = rows["text"].tolist(), rows["label"].tolist()
    cand_pred = _predict_labels(candidate, texts)
    cand_report = score(truth, cand_pred, labels)
    if champion is None:
        return Scores(cand_report, None, None, cand_pred, None, truth)
    champ_pred = _predict_labels(champion, texts)
    flips = negative_flip_rate(truth, champ_pred, cand_pred) if texts else None
    return Scores(cand_report, score(truth, champ_pred, labels), flips, cand_pred, champ_pred, truth)


def _predict_labels(predictor: Predictor, texts: list[str]) -> list[str]:
    if not texts:
        return []
    ids, _probs = predictor.predict(texts)
    return [predictor.labels[i] for i in ids]
