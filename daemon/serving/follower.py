"""Follow the champion: poll where the alias points, load a new version beside the served one, swap.

The served model is one reference (`Follower.current`), replaced in a single assignment once the new
version is loaded and has answered a warm-up prediction; a batch that started on the old version
finishes on it (it holds its own reference), so no request fails or mixes versions during a swap. A
version that fails to load is not swapped in: the old one keeps serving, the failure is reported once
per version (`on_failure`), and the load is retried with a growing wait, not on every poll.

MLflow's `mlflow models serve` serves one fixed version until restarted; this is the missing piece.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

log = logging.getLogger(__name__)

WARM_UP = ["Warm-up text: the first request after a swap must not pay for lazy initialisation."]


@dataclass(frozen=True)
class Served:
    """One loaded version: what a batch predicts with."""

    version: str
    predictor: Any  # a retrain.evaluation.Predictor (anything with .labels and .predict(texts))
    loaded_at: float


class Follower:
    """`check()` once per `poll_seconds` on its own thread (`start()`), or by hand in tests."""

    RETRY_FIRST_SECONDS = 30.0
    RETRY_MAX_SECONDS = 600.0

    def __init__(self, alias_version: Callable[[], str | None], load: Callable[[str], Any], *,
                 poll_seconds: float = 10.0,
                 on_swap: Callable[[Served, Served | None], None] = lambda new, old: None,
                 on_failure: Callable[[str, BaseException], None] = lambda version, exc: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`alias_version`: where the followed alias points now (None: nowhere); `load`: a version's
        predictor (downloads and loads it; raises when it cannot)."""
        self.alias_version, self.load = alias_version, load
        self.poll_seconds = poll_seconds
        self.on_swap, self.on_failure = on_swap, on_failure
        self.clock = clock
        self.current: Served | None = None
        self.registry_error: str | None = None  # the last poll's error, None when the registry answered
        self.failing: dict[str, tuple[float, float]] = {}  # version -> (retry at, wait) after a failed load
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def ready(self) -> bool:
        return self.current is not None

    def check(self) -> bool:
        """One poll: True when a new version was swapped in."""
        try:
            wanted = self.alias_version()
        except Exception as exc:  # a registry outage: keep serving what is loaded
            if self.registry_error is None:
                log.warning("serve: cannot ask the registry where the champion is (%s); serving version %s on",
                            exc, self.current.version if self.current else "none")
            self.registry_error = str(exc)
            return False
        if self.registry_error is not None:
            log.info("serve: the registry answers again")
            self.registry_error = None
        if wanted is None or (self.current is not None and wanted == self.current.version):
            return False
        retry = self.failing.get(wanted)
        if retry is not None and self.clock() < retry[0]:
            return False
        try:
            predictor = self.load(wanted)
            predictor.predict(WARM_UP)
        except Exception as exc:
            wait = min(retry[1] * 2, self.RETRY_MAX_SECONDS) if retry else self.RETRY_FIRST_SECONDS
            self.failing[wanted] = (self.clock() + wait, wait)
            if retry is None:
                self.on_failure(wanted, exc)
            log.error("serve: version %s failed to load (%s: %s); still serving %s, next try in %.0f s", wanted,
                      type(exc).__name__, exc, self.current.version if self.current else "nothing", wait)
            return False
        old, self.current = self.current, Served(wanted, predictor, time.time())
        self.failing.pop(wanted, None)
        log.info("serve: now serving version %s%s", wanted, f" (was {old.version})" if old else "")
        self.on_swap(self.current, old)
        return True

    # -- the polling thread --------------------------------------------------------------------------
    def start(self) -> "Follower":
        self._thread = threading.Thread(target=self._run, name="cltool-serve-follow", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # the thread must outlive any one poll
                log.exception("serve: champion poll failed")
            self._stop.wait(self.poll_seconds)
