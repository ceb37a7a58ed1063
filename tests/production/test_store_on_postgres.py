"""The state store on a real PostgreSQL 15: migrations from an old store (rows moved in from Parquet),
a failed upgrade rolled back whole (transactional DDL), concurrent first opens, the leader lock, and
the bounded history samples a cycle reads (index ranges of row-hash order)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from daemon.errors import SchemaOutdatedError, SchemaUpgradeError
from daemon.state import schema
from daemon.state.locks import Locks
from daemon.state.store import StateStore
from tests.concurrency import at_once
from tests.daemon.state.test_schema import BATCHES, old_store

pytestmark = pytest.mark.integration


def test_an_old_store_on_postgres_is_upgraded_with_its_rows(postgres, tmp_path):
    url, rows_dir = postgres.create_database("old_store"), tmp_path / "batches"
    old_store(url, rows_dir, BATCHES)
    with pytest.raises(SchemaOutdatedError):
        StateStore(url)
    store = StateStore(url, refuse_outdated=False)
    store.upgrade(rows_dir)
    assert [r["row_hash"] for r in store.rows(["b1", "b2"])] == ["h1", "h2", "h3"]
    assert [b.batch_id for b in store.list_batches(pending=True)] == ["b2"]
    assert StateStore(url).revision.current == schema.head()


def test_history_samples_on_postgres_are_hash_order_windows(postgres):
    from tests.daemon.cycle.test_history import check_history_rows

    check_history_rows(StateStore(postgres.create_database("history_samples")))


def test_a_failed_upgrade_on_postgres_changes_nothing(postgres, tmp_path):
    url, rows_dir = postgres.create_database("broken_store"), tmp_path / "batches"
    old_store(url, rows_dir, BATCHES, stamped=True)
    (rows_dir / "b1.parquet").unlink()
    with pytest.raises(SchemaUpgradeError):
        StateStore(url, refuse_outdated=False).upgrade(rows_dir)
    tables = set(sa.inspect(sa.create_engine(url)).get_table_names())
    assert "rows" not in tables and "row_index" in tables


def test_concurrent_first_opens_build_one_schema_and_one_leader(postgres):
    url = postgres.create_database("fresh_store")
    stores, errors = at_once(lambda: StateStore(url), 4)
    assert errors == [] and len(stores) == 4
    assert {s.revision.current for s in stores} == {schema.head()}
    winners = [Locks(s).try_acquire("daemon", f"owner{i}", 60) for i, s in enumerate(stores)]
    assert winners.count(True) == 1
