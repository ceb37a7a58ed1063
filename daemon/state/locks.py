"""Named locks in the state store, shared by the daemon and the CLI across processes.

Two are used: `daemon` (one daemon per state, renewed by a heartbeat) and `aliases` (held while an
alias moves together with its event-log row). A lock whose holder is gone is taken over: on the
same host when its pid no longer exists, anywhere once it has expired.
"""

from __future__ import annotations

import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Callable, Iterator

import sqlalchemy as sa

from daemon.errors import LockHeldError
from daemon.state.store import StateStore, as_utc, locks, utcnow

DAEMON_LOCK = "daemon"
ALIAS_LOCK = "aliases"


@dataclass(frozen=True)
class Holder:
    owner: str
    host: str
    pid: int
    acquired_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        return f"{self.owner} (pid {self.pid} on {self.host})"


def default_owner(role: str) -> str:
    return f"{role}:{socket.gethostname()}:{os.getpid()}"


class Locks:
    def __init__(self, store: StateStore, clock: Callable[[], datetime] = utcnow) -> None:
        self.engine = store.engine
        self.clock = clock
        self.host = socket.gethostname()

    def holder(self, name: str) -> Holder | None:
        with self.engine.connect() as conn:
            row = conn.execute(locks.select().where(locks.c.name == name)).first()
        if row is None:
            return None
        m = row._mapping
        return Holder(m["owner"], m["host"], m["pid"], as_utc(m["acquired_at"]), as_utc(m["expires_at"]))

    def try_acquire(self, name: str, owner: str, ttl_seconds: float) -> bool:
        now = self.clock()
        values = {"owner": owner, "host": self.host, "pid": os.getpid(), "acquired_at": now,
                  "expires_at": now + timedelta(seconds=ttl_seconds)}
        try:
            with self.engine.begin() as conn:
                conn.execute(locks.insert().values(name=name, **values))
            return True
        except sa.exc.IntegrityError:
            pass
        current = self.holder(name)
        if current is None:
            return self.try_acquire(name, owner, ttl_seconds)
        if current.owner != owner and not self._is_stale(current, now):
            return False
        # Compare-and-swap on the old owner, so two processes taking over a stale lock cannot both win.
        with self.engine.begin() as conn:
            result = conn.execute(
                locks.update()
                .where(locks.c.name == name, locks.c.owner == current.owner,
                       locks.c.acquired_at == current.acquired_at)
                .values(**values)
            )
        return result.rowcount == 1

    def acquire(self, name: str, owner: str, ttl_seconds: float, wait_seconds: float = 0.0, hint: str = "") -> None:
        deadline = time.monotonic() + wait_seconds
        while not self.try_acquire(name, owner, ttl_seconds):
            if time.monotonic() >= deadline:
                held = self.holder(name)
                raise LockHeldError(name, held.describe() if held else "another process",
                                    held.acquired_at.isoformat(timespec="seconds") if held else "now", hint)
            time.sleep(0.2)

    def renew(self, name: str, owner: str, ttl_seconds: float) -> bool:
        with self.engine.begin() as conn:
            result = conn.execute(
                locks.update().where(locks.c.name == name, locks.c.owner == owner)
                .values(expires_at=self.clock() + timedelta(seconds=ttl_seconds))
            )
        return result.rowcount == 1

    def release(self, name: str, owner: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(locks.delete().where(locks.c.name == name, locks.c.owner == owner))

    @contextmanager
    def held(self, name: str, owner: str, ttl_seconds: float = 600, wait_seconds: float = 0.0,
             hint: str = "") -> Iterator[None]:
        self.acquire(name, owner, ttl_seconds, wait_seconds, hint)
        try:
            yield
        finally:
            self.release(name, owner)

    def is_live(self, holder: Holder) -> bool:
        """The holder still holds: its lease runs, and (on this host) its process lives."""
        return not self._is_stale(holder, self.clock())

    def _is_stale(self, holder: Holder, now: datetime) -> bool:
        if holder.expires_at < now:
            return True
        return holder.host == self.host and not _pid_alive(holder.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
