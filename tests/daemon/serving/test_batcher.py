"""Dynamic batching: concurrent requests share a forward pass, each gets its own rows back, and a
request is answered by one version even while versions are swapped."""

from __future__ import annotations

import threading
import time

import pytest

from daemon.serving.batcher import Batcher, NotReadyError
from daemon.serving.follower import Served
from tests.concurrency import threads
from tests.daemon.serving.conftest import LABELS, FakePredictor


def test_concurrent_requests_are_batched_and_answered_in_order():
    slow = FakePredictor("1", delay=0.2)
    served = Served("1", slow, 0.0)
    batcher = Batcher(lambda: served, max_batch=64, max_wait=0.01)
    try:
        first = batcher.submit(["a"])  # occupies the model for 0.2 s ...
        time.sleep(0.1)
        later = [batcher.submit([f"t{i}", f"u{i}"]) for i in range(5)]  # ... while these queue up
        answers = [f.result(timeout=10) for f in [first, *later]]
    finally:
        batcher.close()
    assert slow.calls == [1, 10]  # the five waiting requests went through as one pass of 10 texts
    assert all(a.version == "1" and a.labels == LABELS for a in answers)
    assert [len(a.probs) for a in answers] == [1, 2, 2, 2, 2, 2]


def test_no_version_loaded_is_not_ready():
    batcher = Batcher(lambda: None)
    try:
        with pytest.raises(NotReadyError, match="no model is loaded yet"):
            batcher.submit(["x"]).result(timeout=10)
    finally:
        batcher.close()


def test_swaps_under_load_never_fail_a_request_nor_mix_versions():
    current = {"served": Served("1", FakePredictor("1", delay=0.001), 0.0)}
    batcher = Batcher(lambda: current["served"], max_batch=16, max_wait=0.001)
    stop, results, errors = threading.Event(), [], []

    def client():
        while not stop.is_set():
            try:
                answer = batcher.submit(["a", "b", "c"]).result(timeout=10)
                winners = {int(row.argmax()) for row in answer.probs}
                results.append((answer.version, winners))
            except Exception as exc:  # noqa: BLE001 (any failure is the finding)
                errors.append(exc)

    with threads(client, 4):
        for version in ("2", "3", "4", "5"):
            time.sleep(0.05)
            current["served"] = Served(version, FakePredictor(version, delay=0.001), 0.0)
        time.sleep(0.05)
        stop.set()
    batcher.close()
    assert not errors
    assert {v for v, _ in results} == {"1", "2", "3", "4", "5"}
    # Every answer's rows came from the version it names (version N picks class N % 3).
    assert all(winners == {int(v) % 3} for v, winners in results)
