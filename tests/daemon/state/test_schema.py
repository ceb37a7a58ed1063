"""Schema migrations: a new store is built by them; a store made before them (rows in Parquet files) is
upgraded by the daemon or `cltool db upgrade`, refused by every other command until then; a failed
upgrade changes nothing; a store from a newer cltool is refused. SQLite here; the same on PostgreSQL in
tests/production/test_store_on_postgres.py."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import sqlalchemy as sa
from alembic import command

from daemon.errors import SchemaAheadError, SchemaOutdatedError, SchemaUpgradeError
from daemon.state import schema
from daemon.state.store import StateStore, utcnow


def old_store(url: str, rows_dir, batches: dict[str, list[tuple[str, str, str, str]]], stamped: bool = False) -> None:
    """A store as cltool made it before migrations (revision 0001's tables, rows in one Parquet file per
    batch), with `batches`: batch id -> [(row_hash, text, label, split)]; the first batch is consumed."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        config = schema._config(conn)
        command.upgrade(config, schema.BASELINE)
        if not stamped:
            conn.execute(sa.text("DROP TABLE alembic_version"))
        rows_dir.mkdir(parents=True, exist_ok=True)
        for n, (batch_id, rows) in enumerate(batches.items()):
            frame = pd.DataFrame(rows, columns=["row_hash", "text", "label", "split"]).assign(
                id=None, published_at="2026-01-01", source="wire", batch_id=batch_id)
            frame.to_parquet(rows_dir / f"{batch_id}.parquet", index=False)
            conn.execute(sa.text(
                "INSERT INTO batches (batch_id, file_name, checksum, received_at, rows_in_file, rows_accepted, "
                "rows_bad, rows_duplicate, n_train, n_val, n_test, label_counts, rows_path, cycle_id) VALUES "
                "(:b, 'f.csv', :c, :t, :n, :n, 0, 0, :n, 0, 0, '{}', :p, :cycle)"),
                {"b": batch_id, "c": f"sum-{batch_id}", "t": utcnow(), "n": len(rows), "p": f"{batch_id}.parquet",
                 "cycle": "c1" if n == 0 else None})
            for row_hash, _, _, split in rows:
                conn.execute(sa.text("INSERT INTO row_index (row_hash, batch_id, split) VALUES (:h, :b, :s)"),
                             {"h": row_hash, "b": batch_id, "s": split})
    engine.dispose()


BATCHES = {"b1": [("h1", "first text", "negative", "train"), ("h2", "second text", "positive", "test")],
           "b2": [("h3", "third text", "neutral", "train")]}


def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'state.db'}"


def test_a_new_store_is_built_by_the_migrations(tmp_path):
    store = StateStore(sqlite_url(tmp_path))
    assert store.revision == schema.Revision(schema.head(), schema.head()) and not store.revision.behind
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == schema.head()
    assert set(sa.inspect(store.engine).get_table_names()) == {"alembic_version", "batches", "rows", "events", "locks",
                                                               "served"}


@pytest.mark.parametrize("stamped", [False, True], ids=["made-before-migrations", "stamped-0001"])
def test_an_old_store_is_refused_then_upgraded_with_its_rows_moved_in(tmp_path, stamped):
    url, rows_dir = sqlite_url(tmp_path), tmp_path / "batches"
    old_store(url, rows_dir, BATCHES, stamped=stamped)
    with pytest.raises(SchemaOutdatedError, match=rf"revision 0001, this cltool needs {schema.HEAD}: start the daemon"):
        StateStore(url)
    store = StateStore(url, refuse_outdated=False)
    assert store.revision.current == "0001" and store.revision.behind
    change = store.upgrade(rows_dir)
    assert (change.current, change.head) == ("0001", schema.head()) and not store.revision.behind
    # Rows are in the store, in ledger then file order, with their optional columns; the ledger is intact.
    assert [(r["row_hash"], r["text"], r["batch_id"], r["source"]) for r in store.rows(["b2", "b1"])] == [
        ("h1", "first text", "b1", "wire"), ("h2", "second text", "b1", "wire"), ("h3", "third text", "b2", "wire")]
    assert [b.batch_id for b in store.list_batches(pending=True)] == ["b2"]
    assert store.known_hashes(["h1", "h3", "nope"]) == {"h1", "h3"}
    assert "row_index" not in sa.inspect(store.engine).get_table_names()
    assert StateStore(url).revision.current == schema.head()  # every command opens it now


def test_a_failed_upgrade_changes_nothing(tmp_path):
    url, rows_dir = sqlite_url(tmp_path), tmp_path / "batches"
    old_store(url, rows_dir, BATCHES, stamped=True)
    (rows_dir / "b2.parquet").unlink()
    store = StateStore(url, refuse_outdated=False)
    with pytest.raises(SchemaUpgradeError, match=r"1 of 2 batch files are missing .* b2.parquet"):
        store.upgrade(rows_dir)
    tables = set(sa.inspect(store.engine).get_table_names())
    assert "rows" not in tables and "row_index" in tables  # the CREATE TABLE was rolled back too
    assert schema.revision(store.engine).current == "0001"


def test_a_store_from_a_newer_cltool_is_refused(tmp_path):
    store = StateStore(sqlite_url(tmp_path))
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    for refuse in (True, False):
        with pytest.raises(SchemaAheadError, match="revision 9999, newer than this cltool knows"):
            StateStore(sqlite_url(tmp_path), refuse_outdated=refuse)


def test_cltool_db_reports_and_upgrades_and_other_commands_wait_for_it(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from daemon.cli.main import cli

    monkeypatch.chdir(tmp_path)
    state = tmp_path / "state"
    state.mkdir()
    old_store(f"sqlite:///{state / 'state.db'}", state / "batches", BATCHES)

    def invoke(*args):
        return CliRunner().invoke(cli, ["--state-dir", str(state), "--inbox-dir", str(tmp_path / "inbox"), *args])

    refused = invoke("status")
    assert refused.exit_code == 1 and "cltool db upgrade" in refused.output and "Traceback" not in refused.output
    assert json.loads(invoke("db", "current", "--json").output) == {
        "store": f"sqlite:///{state / 'state.db'}", "revision": "0001", "head": schema.head(), "outdated": True}
    upgraded = invoke("db", "upgrade")
    assert upgraded.exit_code == 0 and f"revision 0001 -> {schema.head()}" in upgraded.output
    assert "already at revision" in invoke("db", "upgrade").output
    status = json.loads(invoke("status", "--json").output)
    assert status["pending_rows"] == 1  # b2's one train row, read from the store now


def test_the_spelled_out_head_is_the_migration_scripts_head():
    # Opening a store at HEAD skips Alembic (a quick `cltool status`): a new migration must move HEAD too.
    assert schema.HEAD == schema.head()
