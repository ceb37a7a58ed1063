"""Dependencies (the state store, MLflow) going away and coming back, said once each way.

`probe()` runs every dependency check with a deadline (a dead server must not hang the caller) and
reports transitions: one WARNING line when a dependency goes away, one line when it is back, each an
event (`dependency.lost`, `dependency.restored`). While the state store itself is down its loss is
logged directly and recorded with its return. Job errors that an outage explains are then not logged
again: a 60 s PostgreSQL outage is two lines, not a traceback from every job every 5 s.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Mapping

from daemon import events

log = logging.getLogger(__name__)

STATE_STORE = "state_store"


def run_checks(checks: Mapping[str, Callable[[], None]], deadline_seconds: float) -> dict[str, str]:
    """Every check at once, each given `deadline_seconds`: name -> "ok" or "<Type>: <message>". A check
    still running at the deadline is reported as timed out and left to finish on its own thread."""
    pool = ThreadPoolExecutor(max_workers=max(1, len(checks)), thread_name_prefix="cltool-check")
    futures = {name: pool.submit(check) for name, check in checks.items()}
    results: dict[str, str] = {}
    for name, future in futures.items():
        try:
            future.result(timeout=deadline_seconds)
            results[name] = "ok"
        except FutureTimeout:
            results[name] = f"TimeoutError: no answer within {deadline_seconds:g} s"
        except Exception as exc:  # a probe reports failures, it does not propagate them
            results[name] = f"{type(exc).__name__}: {exc}"
    pool.shutdown(wait=False)
    return results


def is_outage_error(exc: BaseException) -> bool:
    """Errors a dependency outage produces: a refused or lost connection to the database or MLflow."""
    import sqlalchemy.exc

    from registry.errors import RegistryUnavailable

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:  # the outage may be the cause of what was raised
        seen.add(id(exc))
        if isinstance(exc, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, RegistryUnavailable,
                            ConnectionError, TimeoutError)):
            return True
        if type(exc).__module__.startswith(("requests", "urllib3")) and "Connection" in type(exc).__name__:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


@dataclass
class Down:
    since: datetime
    error: str
    recorded: bool  # its `dependency.lost` event is written


class Outages:
    # A dependency is called lost when it fails, or gives no answer within DEADLINE_SECONDS: a busy
    # server a second slow is not an outage. /readyz asks with its own, shorter deadline (`quick`).
    DEADLINE_SECONDS = 10.0
    QUICK_SECONDS = 1.5

    def __init__(self, checks: Mapping[str, Callable[[], None]], append: Callable[..., object],
                 clock: Callable[[], datetime]) -> None:
        self.checks, self.append, self.clock = dict(checks), append, clock
        self.down: dict[str, Down] = {}
        self._lock = threading.Lock()

    def probe(self, quick: bool = False) -> dict[str, str]:
        """name -> "ok" or why not. `quick` (for /readyz): each check within QUICK_SECONDS; a check that
        merely takes longer is reported, but only a failure counts as a dependency going away."""
        results = run_checks(self.checks, self.QUICK_SECONDS if quick else self.DEADLINE_SECONDS)
        with self._lock:
            store_up = results.get(STATE_STORE) == "ok"
            for name, result in results.items():
                slow = quick and result.startswith("TimeoutError: no answer within")
                if result != "ok" and name not in self.down and not slow:
                    self._went_down(name, result, store_up)
            for name, result in results.items():
                if result == "ok" and name in self.down:
                    self._came_back(name)
            if store_up:  # losses seen while the store was down get their event now (already logged)
                for name, down in self.down.items():
                    if not down.recorded:
                        self._record_lost(name, down, quiet=True)
        return results

    def explains(self, exc: BaseException) -> bool:
        """True when `exc` is an outage error and a dependency is down (its line is already written):
        the caller then says nothing more about it. Probes only when no outage is known yet, so a job
        failing every poll during an outage does not run a probe each time."""
        if not is_outage_error(exc):
            return False
        if not self.down:
            self.probe()
        return bool(self.down)

    def _went_down(self, name: str, error: str, store_up: bool) -> None:
        down = self.down[name] = Down(self.clock(), error, recorded=False)
        if store_up:
            self._record_lost(name, down)
        else:  # the event log is what is down: the line now, the event when it is back
            log.warning("dependency.lost: %s is unreachable (%s); jobs that need it wait, and a line says when it "
                        "is back", name, error)

    def _record_lost(self, name: str, down: Down, quiet: bool = False) -> None:
        try:
            self.append(events.DEPENDENCY_LOST, f"{name} is unreachable ({down.error}); jobs that need it wait",
                        payload={"dependency": name, "since": down.since.isoformat(), "error": down.error},
                        quiet=quiet)
            down.recorded = True
        except Exception:  # noqa: BLE001 - the store went down between the probe and now: next probe
            log.debug("could not record the loss of %s yet", name, exc_info=True)

    def _came_back(self, name: str) -> None:
        down = self.down[name]
        seconds = (self.clock() - down.since).total_seconds()
        if not down.recorded:  # lost while the store was down: its line was written then, the event now
            self._record_lost(name, down, quiet=True)
            if not down.recorded:
                return
        try:
            self.append(events.DEPENDENCY_RESTORED, f"{name} is back after {seconds:.0f} s (was: {down.error})",
                        payload={"dependency": name, "since": down.since.isoformat(), "seconds": round(seconds, 1),
                                 "error": down.error})
        except Exception:  # noqa: BLE001 - not yet writable: try again at the next probe
            log.debug("could not record the return of %s yet", name, exc_info=True)
            return
        del self.down[name]
