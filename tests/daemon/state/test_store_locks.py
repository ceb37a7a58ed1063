from __future__ import annotations

from datetime import timedelta

import pytest

from daemon.errors import LockHeldError
from daemon.state.locks import Locks
from daemon.state.store import utcnow


def test_events_are_appended_in_order_and_filterable(store):
    store.append("ingest.accepted", "ok", batch_id="b1")
    store.append("decision", "PROMOTE: fine", version="1", payload={"outcome": "PROMOTE"})
    store.append("promotion", "gate", version="1", actor="alice")
    assert [e.type for e in store.events()] == ["ingest.accepted", "decision", "promotion"]
    assert store.last_event("decision").payload == {"outcome": "PROMOTE"}
    assert [e.actor for e in store.events(types=["promotion"])] == ["alice"]
    assert store.events(newest_first=True, limit=1)[0].type == "promotion"


def test_decision_and_consumed_batches_are_one_transaction(store):
    store.add_batch({"batch_id": "b1", "file_name": "f", "checksum": "c1", "received_at": utcnow(),
                     "rows_in_file": 1, "rows_accepted": 1, "rows_bad": 0, "rows_duplicate": 0, "n_train": 1,
                     "n_val": 0, "n_test": 0, "label_counts": {"neutral": 1}},
                    [{"row_hash": "h1", "split": "train", "text": "t", "label": "neutral"}])
    with pytest.raises(Exception):  # a broken event rolls the consumption back too
        store.append_with_consume([{"type": "decision"}, {"type": None}], ["b1"], "c1")
    assert [b.batch_id for b in store.list_batches(pending=True)] == ["b1"]
    assert store.events() == []
    store.append_with_consume([{"type": "decision", "reason": "x"}], ["b1"], "c1")
    assert store.list_batches(pending=True) == [] and store.list_batches()[0].cycle_id == "c1"


def test_lock_excludes_a_second_owner_until_released(store):
    locks = Locks(store)
    assert locks.try_acquire("daemon", "a", 60)
    assert not locks.try_acquire("daemon", "b", 60)
    with pytest.raises(LockHeldError, match="lock 'daemon' is held by a") as caught:
        locks.acquire("daemon", "b", 60, hint="stop the other one")
    assert "stop the other one" in str(caught.value)
    locks.release("daemon", "a")
    assert locks.try_acquire("daemon", "b", 60)


def test_expired_lock_is_taken_over_and_renew_extends(store):
    clock = {"now": utcnow()}
    locks = Locks(store, clock=lambda: clock["now"])
    assert locks.try_acquire("daemon", "a", 60)
    clock["now"] += timedelta(seconds=30)
    assert locks.renew("daemon", "a", 60)
    clock["now"] += timedelta(seconds=50)
    assert not locks.try_acquire("daemon", "b", 60)  # renewed at +30 s: valid until +90 s, now +80 s
    clock["now"] += timedelta(seconds=15)
    assert locks.try_acquire("daemon", "b", 60)
    assert not locks.renew("daemon", "a", 60)  # the old owner learns it lost the lock


def test_lock_of_a_dead_process_on_this_host_is_taken_over(store):
    locks = Locks(store)
    assert locks.try_acquire("daemon", "ghost", 3600)
    with store.engine.begin() as conn:
        from daemon.state.store import locks as table

        conn.execute(table.update().values(pid=2 ** 22 + 12345))  # a pid that does not exist
    assert locks.try_acquire("daemon", "me", 60)
    assert locks.holder("daemon").owner == "me"
