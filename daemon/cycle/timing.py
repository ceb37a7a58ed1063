"""Where an update's time goes, from a file landing in the inbox to the alias move that serves it.

A cycle measures its phases (drift, prepare, train, evaluate, register, alias) with `Timings`; the
batches' own ingest events say when their files landed and how long they waited and took to validate.
All of it is logged as `timing.*` metrics of the cycle's MLflow run, kept in the `cycle.finished` event
and shown by `cltool status --json` (`last_cycle.timing`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from daemon import events
from daemon.state.store import Batch, StateStore

# Measured by the cycle itself, in this order (a WAIT without training has only the first).
PHASES = ("drift", "prepare", "train", "evaluate", "register", "alias")
# Everything a finished cycle reports, from the file's landing on: its ingest figures, then the phases.
REPORTED = ("waited", "ingest", "queued", *PHASES)


class Timings:
    """Seconds per phase of one cycle, like a stopwatch's laps: `enter(name)` ends the phase before it
    (a phase entered twice adds up); `stop()` ends the last. `started`: when the cycle began (epoch)."""

    def __init__(self) -> None:
        self.started = time.time()
        self.seconds: dict[str, float] = {}
        self._open: tuple[str, float] | None = None

    def enter(self, name: str) -> None:
        self.stop()
        self._open = (name, time.perf_counter())

    def stop(self) -> None:
        if self._open is not None:
            name, began = self._open
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began
            self._open = None

    def metrics(self, landing: dict[str, float], *, finished: bool = False) -> dict[str, float]:
        """`timing.<phase>_seconds` for the phases ended so far, the batches' ingest figures and, once the
        cycle has `finished` (the alias moved), the whole cycle and the time from the first file's landing."""
        out = {f"timing.{name}_seconds": round(value, 3) for name, value in self.seconds.items()}
        for key in ("waited_seconds", "ingest_seconds"):
            if key in landing:
                out[f"timing.{key}"] = landing[key]
        if "last_recorded_at" in landing:
            out["timing.queued_seconds"] = round(max(0.0, self.started - landing["last_recorded_at"]), 3)
        if finished:
            now = time.time()
            out["timing.cycle_seconds"] = round(now - self.started, 3)
            if "first_landed_at" in landing:
                out["timing.landed_to_decision_seconds"] = round(now - landing["first_landed_at"], 3)
        return out


def landing(store: StateStore, batches: Sequence[Batch]) -> dict[str, Any]:
    """What the batches' `ingest.accepted` events say: the first file's landing time, the longest wait in
    the inbox, the validation time of them all, and when the last of them was recorded (epoch seconds).
    Batches recorded before these figures existed are left out."""
    accepted = store.events(types=[events.INGEST_ACCEPTED], batch_ids=[b.batch_id for b in batches])
    timed = [(e.payload["timing"], e.at.timestamp()) for e in accepted if "timing" in e.payload]
    if not timed:
        return {}
    return {"first_landed_at": min(t["landed_at"] for t, _ in timed),
            "waited_seconds": max(t["waited_seconds"] for t, _ in timed),
            "ingest_seconds": round(sum(t["ingest_seconds"] for t, _ in timed), 3),
            "last_recorded_at": max(at for _, at in timed)}
