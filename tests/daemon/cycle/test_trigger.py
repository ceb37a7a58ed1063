from __future__ import annotations

from datetime import datetime, timedelta, timezone

from daemon.config import TriggerSection
from daemon.state.store import Batch

NOW = datetime(2026, 1, 1, 12, tzinfo=timezone.utc)


def batch(n_train: int, n_test: int = 30, age_s: int = 0) -> Batch:
    return Batch(1, "b", "f.csv", "x", NOW - timedelta(seconds=age_s), 0, 0, 0, 0, n_train, 0, n_test, {}, None)


def run(pending, requested=None, last=None, min_new=100, interval=3600, fresh=20):
    from daemon.cycle.trigger import should_run

    return should_run(pending, requested_by=requested, last_cycle_at=last, now=NOW,
                      policy=TriggerSection(min_new_rows=min_new, interval_seconds=interval), min_fresh_rows=fresh)


def test_row_count_triggers():
    assert run([batch(60), batch(50)]).run
    verdict = run([batch(60)])
    assert not verdict.run and "60 new train rows < trigger.min_new_rows 100" in verdict.reason


def test_interval_triggers_only_with_rows_waiting():
    assert run([batch(10, age_s=4000)]).run
    assert not run([batch(10, age_s=100)]).run
    assert not run([batch(10, age_s=4000)], interval=0).run
    assert not run([], last=NOW - timedelta(days=3)).run


def test_request_wins_and_too_few_test_rows_wait():
    assert run([], requested="alice").reason == "requested by alice"
    verdict = run([batch(500, n_test=5)])
    assert not verdict.run and "waiting for more data" in verdict.reason


def test_failed_cycles_are_retried_with_a_doubling_backoff():
    from daemon.cycle.trigger import retry_wait

    policy = TriggerSection(retry_backoff_seconds=30, retry_backoff_max_seconds=100)
    assert retry_wait(0, None, NOW, policy) == 0
    assert retry_wait(1, NOW, NOW, policy) == 30 and retry_wait(1, NOW - timedelta(seconds=31), NOW, policy) == 0
    assert retry_wait(2, NOW - timedelta(seconds=10), NOW, policy) == 50  # 60 s after the second failure
    assert retry_wait(5, NOW, NOW, policy) == 100  # capped


def test_failures_in_a_row_count_since_the_last_decision(store):
    from daemon.cycle.trigger import failures_in_a_row

    assert failures_in_a_row(store) == (0, None)
    store.append("cycle.failed", "OperationalError: down")
    store.append("decision", "PROMOTE: ok")
    assert failures_in_a_row(store) == (0, None)
    store.append("cycle.failed", "a")
    last = store.append("cycle.failed", "b")
    assert failures_in_a_row(store) == (2, last.at)
