"""Where an update's time goes: the phases of a real cycle in its MLflow run, its event and `cltool status`."""

from __future__ import annotations

import os
import time

import mlflow
import pytest

from daemon.cli.status import collect, render
from daemon.context import open_context
from daemon.cycle.run import maybe_run
from daemon.cycle.timing import PHASES, Timings
from tests.daemon.conftest import write_csv
from tests.daemon.cycle.test_cycle import cycle_settings, tiny_base, toy_rows  # noqa: F401 (a fixture)


def test_laps_end_the_phase_before_them_and_add_up(monkeypatch):
    now = iter([0.0, 2.0, 2.0, 5.0, 5.0, 6.0])
    monkeypatch.setattr(time, "perf_counter", lambda: next(now))
    timings = Timings()
    timings.enter("train")  # 0
    timings.enter("evaluate")  # 2: train took 2 s
    timings.stop()  # 5: evaluate took 3 s
    timings.stop()  # nothing open: no clock read
    timings.enter("train")  # 5
    timings.stop()  # 6: train again, 1 s more
    assert timings.seconds == {"train": 3.0, "evaluate": 3.0}
    metrics = timings.metrics({"waited_seconds": 4.0, "ingest_seconds": 0.5, "last_recorded_at": timings.started - 7})
    assert metrics["timing.train_seconds"] == 3.0 and metrics["timing.waited_seconds"] == 4.0
    assert metrics["timing.queued_seconds"] == pytest.approx(7.0, abs=0.01)
    assert "timing.cycle_seconds" not in metrics  # only once the cycle has finished


def test_a_cycle_logs_its_phases_to_mlflow_its_event_and_status(tmp_path, tiny_base):  # noqa: F811
    ctx = open_context(cycle_settings(tmp_path, tiny_base), owner="test")
    landed = ctx.settings.inbox_dir / "a.csv"
    write_csv(landed, toy_rows(200))
    os.utime(landed, (time.time() - 30, time.time() - 30))  # it landed 30 s ago
    ctx.inbox.take_all()
    result = maybe_run(ctx, before_training=lambda: time.sleep(0.2))  # the drift pass
    assert result.outcome == "PROMOTE"

    info = ctx.registry.get_version(result.version)
    run = mlflow.MlflowClient(ctx.settings.tracking_uri).get_run(info.run_id)
    logged = run.data.metrics
    for phase in PHASES:  # the phases before registration with the run, the rest added after the alias moved
        assert logged[f"timing.{phase}_seconds"] >= 0, phase
    assert logged["timing.drift_seconds"] >= 0.2
    assert logged["timing.train_seconds"] > 0 and logged["timing.waited_seconds"] >= 29
    assert logged["timing.landed_to_decision_seconds"] >= 30 + logged["timing.train_seconds"]
    assert logged["timing.cycle_seconds"] >= sum(logged[f"timing.{p}_seconds"] for p in PHASES) - 0.01

    finished = ctx.store.last_event("cycle.finished")
    assert finished.payload["timing"]["timing.landed_to_decision_seconds"] == logged["timing.landed_to_decision_seconds"]
    data = collect(ctx)
    assert data["last_cycle"]["version"] == result.version and data["last_cycle"]["outcome"] == "PROMOTE"
    assert data["last_cycle"]["timing"] == finished.payload["timing"]
    line = next(line for line in render(data).splitlines() if line.startswith("last cycle:"))
    assert "from the file landing to the decision" in line and "train" in line and "alias" in line
