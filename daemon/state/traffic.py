"""Served traffic: the texts `cltool serve` labeled (a sample, `serve.sample_rate`), kept for the
monitors that need no labels (daemon/monitoring/live.py). Written in batches by the server's recorder,
read as counts per window, so a check never reads the whole table."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from typing import Any, Iterable

import sqlalchemy as sa

from daemon.state.store import StateStore, metadata

served = sa.Table(
    "served", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("version", sa.String(32), nullable=False),
    sa.Column("source", sa.String(256), nullable=True),
    sa.Column("text", sa.Text, nullable=False),
    sa.Column("label", sa.String(128), nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("scores", sa.Text, nullable=False),
)

SOURCE_CHARS = 256


def record(store: StateStore, rows: Iterable[dict[str, Any]]) -> int:
    """Insert served rows (at, version, source, text, label, score, scores: a dict) in one transaction."""
    values = [{**row, "source": str(row["source"])[:SOURCE_CHARS] if row.get("source") else None,
               "scores": json.dumps(row["scores"], sort_keys=True)} for row in rows]
    if values:
        with store.engine.begin() as conn:
            conn.execute(served.insert(), values)
    return len(values)


def label_counts(store: StateStore, start: datetime, end: datetime) -> Counter[tuple[str | None, str]]:
    """How many texts served in [start, end) got each label, per source: {(source, label): n}."""
    query = (sa.select(served.c.source, served.c.label, sa.func.count())
             .where(served.c.at >= start, served.c.at < end)
             .group_by(served.c.source, served.c.label))
    with store.engine.connect() as conn:
        return Counter({(source, label): n for source, label, n in conn.execute(query)})


def scores(store: StateStore, start: datetime, end: datetime, limit: int = 5000) -> list[tuple[str, dict[str, float]]]:
    """(version, class probabilities) of the newest `limit` texts served in [start, end)."""
    query = (sa.select(served.c.version, served.c.scores).where(served.c.at >= start, served.c.at < end)
             .order_by(served.c.id.desc()).limit(limit))
    with store.engine.connect() as conn:
        return [(version, json.loads(text)) for version, text in conn.execute(query)]


def texts(store: StateStore, start: datetime, end: datetime, limit: int) -> list[str]:
    """The newest `limit` texts served in [start, end)."""
    query = (sa.select(served.c.text).where(served.c.at >= start, served.c.at < end)
             .order_by(served.c.id.desc()).limit(limit))
    with store.engine.connect() as conn:
        return list(conn.execute(query).scalars())


def prune(store: StateStore, before: datetime) -> int:
    """Delete what was served before `before`; returns how many rows went."""
    with store.engine.begin() as conn:
        return conn.execute(served.delete().where(served.c.at < before)).rowcount or 0
