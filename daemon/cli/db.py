"""`cltool db`: the state store's schema revision, and upgrading it under the leader lock."""

from __future__ import annotations

import click

from daemon.cli.common import context, emit, fail_cleanly


@click.group()
def db() -> None:
    """The state store's schema: which revision it is at, and upgrading it (the daemon also upgrades at start-up)."""


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@fail_cleanly
def db_current(obj, as_json: bool) -> None:
    """The store's schema revision and the newest this cltool knows."""
    ctx = context(obj, refuse_outdated=False)
    rev = ctx.store.revision
    data = {"store": ctx.store.display_url, "revision": rev.current, "head": rev.head, "outdated": rev.behind}
    emit(data, as_json, f"{data['store']}: revision {rev.current}" +
          (f", behind {rev.head}: run `cltool db upgrade`" if rev.behind else " (the newest)"))


@db.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_obj
@fail_cleanly
def db_upgrade(obj, as_json: bool) -> None:
    """Apply the migrations the store lacks, holding the daemon's leader lock (a running daemon refuses it:
    stop the daemon, or let it upgrade at its next start)."""
    from daemon.state.locks import DAEMON_LOCK, Locks

    ctx = context(obj, "db-upgrade", refuse_outdated=False)
    locks = Locks(ctx.store)
    with locks.held(DAEMON_LOCK, ctx.owner, ttl_seconds=600,
                    hint="A daemon runs on this store: it upgraded the schema when it started, or stop it first."):
        change = ctx.store.upgrade(ctx.settings.legacy_rows_dir)
    data = {"store": ctx.store.display_url, "from": change.current, "to": change.head}
    emit(data, as_json, f"{data['store']}: revision {change.current} -> {change.head}"
          if change.current != change.head else f"{data['store']}: already at revision {change.head}")
