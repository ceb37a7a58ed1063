"""One update's rows: what a candidate trains and early-stops on, and the replay state it leaves behind.

The daemon's cycle and the stream benchmark both call `prepare_update`, so the benchmark measures the
recipe that ships. Rows are pandas frames with at least `text`, `label` and `split` (train/val/test);
the daemon's also carry `row_hash` and `batch_id`, which `stratified_cap` and the reservoir use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from retrain.config import ReplayConfig
from retrain.data import TEACHER_COLUMN
from retrain.errors import LengthMismatchError, MissingColumnError
from retrain.replay import ReplayPolicy, make_replay, replay_from_state

logger = logging.getLogger(__name__)

# Past val rows join the new batches' val rows: as many as those, and at least this many (when there are),
# so early stopping also hears about the old classes and domains without drowning out the new ones.
MIN_PAST_VAL_ROWS = 50


@dataclass(frozen=True)
class Teacher:
    """The model an update distils from (the champion).

    `probabilities(texts)` returns one row of class probabilities per text, in the order of `labels` (the
    teacher's own head). `prepare_update` maps them onto the update's labels; a class the teacher's head
    lacks (the head grows for it now) gets probability 0.
    """

    probabilities: Callable[[list[str]], Sequence[Sequence[float]]]
    labels: Sequence[str]


@dataclass
class UpdateRows:
    new_train: pd.DataFrame  # the new batches' train rows
    replay: pd.DataFrame  # the past train rows chosen to replay, all columns kept
    train_rows: pd.DataFrame  # new_train then replay; `teacher_probs` on the replayed rows when a teacher was given
    val_rows: pd.DataFrame  # the new batches' val rows, then a stratified sample of past val rows
    replay_state: dict[str, Any]  # the policy's state once it has seen new_train: save it with the new version


def prepare_update(
    new: pd.DataFrame,
    past: pd.DataFrame,
    labels: list[str],
    replay: ReplayConfig,
    replay_state: dict[str, Any] | None,
    seed: int,
    teacher: Teacher | None = None,
) -> UpdateRows:
    """The rows one update trains and validates on, from the new batches' rows and all earlier ones.

    `replay_state` is the state saved with the model the update starts from (the champion): a policy of
    the configured kind continues from it, so a rollback brings its matching state back. Without one, or
    when the configured policy changed, a fresh policy is first shown all past train rows, so a new
    reservoir starts full rather than empty. `round(replay.ratio × new train rows)` past train rows are
    replayed, sampled with `seed`. Pass a `teacher` only when the training config distils
    (`TrainConfig.distill_alpha > 0`): it labels the replayed rows, a forward pass over each of them.

    `past` may be every earlier row (the stream benchmark) or the bounded sample of them that gives the
    same draw in distribution (the daemon: `daemon.cycle.evidence.History.update_rows`).
    """
    new_train, past_train = split(new, "train"), split(past, "train")
    policy = _restore(replay, replay_state, past_train, seed)
    sample = policy.sample(past_train, round(replay.ratio * len(new_train)), labels, seed)
    train_rows = pd.concat([new_train, sample], ignore_index=True)
    if teacher is not None and len(sample):
        train_rows[TEACHER_COLUMN] = [None] * len(new_train) + _teacher_probs(teacher, sample["text"].tolist(),
                                                                              labels)
    new_val = split(new, "val")
    past_val = stratified_cap(split(past, "val"), max(len(new_val), MIN_PAST_VAL_ROWS), seed)
    val_rows = pd.concat([new_val, past_val], ignore_index=True)
    # Observing after sampling: the replay sample never holds the rows it is replayed next to.
    policy.observe(new_train, seed)
    return UpdateRows(new_train, sample, train_rows, val_rows, policy.state_dict())


def _restore(config: ReplayConfig, state: dict[str, Any] | None, past_train: pd.DataFrame, seed: int) -> ReplayPolicy:
    """The saved policy when it is of the configured kind, else a fresh one that has seen all past train rows."""
    if state and state.get("policy") == config.policy:
        return replay_from_state(state)
    if state:
        logger.info("replay: the saved state is for policy %r; starting a fresh %r policy", state.get("policy"),
                    config.policy)
    policy = make_replay(config)
    policy.observe(past_train, seed)
    return policy


def _teacher_probs(teacher: Teacher, texts: list[str], labels: list[str]) -> list[list[float]]:
    """The teacher's probabilities on `texts`, one column per class of `labels`."""
    probs = teacher.probabilities(texts)
    if len(probs) != len(texts):
        raise LengthMismatchError("teacher probabilities", {"texts": len(texts), "probability rows": len(probs)})
    if list(teacher.labels) == list(labels):
        return [list(map(float, p)) for p in probs]
    # A grown head: the teacher has no column for the new classes.
    index = {label: i for i, label in enumerate(teacher.labels)}
    return [[float(p[index[label]]) if label in index else 0.0 for label in labels] for p in probs]


def split(rows: pd.DataFrame, name: str) -> pd.DataFrame:
    """The rows of one split (train, val or test), indexed from 0."""
    if "split" not in rows.columns:
        raise MissingColumnError("split", list(rows.columns))
    return rows[rows["split"] == name].reset_index(drop=True)


def stratified_cap(rows: pd.DataFrame, cap: int, seed: int) -> pd.DataFrame:
    """At most `cap` rows keeping each (batch, label) group's share, so old batches stay represented."""
    if len(rows) <= cap:
        return rows.reset_index(drop=True)
    fraction = cap / len(rows)
    sampled = rows.groupby(["batch_id", "label"], group_keys=False).sample(frac=fraction, random_state=seed)
    return sampled.sort_values("row_hash").reset_index(drop=True)
