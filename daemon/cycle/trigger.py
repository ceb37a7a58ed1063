"""When to start a cycle: a pure function of what waits, the clock and explicit requests."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from daemon import events
from daemon.config import TriggerSection
from daemon.state.store import Batch, StateStore


@dataclass(frozen=True)
class TriggerVerdict:
    run: bool
    reason: str


def should_run(pending: list[Batch], *, requested_by: str | None, last_cycle_at: datetime | None,
               now: datetime, policy: TriggerSection, min_fresh_rows: int = 1) -> TriggerVerdict:
    """Run when asked, when enough new train rows wait, or when the interval has passed with rows waiting.

    Without a request, a cycle also needs `min_fresh_rows` new test rows: with fewer the gate could only
    say WAIT, so training would be wasted."""
    new_rows = sum(batch.n_train for batch in pending)
    fresh_rows = sum(batch.n_test for batch in pending)
    if requested_by:
        return TriggerVerdict(True, f"requested by {requested_by}")
    if not pending:
        return TriggerVerdict(False, "no new batches")
    if fresh_rows < min_fresh_rows:
        return TriggerVerdict(False, f"{fresh_rows} new test rows < gate.min_fresh_rows {min_fresh_rows}: "
                                     "waiting for more data")
    if new_rows >= policy.min_new_rows:
        return TriggerVerdict(True, f"{new_rows} new train rows >= trigger.min_new_rows {policy.min_new_rows}")
    if policy.interval_seconds > 0 and new_rows > 0:
        since = last_cycle_at or min(batch.received_at for batch in pending)
        waited = (now - since).total_seconds()
        if waited >= policy.interval_seconds:
            return TriggerVerdict(True, f"{new_rows} new train rows waited {waited:.0f}s >= "
                                        f"trigger.interval_seconds {policy.interval_seconds}")
    return TriggerVerdict(False, f"{new_rows} new train rows < trigger.min_new_rows {policy.min_new_rows}")


def retry_wait(failures: int, last_failed_at: datetime | None, now: datetime, policy: TriggerSection) -> float:
    """Seconds still to wait before retrying after `failures` failed cycles in a row (0: go): the
    backoff doubles from `retry_backoff_seconds` up to `retry_backoff_max_seconds`, so an outage or a
    poisonous batch costs a few tries an hour, not one every poll."""
    if failures <= 0 or last_failed_at is None:
        return 0.0
    backoff = min(policy.retry_backoff_seconds * 2 ** (failures - 1), policy.retry_backoff_max_seconds)
    return max(0.0, backoff - (now - last_failed_at).total_seconds())


def failures_in_a_row(store: StateStore) -> tuple[int, datetime | None]:
    """Failed cycles since the last decision, and when the last one failed."""
    decided = store.last_event(events.DECISION)
    failed = store.events(types=[events.CYCLE_FAILED], after_id=decided.id if decided else None)
    return len(failed), (failed[-1].at if failed else None)


def open_request(store: StateStore) -> str | None:
    """Who asked for the retrain that no cycle has started on yet (`retrain.requested` after the last
    `cycle.started`), or None. One rule for the cycle job and for the drift monitor, which must not
    stack a second request on one still waiting."""
    request = store.last_event(events.RETRAIN_REQUESTED)
    started = store.last_event(events.CYCLE_STARTED)
    if request is not None and (started is None or started.id < request.id):
        return request.actor
    return None
