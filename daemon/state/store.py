"""The SQL state store: the batch ledger, the accepted rows and the append-only event log.

SQLAlchemy Core over one URL: a SQLite file by default, PostgreSQL in production. Every write that
must be atomic (a batch and its rows) is one transaction. Everything a daemon needs to resume is here
or in MLflow, so a daemon on another host with the same two URLs carries on. Locks live in
`daemon.state.locks`; the schema's versions (Alembic migrations) in `daemon.state.schema`, and the
tables below are the newest revision's.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

import sqlalchemy as sa

from daemon.events import DEBUG as DEBUG_EVENTS
from daemon.events import WARNINGS as WARNING_EVENTS
from daemon.state import schema

log = logging.getLogger(__name__)

metadata = sa.MetaData()
INSERT_CHUNK = 5000  # rows per INSERT of a batch's rows

batches = sa.Table(
    "batches", metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("batch_id", sa.String(64), nullable=False, unique=True),
    sa.Column("file_name", sa.String(512), nullable=False),
    sa.Column("checksum", sa.String(64), nullable=False, unique=True),
    sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("rows_in_file", sa.Integer, nullable=False),
    sa.Column("rows_accepted", sa.Integer, nullable=False),
    sa.Column("rows_bad", sa.Integer, nullable=False),
    sa.Column("rows_duplicate", sa.Integer, nullable=False),
    sa.Column("n_train", sa.Integer, nullable=False),
    sa.Column("n_val", sa.Integer, nullable=False),
    sa.Column("n_test", sa.Integer, nullable=False),
    sa.Column("label_counts", sa.Text, nullable=False),
    # Set when a cycle has trained on the batch; NULL means its rows are still pending.
    sa.Column("cycle_id", sa.String(64), nullable=True, index=True),
)

# One row per accepted text, in file order (`position`); the hash recognises duplicates across batches.
# `id`, `published_at` and `source` are the file's own optional columns, as text.
ROW_COLUMNS = ["row_hash", "text", "label", "split", "batch_id", "id", "published_at", "source"]
rows = sa.Table(
    "rows", metadata,
    sa.Column("row_hash", sa.String(64), primary_key=True),
    sa.Column("batch_id", sa.String(64), nullable=False, index=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("split", sa.String(8), nullable=False),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("label", sa.String(128), nullable=False),
    sa.Column("id", sa.Text, nullable=True),
    sa.Column("published_at", sa.Text, nullable=True),
    sa.Column("source", sa.Text, nullable=True),
    # Row-hash order is a random order (SHA-256): ranges of it are uniform samples (history_rows).
    sa.Index("ix_rows_split_hash", "split", "row_hash"),
    sa.Index("ix_rows_split_label_hash", "split", "label", "row_hash"),
)

events = sa.Table(
    "events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("type", sa.String(64), nullable=False, index=True),
    sa.Column("version", sa.String(32), nullable=True),
    sa.Column("batch_id", sa.String(64), nullable=True),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
)

locks = sa.Table(
    "locks", metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("host", sa.String(256), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(value: datetime) -> datetime:
    # SQLite hands datetimes back naive; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


@dataclass(frozen=True)
class Batch:
    seq: int
    batch_id: str
    file_name: str
    checksum: str
    received_at: datetime
    rows_in_file: int
    rows_accepted: int
    rows_bad: int
    rows_duplicate: int
    n_train: int
    n_val: int
    n_test: int
    label_counts: dict[str, int]
    cycle_id: str | None

    @classmethod
    def from_row(cls, row: sa.Row) -> "Batch":
        data = dict(row._mapping)
        data["label_counts"] = json.loads(data["label_counts"])
        data["received_at"] = as_utc(data["received_at"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        data = self.__dict__.copy()
        data["received_at"] = self.received_at.isoformat()
        return data


@dataclass(frozen=True)
class Event:
    id: int
    at: datetime
    type: str
    version: str | None
    batch_id: str | None
    actor: str
    reason: str
    payload: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "at": self.at.isoformat(), "type": self.type, "version": self.version,
                "batch_id": self.batch_id, "actor": self.actor, "reason": self.reason, "payload": self.payload}


class StateStore:
    """Ledger and event log over one SQLAlchemy engine; safe to share between threads."""

    def __init__(self, url: str, *, refuse_outdated: bool = True) -> None:
        """Open the store; an empty database is created at the newest schema. A store at an older schema
        raises SchemaOutdatedError, unless `refuse_outdated` is False: then only `upgrade()` and the
        locks may be used until it is upgraded (the daemon, which upgrades under its leader lock)."""
        self.url = url
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            # A CLI process and the daemon share the file: wait for each other instead of failing.
            self.engine = sa.create_engine(url, connect_args={"timeout": 30})
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        else:
            # connect_timeout: an unreachable server fails a probe in seconds, not at the TCP timeout.
            args = {"connect_timeout": 5} if sa.engine.make_url(url).get_backend_name() == "postgresql" else {}
            self.engine = sa.create_engine(url, pool_pre_ping=True, connect_args=args)
        self.revision = schema.ensure(self.engine, upgrade=False, refuse_behind=refuse_outdated)

    @property
    def display_url(self) -> str:
        """The URL without its password, for messages and MLflow dataset sources."""
        return self.engine.url.render_as_string(hide_password=True)

    def upgrade(self, rows_dir: Path | None = None) -> "schema.Revision":
        """Apply the migrations this store lacks (`rows_dir`: where stores before revision 0002 kept
        their Parquet row files)."""
        before = self.revision
        self.revision = schema.ensure(self.engine, upgrade=True, rows_dir=rows_dir)
        return schema.Revision(before.current, self.revision.head)

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))

    # -- batches -----------------------------------------------------------------------------
    def add_batch(self, record: dict[str, Any], accepted: Iterable[dict[str, Any]],
                  event: dict[str, Any] | None = None) -> Batch:
        """Record a batch, its accepted rows (dicts with ROW_COLUMNS but batch_id, in file order; read once,
        in chunks, so a large file is never held twice) and its `event` (an entry as for `append_all`) in
        one transaction: all or nothing."""
        values = dict(record, label_counts=json.dumps(record["label_counts"], sort_keys=True))
        with self.engine.begin() as conn:
            conn.execute(batches.insert().values(**values))
            chunk: list[dict[str, Any]] = []
            for position, row in enumerate(accepted):
                chunk.append({**row, "batch_id": record["batch_id"], "position": position})
                if len(chunk) == INSERT_CHUNK:
                    conn.execute(rows.insert(), chunk)
                    chunk = []
            if chunk:
                conn.execute(rows.insert(), chunk)
            made = _insert_event(conn, {**event, "batch_id": record["batch_id"]}, utcnow()) if event else None
        if made is not None:
            _log_event(made)
        return self.batch(record["batch_id"])

    def rows(self, batch_ids: list[str]) -> list[dict[str, Any]]:
        """The accepted rows of `batch_ids`, batch by batch in ledger order, each in file order."""
        if not batch_ids:
            return []
        query = (sa.select(*(rows.c[name] for name in ROW_COLUMNS))
                 .join(batches, batches.c.batch_id == rows.c.batch_id)
                 .where(rows.c.batch_id.in_(batch_ids))
                 .order_by(batches.c.seq, rows.c.position))
        with self.engine.connect() as conn:
            return [dict(row._mapping) for row in conn.execute(query)]

    def history_rows(self, split: str, limit: int, *, label: str | None = None, start: str = "",
                     also: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Up to `limit` rows of one split of the history (the consumed batches, and the pending ones `also`
        names), optionally of one `label`, in row-hash order from `start` on, wrapping round to the lowest.

        Row hashes are SHA-256 digests, so their order is a random permutation that does not depend on
        the texts: the `limit` rows that follow any start are a uniform random sample of the history,
        and the rows from "" on are a sample that stays the same while history grows (a new row joins
        it only by displacing one with a larger hash). Read through an index range: the cost follows
        `limit`, not the size of the history."""
        if limit <= 0:
            return []
        known = batches.c.cycle_id.is_not(None)
        where = [rows.c.split == split, sa.or_(known, rows.c.batch_id.in_(list(also))) if also else known]
        if label is not None:
            where.append(rows.c.label == label)
        query = (sa.select(*(rows.c[name] for name in ROW_COLUMNS))
                 .join(batches, batches.c.batch_id == rows.c.batch_id)
                 .order_by(rows.c.row_hash))
        with self.engine.connect() as conn:
            found = [dict(row._mapping) for row in conn.execute(
                query.where(*where, rows.c.row_hash >= start).limit(limit))]
            if start and len(found) < limit:
                found += [dict(row._mapping) for row in conn.execute(
                    query.where(*where, rows.c.row_hash < start).limit(limit - len(found)))]
        return found

    def batch(self, batch_id: str) -> Batch:
        with self.engine.connect() as conn:
            row = conn.execute(batches.select().where(batches.c.batch_id == batch_id)).one()
        return Batch.from_row(row)

    def batch_by_checksum(self, checksum: str) -> Batch | None:
        with self.engine.connect() as conn:
            row = conn.execute(batches.select().where(batches.c.checksum == checksum)).first()
        return Batch.from_row(row) if row else None

    def list_batches(self, pending: bool | None = None) -> list[Batch]:
        query = batches.select().order_by(batches.c.seq)
        if pending is True:
            query = query.where(batches.c.cycle_id.is_(None))
        elif pending is False:
            query = query.where(batches.c.cycle_id.is_not(None))
        with self.engine.connect() as conn:
            return [Batch.from_row(row) for row in conn.execute(query)]

    def known_hashes(self, hashes: list[str]) -> set[str]:
        found: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(hashes), 500):  # stay under SQL parameter limits
                chunk = hashes[start:start + 500]
                found.update(conn.execute(sa.select(rows.c.row_hash).where(rows.c.row_hash.in_(chunk))).scalars())
        return found

    # -- events ------------------------------------------------------------------------------
    def append(self, type: str, reason: str = "", *, version: str | None = None, batch_id: str | None = None,
               actor: str = "daemon", payload: dict[str, Any] | None = None, now: datetime | None = None,
               quiet: bool = False) -> Event:
        """Append one event; it is logged as it is written, unless `quiet` (its line was written earlier,
        when the store could not take it)."""
        entry = {"type": type, "reason": reason, "version": version, "batch_id": batch_id, "actor": actor,
                 "payload": payload}
        with self.engine.begin() as conn:
            event = _insert_event(conn, entry, now or utcnow())
        if not quiet:
            _log_event(event)
        return event

    def append_with_consume(self, entries: list[dict[str, Any]], batch_ids: list[str], cycle_id: str) -> list[Event]:
        """Append events and mark batches consumed in ONE transaction: a decision and the data it used
        are recorded together, so a crash can neither lose the decision nor train on the batches twice."""
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(batches.update().where(batches.c.batch_id.in_(batch_ids)).values(cycle_id=cycle_id))
            made = [_insert_event(conn, entry, now) for entry in entries]
        for event in made:
            _log_event(event)
        return made

    def append_all(self, entries: list[dict[str, Any]]) -> list[Event]:
        """Append several events (dicts with `append`'s keyword names) in one transaction: all or none."""
        now = utcnow()
        with self.engine.begin() as conn:
            made = [_insert_event(conn, entry, now) for entry in entries]
        for event in made:
            _log_event(event)
        return made

    def mark_consumed(self, batch_ids: list[str], cycle_id: str) -> None:
        """Mark batches consumed by `cycle_id` (`cltool fsck --repair`, from a recorded decision)."""
        with self.engine.begin() as conn:
            conn.execute(batches.update().where(batches.c.batch_id.in_(batch_ids)).values(cycle_id=cycle_id))

    def row_counts(self) -> dict[str, dict[str, int]]:
        """{batch_id: {split: rows}} of the stored rows, orphans (a batch_id with no ledger row) included."""
        query = sa.select(rows.c.batch_id, rows.c.split, sa.func.count()).group_by(rows.c.batch_id, rows.c.split)
        counts: dict[str, dict[str, int]] = {}
        with self.engine.connect() as conn:
            for batch_id, split, n in conn.execute(query):
                counts.setdefault(batch_id, {})[split] = int(n)
        return counts

    def delete_rows(self, batch_id: str) -> int:
        """Delete the stored rows of `batch_id` (orphans whose batch is not in the ledger: fsck --repair)."""
        with self.engine.begin() as conn:
            return conn.execute(rows.delete().where(rows.c.batch_id == batch_id)).rowcount

    def events(self, *, types: Iterable[str] | None = None, since: datetime | None = None,
               after_id: int | None = None, limit: int | None = None, newest_first: bool = False,
               batch_ids: Iterable[str] | None = None) -> list[Event]:
        query = events.select()
        if types is not None:
            query = query.where(events.c.type.in_(list(types)))
        if batch_ids is not None:
            query = query.where(events.c.batch_id.in_(list(batch_ids)))
        if since is not None:
            query = query.where(events.c.at >= since)
        if after_id is not None:
            query = query.where(events.c.id > after_id)
        query = query.order_by(events.c.id.desc() if newest_first else events.c.id)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_event(row) for row in conn.execute(query)]

    def last_event(self, *types: str) -> Event | None:
        found = self.events(types=types, limit=1, newest_first=True)
        return found[0] if found else None


def _insert_event(conn: sa.Connection, entry: dict[str, Any], now: datetime) -> Event:
    """One event row inside the caller's transaction; `entry` needs at least a `type`."""
    payload = entry.get("payload") or {}
    values = {"at": now, "type": entry["type"], "version": entry.get("version"), "batch_id": entry.get("batch_id"),
              "actor": entry.get("actor") or "daemon", "reason": entry.get("reason") or "",
              "payload": json.dumps(payload, sort_keys=True, default=str)}
    new_id = conn.execute(events.insert().values(**values)).inserted_primary_key[0]
    return Event(id=new_id, **dict(values, payload=payload))


def _log_event(event: Event) -> None:
    """The one log line of an event: whoever wrote it logs nothing else about it."""
    level = (logging.WARNING if event.type in WARNING_EVENTS else
             logging.DEBUG if event.type in DEBUG_EVENTS else logging.INFO)
    log.log(level, "event %s", event.type, extra={"event": event.to_dict()})


def _event(row: sa.Row) -> Event:
    data = dict(row._mapping)
    return Event(**dict(data, at=as_utc(data["at"]), payload=json.loads(data["payload"])))


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
