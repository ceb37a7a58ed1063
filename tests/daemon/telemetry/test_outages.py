"""The outage watch: one line when a dependency goes, one when it returns, events in order, deadlines."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone

import sqlalchemy.exc

from daemon.telemetry.outages import Outages, is_outage_error, run_checks
from registry.errors import RegistryUnavailable


class Switch:
    def __init__(self, name: str) -> None:
        self.name, self.up = name, True

    def __call__(self) -> None:
        if not self.up:
            raise ConnectionRefusedError(f"{self.name} refused")


def watch():
    store, mlflow = Switch("store"), Switch("mlflow")
    written: list[tuple[str, dict, bool]] = []
    now = [datetime(2026, 1, 1, tzinfo=timezone.utc)]

    def append(type, reason="", *, payload=None, quiet=False):
        store()  # the event log is the store: down means it cannot be written
        written.append((type, payload, quiet))

    outages = Outages({"state_store": store, "mlflow": mlflow}, append, lambda: now[0])
    return outages, store, mlflow, written, now


def test_an_mlflow_outage_is_one_event_each_way(caplog):
    outages, _, mlflow, written, now = watch()
    outages.probe()
    mlflow.up = False
    for _ in range(5):
        outages.probe()
    now[0] += timedelta(seconds=42)
    mlflow.up = True
    outages.probe()
    outages.probe()
    assert [(t, p["dependency"]) for t, p, _ in written] == [("dependency.lost", "mlflow"),
                                                             ("dependency.restored", "mlflow")]
    assert written[1][1]["seconds"] == 42 and "refused" in written[1][1]["error"]


def test_a_store_outage_is_logged_when_it_starts_and_recorded_when_it_ends(caplog):
    outages, store, _, written, now = watch()
    store.up = False
    with caplog.at_level(logging.WARNING, logger="daemon.telemetry.outages"):
        for _ in range(5):
            outages.probe()
    assert len(caplog.records) == 1 and "state_store is unreachable" in caplog.records[0].getMessage()
    assert written == []
    now[0] += timedelta(seconds=60)
    store.up = True
    outages.probe()
    # The loss (logged already, so quiet) and then the return, in that order; nothing more after.
    assert [(t, quiet) for t, _, quiet in written] == [("dependency.lost", True), ("dependency.restored", False)]
    outages.probe()
    assert len(written) == 2 and outages.down == {}


def test_only_outage_errors_are_explained_by_an_outage():
    outages, store, _, _, _ = watch()
    refused = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused"))
    assert not outages.explains(refused)  # an outage error, but every dependency answers: say it
    store.up = False
    assert outages.explains(refused) and outages.explains(RegistryUnavailable("http://x", "down"))
    assert not outages.explains(ValueError("a bug is a bug, outage or not"))
    wrapped = RuntimeError("cycle failed")
    wrapped.__cause__ = ConnectionResetError("peer")
    assert is_outage_error(wrapped)


def test_a_hung_check_is_reported_within_its_deadline():
    release = threading.Event()
    started = time.monotonic()
    results = run_checks({"hung": lambda: release.wait(30), "fine": lambda: None}, deadline_seconds=0.3)
    release.set()
    assert time.monotonic() - started < 5
    assert results == {"hung": "TimeoutError: no answer within 0.3 s", "fine": "ok"}


def test_a_slow_answer_to_readyz_is_reported_but_is_not_an_outage(monkeypatch):
    monkeypatch.setattr(Outages, "QUICK_SECONDS", 0.1)
    written = []
    outages = Outages({"state_store": lambda: None, "mlflow": lambda: time.sleep(0.5)},
                      lambda type, reason="", **kw: written.append(type), lambda: datetime.now(timezone.utc))
    assert outages.probe(quick=True)["mlflow"].startswith("TimeoutError")  # /readyz says not ready...
    assert outages.down == {} and written == []  # ...but a busy server is not a lost one
    assert outages.probe()["mlflow"] == "ok"
