"""The rows a cycle trains and judges on, read back from the state store.

fresh = test rows of the batches this update learns from (plasticity);
regression = up to `gate.regression_max_rows` test rows of the earlier batches (forgetting): the ones with
the lowest row hashes, a uniform sample that stays the same cycle after cycle while history grows.
Champion and candidate are scored on exactly these rows, in the same process.

History is read in bounded amounts (`History`): what a cycle reads follows its new rows and the caps,
not the number of rows ever accepted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import pandas as pd

from daemon.state.store import ROW_COLUMNS, Batch, StateStore
from retrain.config import ReplayConfig
from retrain.evaluation import Predictor, negative_flip_rate, score
from retrain.update import MIN_PAST_VAL_ROWS, split, stratified_cap  # noqa: F401 (the cycle's and probation's row helpers)

COLUMNS = ROW_COLUMNS
RECENCY_SPAN = 16
"""Half-lives of history the recency policy reads (its newest train rows): an older row weighs under 2^-16."""


def load_rows(store: StateStore, batches: list[Batch]) -> pd.DataFrame:
    return pd.DataFrame(store.rows([batch.batch_id for batch in batches]), columns=COLUMNS)


def _frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(records, columns=COLUMNS)


@dataclass(frozen=True)
class History:
    """The rows before an update: the consumed batches (`consumed`, oldest first), plus the pending batches
    a waiting challenger already learned (`also`), which count as history for its replay and validation
    but not for the regression suite (their test rows are fresh rows)."""

    store: StateStore
    consumed: tuple[Batch, ...]
    also: tuple[Batch, ...] = ()

    def with_learned(self, learned: list[Batch]) -> "History":
        return History(self.store, self.consumed, tuple(learned))

    @property
    def _also_ids(self) -> list[str]:
        return [b.batch_id for b in self.also]

    def update_rows(self, new: pd.DataFrame, replay: ReplayConfig, state: dict[str, Any] | None,
                    labels: list[str], seed: int) -> pd.DataFrame:
        """The history `retrain.update.prepare_update` needs for an update on `new`: a replay pool of train
        rows and the past val rows it will keep, never more than the update can use.

        - class_balanced: per label, `round(ratio × new train rows)` train rows from a seeded point of
          row-hash order, i.e. a uniform sample of that label's history. The policy's water-filling quotas
          over these pools equal those over the whole history (no quota exceeds the replay size), and a
          uniform sample of a uniform sample is uniform: the same distribution, read in bounded time.
        - recency: the newest RECENCY_SPAN half-lives of train rows, in arrival order.
        - reservoir: nothing when the saved state is a reservoir's (it replays from its own buffer); all past
          train rows once, when a fresh reservoir must be filled.
        Val rows: the `max(new val rows, MIN_PAST_VAL_ROWS)` with the lowest hashes (prepare_update's cap).
        """
        n_replay = round(replay.ratio * int((new["split"] == "train").sum()))
        n_val = max(int((new["split"] == "val").sum()), MIN_PAST_VAL_ROWS)
        val = self.store.history_rows("val", n_val, also=self._also_ids)
        return pd.concat([self._train_pool(replay, state, n_replay, labels, seed), _frame(val)], ignore_index=True)

    def _train_pool(self, replay: ReplayConfig, state: dict[str, Any] | None, n: int, labels: list[str],
                    seed: int) -> pd.DataFrame:
        batches = [*self.consumed, *self.also]
        if replay.policy == "class_balanced":
            # A new point of hash order whenever history grows, so successive cycles replay different rows.
            marker = f"{seed}|{sum(b.n_train for b in batches)}"
            return _frame([row for label in labels for row in self.store.history_rows(
                "train", n, label=label, start=_point(f"{marker}|{label}"), also=self._also_ids)])
        if replay.policy == "reservoir":
            if state and state.get("policy") == "reservoir":
                return _frame([])
            return split(load_rows(self.store, batches), "train")
        span, newest, rows = RECENCY_SPAN * replay.half_life_rows, [], 0
        for batch in reversed(batches):
            if rows >= span:
                break
            newest.append(batch)
            rows += batch.n_train
        return split(load_rows(self.store, newest[::-1]), "train").tail(span).reset_index(drop=True)

    def regression(self, cap: int) -> pd.DataFrame:
        """The regression suite: the `cap` past test rows with the lowest hashes (consumed batches only)."""
        return _frame(self.store.history_rows("test", cap))


def _point(key: str) -> str:
    """A seeded point of row-hash order (64 hex digits, as row hashes are)."""
    return hashlib.sha256(key.encode()).hexdigest()


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
