"""Batches that keep failing training are parked, so one poisonous batch cannot fail a cycle forever.

After `train.max_failures` training failures in a row on the same pending batches (the child crashed,
was killed or timed out, or training raised; an outage of MLflow or the store does not count), those
batches are set aside by a `batches.parked` event with the last error: the cycle job no longer picks
them, batches that arrive later are learned without them, `cltool status` lists them, the
`cltool_parked_batches` gauge (and the CltoolBatchesParked alert) and a webhook message say so.
`cltool retrain` unparks every parked batch (`batches.unparked`) and asks for a cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from daemon import events
from daemon.state.store import Batch, Event, StateStore

log = logging.getLogger(__name__)

_MARKS = (events.DECISION, events.BATCHES_PARKED, events.BATCHES_UNPARKED)


def parked(store: StateStore) -> dict[str, Event]:
    """batch id -> the `batches.parked` event that set it aside, for batches not unparked since."""
    out: dict[str, Event] = {}
    for event in store.events(types=[events.BATCHES_PARKED, events.BATCHES_UNPARKED]):
        for batch_id in event.payload.get("batches") or []:
            if event.type == events.BATCHES_PARKED:
                out[batch_id] = event
            else:
                out.pop(batch_id, None)
    return out


def pending(store: StateStore) -> list[Batch]:
    """The batches a cycle learns: pending (no decision consumed them) and not parked."""
    aside = parked(store)
    return [b for b in store.list_batches(pending=True) if b.batch_id not in aside]


def training_failures(store: StateStore, batch_ids: list[str]) -> int:
    """Training failures in a row on exactly `batch_ids`, since the last decision, park or unpark."""
    mark = max((e.id for e in (store.last_event(t) for t in _MARKS) if e is not None), default=None)
    failed = store.events(types=[events.CYCLE_FAILED], after_id=mark)
    same = sorted(batch_ids)
    return sum(1 for e in failed if e.payload.get("phase") == "training" and sorted(e.payload.get("batches") or []) == same)


def after_training_failure(store: StateStore, batches: list[Batch], error: str, limit: int,
                           notify: Callable[[dict[str, Any]], None] | None = None) -> Event | None:
    """Park `batches` once their training failed `limit` (train.max_failures) times in a row: the
    `batches.parked` event, else None."""
    ids = [b.batch_id for b in batches]
    failures = training_failures(store, ids)
    if failures < limit:
        log.warning("training failed on %d batch(es) (%d of train.max_failures %d): retried on the next trigger",
                    len(ids), failures, limit)
        return None
    reason = (f"training failed {failures} times in a row on these batches (train.max_failures {limit}); last "
              f"error: {error}. Fix the cause, then `cltool retrain` brings them back")
    event = store.append(events.BATCHES_PARKED, reason, payload={"batches": ids, "failures": failures,
                                                                     "error": error})
    if notify is not None:
        notify({"event": event.type, "batches": ids, "failures": failures, "error": error, "at": event.at.isoformat(),
                "text": f":no_entry: cltool parked {len(ids)} batch(es) after {failures} training failures in a row: "
                        f"{error}. `cltool status` lists them; `cltool retrain` unparks."})
    return event


def unpark(store: StateStore, actor: str, reason: str) -> list[str]:
    """Bring every parked batch back to pending; their ids (none: nothing written)."""
    ids = sorted(parked(store))
    if ids:
        store.append(events.BATCHES_UNPARKED, reason, actor=actor, payload={"batches": ids})
    return ids
