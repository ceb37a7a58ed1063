"""A cycle reads history in bounded samples (daemon/cycle/evidence.py History, StateStore.history_rows)."""

from __future__ import annotations

import hashlib
import math
from collections import Counter

import numpy as np
import pytest

from daemon.cycle import evidence
from daemon.state.store import StateStore, utcnow
from retrain.config import ReplayConfig
from retrain.replay import balanced_quotas
from retrain.update import prepare_update

LABELS = ["negative", "neutral", "positive"]
SPLITS = ["train"] * 6 + ["val"] * 2 + ["test"] * 2


def add_batch(store: StateStore, index: int, n: int = 100, consumed: bool = True, label_of=None) -> str:
    batch_id = f"b{index:04d}"
    rows = []
    for i in range(n):
        text = f"batch {index} text {i}"
        label = label_of(i) if label_of else LABELS[i % 3]
        rows.append({"row_hash": hashlib.sha256(f"{text}|{label}".encode()).hexdigest(), "split": SPLITS[i % 10],
                     "text": text, "label": label})
    counts = Counter(r["split"] for r in rows)
    store.add_batch({"batch_id": batch_id, "file_name": f"{batch_id}.csv", "checksum": f"c{batch_id}",
                     "received_at": utcnow(), "rows_in_file": n, "rows_accepted": n, "rows_bad": 0,
                     "rows_duplicate": 0, "n_train": counts["train"], "n_val": counts["val"], "n_test": counts["test"],
                     "label_counts": dict(Counter(r["label"] for r in rows))}, rows)
    if consumed:
        store.mark_consumed([batch_id], f"cycle-{index}")
    return batch_id


@pytest.fixture
def store(tmp_path):
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def test_history_rows_are_a_hash_order_window_of_the_consumed_batches(store):
    check_history_rows(store)


def check_history_rows(store: StateStore) -> None:
    """Also run on PostgreSQL (tests/production/test_store_on_postgres.py): the order is the database's."""
    for index in range(5):
        add_batch(store, index)
    pending = add_batch(store, 5, consumed=False)
    every = sorted((r for r in store.rows([f"b{i:04d}" for i in range(5)]) if r["split"] == "test"),
                   key=lambda r: r["row_hash"])
    assert len(every) == 100
    # From "": the lowest hashes, in hash order; a pending batch's rows are not history...
    assert store.history_rows("test", 30) == every[:30]
    assert all(r["batch_id"] != pending for r in store.history_rows("test", 1000))
    # ...unless the caller names it (a waiting challenger's learned batches).
    assert sum(r["batch_id"] == pending for r in store.history_rows("test", 1000, also=[pending])) == 20
    # From a point: the rows after it, wrapping round to the lowest, never one twice.
    start = every[90]["row_hash"]
    assert store.history_rows("test", 20, start=start) == every[90:] + every[:10]
    assert len(store.history_rows("test", 500, start=start)) == 100
    only = store.history_rows("train", 1000, label="neutral")
    assert len(only) == 100 and {r["label"] for r in only} == {"neutral"} and {r["split"] for r in only} == {"train"}
    assert store.history_rows("test", 0) == []


def test_the_lowest_hashes_stay_the_suite_while_history_grows(store):
    for index in range(4):
        add_batch(store, index)
    before = {r["row_hash"] for r in store.history_rows("test", 50)}
    add_batch(store, 4)
    after = {r["row_hash"] for r in store.history_rows("test", 50)}
    newcomers = {r["row_hash"] for r in store.rows(["b0004"]) if r["split"] == "test"}
    # A row leaves the suite only for a new row with a lower hash.
    assert after - before <= newcomers and len(before - after) == len(after - before)


def test_windows_from_seeded_points_sample_old_and_new_batches_alike(store):
    for index in range(10):
        add_batch(store, index)
    seen = Counter()
    for draw in range(400):
        point = hashlib.sha256(f"draw {draw}".encode()).hexdigest()
        seen.update(r["batch_id"] for r in store.history_rows("train", 50, label="positive", start=point))
    shares = np.array([seen[f"b{i:04d}"] for i in range(10)]) / sum(seen.values())
    # Ten batches of equal size: each about a tenth, with no drift from oldest to newest.
    assert np.all(np.abs(shares - 0.1) < 0.03), shares
    assert abs(np.polyfit(np.arange(10), shares, 1)[0]) < 0.003


def test_quotas_over_pools_capped_at_the_replay_size_equal_those_over_all_history():
    rng = np.random.default_rng(0)
    for _ in range(500):
        available = {label: int(rng.integers(0, 400)) for label in LABELS}
        n = int(rng.integers(0, 500))
        capped = {label: min(count, n) for label, count in available.items()}
        seed = int(rng.integers(0, 1000))
        assert (balanced_quotas(capped, n, np.random.default_rng(seed))
                == balanced_quotas(available, n, np.random.default_rng(seed))), (available, n)


class Counting:
    """The store, counting the rows it hands out."""

    def __init__(self, store: StateStore) -> None:
        self.store, self.read = store, 0

    def __getattr__(self, name):
        method = getattr(self.store, name)
        if name not in {"rows", "history_rows"}:
            return method

        def counted(*args, **kwargs):
            found = method(*args, **kwargs)
            self.read += len(found)
            return found
        return counted


def rows_read(tmp_path, n_batches: int, replay: ReplayConfig, state=None) -> tuple[int, int, evidence.History]:
    store = StateStore(f"sqlite:///{tmp_path / f'h{n_batches}-{replay.policy}.db'}")
    for index in range(n_batches):
        add_batch(store, index)
    new_id = add_batch(store, n_batches, consumed=False)
    new = evidence.load_rows(store, [store.batch(new_id)])
    counting = Counting(store)
    history = evidence.History(counting, tuple(store.list_batches(pending=False)))
    past = history.update_rows(new, replay, state, LABELS, seed=3)
    regression = history.regression(200)
    update = prepare_update(new, past, LABELS, replay, state, seed=3)
    assert len(update.replay) == round(replay.ratio * 60) and len(regression) == 200
    return counting.read, len(past), history


@pytest.mark.parametrize("policy", ["class_balanced", "recency"])
def test_what_an_update_reads_does_not_grow_with_history(tmp_path, policy):
    replay = ReplayConfig(policy=policy, ratio=1.0, half_life_rows=20)
    small, _, _ = rows_read(tmp_path, 10, replay)
    large, _, _ = rows_read(tmp_path, 100, replay)  # 10,000 past rows
    # Replay pool (60 per label; or the newest whole batches, 100 rows with 60 train each, holding 16
    # half-lives of train rows), 50 past val rows, a 200-row regression suite.
    bound = (3 * 60 if policy == "class_balanced" else math.ceil(16 * 20 / 60) * 100) + 50 + 200
    assert small == large <= bound


def test_a_reservoir_reads_all_past_train_rows_only_to_fill_a_fresh_buffer(tmp_path):
    replay = ReplayConfig(policy="reservoir", ratio=1.0, reservoir_capacity=100)
    fresh, _, _ = rows_read(tmp_path, 20, replay)
    assert fresh == 20 * 100 + 50 + 200  # every past batch read once, to fill it with their train rows
    state = {"policy": "reservoir", "capacity": 100, "label_column": "label", "seen": 100,
             "buffer": [{"text": f"kept {i}", "label": LABELS[i % 3], "row_hash": f"k{i}", "batch_id": "b0000"}
                        for i in range(100)]}
    kept, pool, _ = rows_read(tmp_path / "again", 20, replay, state)
    assert kept == 50 + 200 and pool == 50  # the buffer is all it replays from


def test_replayed_rows_are_class_balanced_draws_from_the_whole_history(tmp_path):
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    # Positives are rare: 1 row in 10. Class balance must still find them all through the label's own range.
    rare = lambda i: "positive" if i % 10 == 0 else LABELS[i % 2]  # noqa: E731
    for index in range(30):
        add_batch(store, index, label_of=rare)
    new_id = add_batch(store, 30, consumed=False)
    new = evidence.load_rows(store, [store.batch(new_id)])
    history = evidence.History(store, tuple(store.list_batches(pending=False)))
    replay = ReplayConfig(ratio=1.0)
    update = prepare_update(new, history.update_rows(new, replay, None, LABELS, 3), LABELS, replay, None, 3)
    counts = update.replay["label"].value_counts().to_dict()
    assert counts == {"negative": 20, "neutral": 20, "positive": 20}
    assert update.replay["batch_id"].nunique() > 10  # spread over the history, not its newest batches
    assert set(update.replay["split"]) == {"train"} and not update.replay["row_hash"].duplicated().any()
    # A later update (history grown) replays other rows: the window moves.
    add_batch(store, 31)
    later = evidence.History(store, tuple(store.list_batches(pending=False)))
    again = prepare_update(new, later.update_rows(new, replay, None, LABELS, 3), LABELS, replay, None, 3)
    assert len(set(again.replay["row_hash"]) & set(update.replay["row_hash"])) < 30
