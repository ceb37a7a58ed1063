"""Replay: which past train rows join the new rows in a fine-tuning run, so the model does not forget.

A policy picks rows from the history of accepted train rows (kept by the daemon as Parquet).
Policies are small objects with `sample`, `state_dict` and `load_state_dict`, so a policy that
keeps its own buffer (reservoir) can be saved and restored next to one that keeps nothing.
`make_replay` builds the one a `ReplayConfig` names; the constructors' defaults are that config's.
"""

from __future__ import annotations

import abc
import logging
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from retrain.config import ReplayConfig
from retrain.errors import MissingColumnError, ReplayStateError, UnknownReplayPolicyError

logger = logging.getLogger(__name__)

DEFAULTS = ReplayConfig()


class ReplayPolicy(abc.ABC):
    """Chooses up to `n` rows of past training data to replay."""

    #: The policy's name in `ReplayConfig.policy`; stored in `state_dict()["policy"]`.
    name: ClassVar[str]

    @abc.abstractmethod
    def sample(self, history: pd.DataFrame, n: int, labels: list[str], seed: int) -> pd.DataFrame:
        """Return up to `n` rows of `history`, all columns kept, deterministic for `seed`."""

    def observe(self, rows: pd.DataFrame, seed: int) -> None:
        """Called with the new train rows once a model has learned them. History-backed policies
        keep nothing (the daemon keeps the history); a buffer-backed one updates its buffer."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this policy with `replay_from_state` (JSON-serialisable)."""
        return {"policy": self.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from `state_dict()`; refuses a state written by another policy."""
        if state.get("policy") != self.name:
            raise ReplayStateError("policy", state.get("policy"), repr(self.name))


class ClassBalancedReplay(ReplayPolicy):
    """Uniform sampling over all past train rows, with equal shares per class where possible.

    Balance matters because the stream's label mix drifts: replaying in proportion to the history
    would let a class that was common long ago crowd out the rare one the model is forgetting.
    A class with fewer rows than its share gives all it has, and the rest of its share goes to
    the others. No row is picked twice. Rows whose label is not in `labels` are never picked.
    """

    name = "class_balanced"

    def __init__(self, label_column: str = "label") -> None:
        self.label_column = label_column

    def sample(self, history: pd.DataFrame, n: int, labels: list[str], seed: int) -> pd.DataFrame:
        if n <= 0 or history.empty:
            return history.iloc[0:0]
        if self.label_column not in history.columns:
            raise MissingColumnError(self.label_column, list(history.columns))
        rng = np.random.default_rng(seed)
        column = history[self.label_column].to_numpy()
        positions = {label: np.flatnonzero(column == label) for label in labels}
        ignored = len(history) - sum(len(p) for p in positions.values())
        if ignored:
            logger.warning("replay: %d history rows have labels outside %s; skipped", ignored, labels)

        quotas = balanced_quotas({label: len(p) for label, p in positions.items()}, n, rng)
        weights = self.row_weights(len(history))
        chosen = [
            rng.choice(positions[label], size=quota, replace=False,
                       p=None if weights is None else weights[positions[label]] / weights[positions[label]].sum())
            for label, quota in quotas.items()
            if quota > 0
        ]
        # Sorting keeps the history's order, so the output does not depend on dict order; the
        # trainer shuffles anyway.
        picked = np.sort(np.concatenate(chosen)) if chosen else np.array([], dtype=int)
        logger.debug("replay: %s from %d history rows", quotas, len(history))
        return history.iloc[picked]

    def row_weights(self, n_rows: int) -> np.ndarray | None:
        """Relative chance of each history row inside its class; None = uniform."""
        return None

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "label_column": self.label_column}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.label_column = state.get("label_column", "label")


def balanced_quotas(available: dict[str, int], n: int, rng: np.random.Generator) -> dict[str, int]:
    """Split `n` across classes as evenly as their `available` counts allow ("water filling").

    Each round gives every open class an equal share; classes that cannot fill it give all they
    have and close, and the round repeats with what is left. When `n` does not divide evenly the
    leftover rows go to classes drawn with `rng`, so no class is favoured cycle after cycle.
    """
    quotas = {label: 0 for label in available}
    remaining = min(n, sum(available.values()))
    open_classes = [label for label, count in available.items() if count > 0]
    while remaining > 0 and open_classes:
        share, leftover = divmod(remaining, len(open_classes))
        short = [label for label in open_classes if available[label] <= share]
        if short:
            for label in short:
                quotas[label] = available[label]
                remaining -= available[label]
            open_classes = [label for label in open_classes if label not in short]
            continue
        # Every open class has more than `share` rows, so each can also take one leftover row.
        for label in open_classes:
            quotas[label] = share
        for index in rng.choice(len(open_classes), size=leftover, replace=False):
            quotas[open_classes[index]] += 1
        remaining = 0
    return quotas


class ReservoirReplay(ReplayPolicy):
    """A bounded buffer of past rows (reservoir sampling, algorithm R), for histories too large to keep.

    The buffer holds the rows themselves (text, label, row_hash, batch_id), so the policy needs no
    history at all: `observe` offers each newly trained row once, and every row ever offered has
    the same chance `capacity / seen` of being in the buffer. `sample` draws class-balanced from
    the buffer. Memory is `capacity` rows whatever the stream's length; the state (buffer + count)
    is saved with each model version, so a rollback restores the buffer that version learned with.
    """

    name = "reservoir"
    KEPT = ("text", "label", "row_hash", "batch_id")

    def __init__(self, capacity: int = DEFAULTS.reservoir_capacity, label_column: str = "label") -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise ReplayStateError("capacity", capacity, "an integer >= 1")
        self.capacity = capacity
        self.label_column = label_column
        self.seen = 0
        self.buffer: list[dict[str, Any]] = []

    def observe(self, rows: pd.DataFrame, seed: int) -> None:
        """Offer `rows` (just trained on) to the reservoir; deterministic for (`seed`, rows seen so far)."""
        rng = np.random.default_rng([seed, self.seen])
        kept = [column for column in self.KEPT if column in rows.columns]
        for record in rows[kept].to_dict("records"):
            self.seen += 1
            if len(self.buffer) < self.capacity:
                self.buffer.append(record)
            else:
                slot = int(rng.integers(0, self.seen))
                if slot < self.capacity:
                    self.buffer[slot] = record

    def sample(self, history: pd.DataFrame, n: int, labels: list[str], seed: int) -> pd.DataFrame:
        frame = pd.DataFrame(self.buffer, columns=[*self.KEPT])
        if history is not None:
            # Same columns as the rows the trainer gets from history (split etc.), where known (an empty
            # history may still name them: the daemon passes none when the buffer is all it needs).
            for column in history.columns:
                if column not in frame.columns:
                    frame[column] = "train" if column == "split" else None
        return ClassBalancedReplay(self.label_column).sample(frame, n, labels, seed)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "capacity": self.capacity, "label_column": self.label_column,
                "seen": self.seen, "buffer": self.buffer}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.capacity = int(state.get("capacity", self.capacity))
        self.label_column = state.get("label_column", "label")
        self.seen = int(state.get("seen", 0))
        self.buffer = list(state.get("buffer", []))
        if len(self.buffer) > self.capacity or self.seen < len(self.buffer):
            raise ReplayStateError("buffer", f"{len(self.buffer)} rows, {self.seen} seen",
                                   f"at most capacity {self.capacity} rows and no more than seen")


class RecencyReplay(ClassBalancedReplay):
    """Newer rows are likelier: a row's weight halves every `half_life_rows` train rows that arrived after it.

    Class quotas are the same water-filling as `ClassBalancedReplay`; within a class, rows are drawn
    without replacement with probability proportional to their weight. History order is arrival
    order (the daemon reads batches oldest first), so a row's age is its distance from the end.
    """

    name = "recency"

    def __init__(self, half_life_rows: int = DEFAULTS.half_life_rows, label_column: str = "label") -> None:
        if isinstance(half_life_rows, bool) or not isinstance(half_life_rows, int) or half_life_rows < 1:
            raise ReplayStateError("half_life_rows", half_life_rows, "an integer >= 1")
        super().__init__(label_column)
        self.half_life_rows = half_life_rows

    def row_weights(self, n_rows: int) -> np.ndarray:
        age = np.arange(n_rows - 1, -1, -1, dtype=np.float64)  # last row: age 0
        return np.power(0.5, age / self.half_life_rows)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "half_life_rows": self.half_life_rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.half_life_rows = int(state.get("half_life_rows", self.half_life_rows))


_POLICIES: dict[str, type[ReplayPolicy]] = {
    policy.name: policy for policy in (ClassBalancedReplay, ReservoirReplay, RecencyReplay)
}


def make_replay(config: ReplayConfig) -> ReplayPolicy:
    """A fresh policy of the kind `config.policy` names, with its settings."""
    if config.policy == "reservoir":
        return ReservoirReplay(capacity=config.reservoir_capacity)
    if config.policy == "recency":
        return RecencyReplay(half_life_rows=config.half_life_rows)
    return _POLICIES[config.policy]()


def replay_from_state(state: dict[str, Any]) -> ReplayPolicy:
    """Rebuild a policy saved with `state_dict()`."""
    try:
        cls = _POLICIES[state.get("policy")]  # type: ignore[index]
    except (KeyError, TypeError):
        raise UnknownReplayPolicyError(state.get("policy"), sorted(_POLICIES)) from None
    replay = cls()
    replay.load_state_dict(state)
    return replay
