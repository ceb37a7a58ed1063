"""The state store's schema version: Alembic migrations under `daemon/state/migrations`, run in code.

- An empty database is built by running every migration (so they are exercised on each new store).
- A store made before migrations existed (tables, no `alembic_version`) is stamped at the baseline.
- A store behind this cltool's head is upgraded by the daemon at start-up, under its leader lock, or
  by `cltool db upgrade`; every other command refuses it with `SchemaOutdatedError` rather than
  reading tables that are not there yet. A store ahead of it (made by a newer cltool) is refused.

Creating and upgrading are serialised between processes: on PostgreSQL by an advisory lock held in the
migration's own transaction (PostgreSQL runs DDL transactionally: an upgrade commits whole or not at
all); on SQLite by taking its write lock (BEGIN IMMEDIATE) for the migration's transaction.
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import sqlalchemy as sa

from daemon.errors import SchemaAheadError, SchemaOutdatedError, SchemaUpgradeError

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
HEAD = "0004"
"""This cltool's newest revision, spelled out so that opening a store already at it needs no Alembic (a quick
`cltool status`); a test keeps it equal to the migration scripts' head."""
ADVISORY_LOCK_KEY = 7_236_231_001  # any constant: the one PostgreSQL advisory lock cltool's migrations take


@dataclass(frozen=True)
class Revision:
    current: str | None  # None: an empty database
    head: str

    @property
    def behind(self) -> bool:
        return self.current != self.head


def _config(connection: sa.Connection | None = None, rows_dir: Path | None = None):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    config.attributes["rows_dir"] = str(rows_dir) if rows_dir else ""
    return config


@functools.cache
def _scripts():
    """The migration scripts, read from disk once per process (every store open asks for the head)."""
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config())


def head() -> str:
    return _scripts().get_current_head()


def _known() -> set[str]:
    return {script.revision for script in _scripts().walk_revisions()}


def _current(connection: sa.Connection) -> tuple[str | None, bool]:
    """(revision, stamped): a store made before migrations has the baseline's tables and no stamp."""
    from alembic.runtime.migration import MigrationContext

    found = MigrationContext.configure(connection).get_current_revision()
    if found is None and sa.inspect(connection).has_table("batches"):
        return BASELINE, False
    return found, True


def _stamp(engine: sa.Engine) -> str | None:
    """The revision in `alembic_version`, read with plain SQL; None when there is none (yet)."""
    with engine.connect() as conn:
        try:
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        except sa.exc.DBAPIError:  # no such table: an empty or a pre-migration store
            conn.rollback()
            return None


def revision(engine: sa.Engine) -> Revision:
    with engine.connect() as conn:
        return Revision(_current(conn)[0], head())


@contextmanager
def _exclusive(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One connection in one transaction, held by this process alone among cltool's migrators; the
    migration's DDL and data commit together or not at all, on both databases."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            # pysqlite would run each CREATE/DROP outside any transaction; an explicit BEGIN IMMEDIATE puts
            # the DDL in one and takes the database's write lock (other migrators wait, busy_timeout).
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif engine.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def ensure(engine: sa.Engine, *, upgrade: bool, refuse_behind: bool = True, rows_dir: Path | None = None) -> Revision:
    """Bring the store to a state this cltool can use: build an empty one, stamp a pre-migration one,
    and (`upgrade`) apply what is missing. Without `upgrade`, a store behind head raises
    SchemaOutdatedError (`refuse_behind`) or is left as it is (the daemon, which upgrades it once it
    holds the leader lock: the `locks` table is in every revision). A store made by a newer cltool
    always raises SchemaAheadError."""
    if _stamp(engine) == HEAD:  # the usual case: one query, no Alembic
        return Revision(HEAD, HEAD)
    from alembic import command

    state = revision(engine)
    _refuse_unknown(engine, state)
    if not state.behind:
        return state
    if state.current is not None and not upgrade:
        if not refuse_behind:
            return state
        raise SchemaOutdatedError(engine.url.render_as_string(hide_password=True), state.current, state.head)
    with _exclusive(engine) as conn:
        current, stamped = _current(conn)  # again, under the lock: another process may have done it meanwhile
        config = _config(conn, rows_dir)
        if not stamped:
            command.stamp(config, BASELINE)
            log.info("state store made before migrations: stamped at revision %s", BASELINE)
            current = BASELINE
        if current != state.head:
            try:
                command.upgrade(config, "head")
            except Exception as exc:
                raise SchemaUpgradeError(engine.url.render_as_string(hide_password=True), current, state.head,
                                         exc) from exc
            if current is None:
                log.debug("state store created at revision %s", state.head)
            else:
                log.warning("state store upgraded from revision %s to %s", current, state.head)
    return Revision(state.head, state.head)


def _refuse_unknown(engine: sa.Engine, state: Revision) -> None:
    if state.current and state.current not in _known():
        raise SchemaAheadError(engine.url.render_as_string(hide_password=True), state.current, state.head)
