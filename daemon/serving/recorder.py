"""Record a sample of served texts for the live monitors, off the request path.

`add` only appends to a bounded queue (a request never waits on the database); one thread writes what
is queued every `flush_seconds`. When the store is down the rows wait in the queue; when the queue is
full the oldest are dropped and counted, so a long outage costs monitoring data, never serving.
"""

from __future__ import annotations

import logging
import random
import threading
from collections import deque
from datetime import datetime
from typing import Any, Callable

log = logging.getLogger(__name__)


class Recorder:
    def __init__(self, write: Callable[[list[dict[str, Any]]], object], sample_rate: float, *,
                 clock: Callable[[], datetime], flush_seconds: float = 1.0, max_queue: int = 50_000,
                 rng: random.Random | None = None) -> None:
        self.write, self.sample_rate, self.clock = write, sample_rate, clock
        self.flush_seconds, self.max_queue = flush_seconds, max_queue
        self.rng = rng or random.Random()  # noqa: S311 (sampling, not security)
        self.recorded = self.dropped = 0
        self._rows: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._failing = False
        self._thread: threading.Thread | None = None
        if sample_rate > 0:
            self._thread = threading.Thread(target=self._run, name="cltool-serve-recorder", daemon=True)
            self._thread.start()

    def add(self, version: str, source: str | None, texts: list[str], labels: list[str], probs: Any) -> None:
        """Queue the sampled share of one answered request."""
        if self.sample_rate <= 0:
            return
        at = self.clock()
        with self._lock:
            for text, row in zip(texts, probs):
                if self.sample_rate < 1 and self.rng.random() >= self.sample_rate:
                    continue
                best = int(row.argmax())
                if len(self._rows) >= self.max_queue:
                    self._rows.popleft()
                    self.dropped += 1
                self._rows.append({"at": at, "version": version, "source": source, "text": text,
                                   "label": labels[best], "score": float(row[best]),
                                   "scores": {label: round(float(p), 6) for label, p in zip(labels, row)}})

    def flush(self) -> int:
        """Write what is queued; on failure the rows go back to the front of the queue."""
        with self._lock:
            rows = list(self._rows)
            self._rows.clear()
        if not rows:
            return 0
        try:
            self.write(rows)
        except Exception as exc:
            with self._lock:
                room = max(self.max_queue - len(self._rows), 0)
                self.dropped += max(len(rows) - room, 0)
                self._rows.extendleft(reversed(rows[-room:] if room else []))
            if not self._failing:
                log.warning("serve: cannot record served texts (%s); holding up to %d in memory", exc,
                            self.max_queue)
            self._failing = True
            return 0
        if self._failing:
            log.info("serve: recording served texts again")
        self._failing = False
        self.recorded += len(rows)
        return len(rows)

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.flush_seconds):
            self.flush()
