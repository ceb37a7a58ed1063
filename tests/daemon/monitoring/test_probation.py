"""Automatic rollback: a planted bad champion is rolled back after `watch.strikes` bad checks."""

from __future__ import annotations

import pytest

from daemon.context import open_context
from daemon.cycle.run import maybe_run
from daemon.monitoring import probation as watch
from retrain.modeling import build_tiny_model
from tests.daemon.conftest import write_csv
from tests.daemon.cycle.test_cycle import LABELS, cycle_settings, tiny_base, toy_rows  # noqa: F401 (fixture)


@pytest.fixture
def ctx(tmp_path, tiny_base):
    settings = cycle_settings(
        tmp_path, tiny_base,
        trigger={"min_new_rows": 100000, "interval_seconds": 0},  # no cycles unless asked: only the watch acts
        watch={"min_rows": 60, "strikes": 2, "max_rows": 5000},
    )
    return open_context(settings, owner="test")


def plant(ctx, tmp_path) -> str:
    """Register an untrained model and force it into production, as a bad manual promotion would."""
    bad = build_tiny_model(tmp_path / "bad", LABELS, seed=99)
    version = ctx.registry.log_candidate(model_dir=bad, run_name="planted", params={}, metrics={},
                                         tags={"cltool.decision": "REJECT"}, json_artifacts={}).version
    ctx.keeper.promote(version, "planted bad model", actor="test", force=True)
    return version


def test_planted_bad_champion_is_rolled_back_with_hysteresis(ctx, tmp_path):
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(300)))
    ctx.store.append("retrain.requested", "bootstrap", actor="test")
    assert maybe_run(ctx).outcome == "PROMOTE"
    bad = plant(ctx, tmp_path)
    assert ctx.keeper.alias_version("champion") == bad

    ctx.inbox.ingest_copy(write_csv(tmp_path / "b.csv", toy_rows(90, start=2000)))
    first = watch.check(ctx)
    assert first.action == "strike" and first.strikes == 1 and first.high < 0
    assert ctx.keeper.alias_version("champion") == bad  # one bad check is not enough (hysteresis)
    assert watch.check(ctx) is None  # nothing new scored twice

    ctx.inbox.ingest_copy(write_csv(tmp_path / "c.csv", toy_rows(90, start=3000)))
    second = watch.check(ctx)
    assert second.action == "rolled_back" and second.strikes == 2
    assert ctx.keeper.alias_version("champion") == "1"
    rollback = ctx.store.last_event("rollback")
    assert rollback.actor == watch.AUTO_ROLLBACK_ACTOR and "significantly worse" in rollback.reason
    assert ctx.registry.get_version(bad).tags["cltool.auto_rolled_back"] == "true"
    assert watch.probation(ctx) is None  # a rollback opens no probation: no flapping back


def test_a_good_promotion_passes_probation(ctx, tmp_path):
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(300)))
    ctx.store.append("retrain.requested", "bootstrap", actor="test")
    assert maybe_run(ctx).outcome == "PROMOTE"
    # A second version as good as the first (the same weights), promoted by hand.
    same = ctx.registry.log_candidate(model_dir=ctx.models.path("1"), run_name="same", params={}, metrics={},
                                      tags={"cltool.decision": "PROMOTE"}, json_artifacts={}).version
    ctx.keeper.promote(same, "equal model", actor="test")
    ctx.settings.watch.max_rows = 100
    ctx.inbox.ingest_copy(write_csv(tmp_path / "b.csv", toy_rows(120, start=9000)))
    verdict = watch.check(ctx)
    assert verdict.action == "passed" and verdict.strikes == 0 and verdict.gain == 0.0
    assert ctx.keeper.alias_version("champion") == same
    assert ctx.store.last_event("watch.passed").version == same
    assert watch.probation(ctx) is None


def test_the_watch_and_the_drift_monitor_load_each_model_once(ctx, tmp_path, monkeypatch):
    import retrain.evaluation
    from daemon.monitoring.drift_pass import DriftMonitor

    loads = []
    real = retrain.evaluation.Predictor

    class Counting(real):
        def __init__(self, model_dir, **kwargs):
            loads.append((model_dir.name, kwargs.get("device")))
            super().__init__(model_dir, **kwargs)

    monkeypatch.setattr(retrain.evaluation, "Predictor", Counting)
    ctx.settings.train.device = "cpu"
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(300)))
    ctx.store.append("retrain.requested", "bootstrap", actor="test")
    assert maybe_run(ctx).outcome == "PROMOTE"
    bad = plant(ctx, tmp_path)
    loads.clear()
    monitor = DriftMonitor(ctx)
    for n, start in ((90, 2000), (40, 3000)):
        ctx.inbox.ingest_copy(write_csv(tmp_path / f"{start}.csv", toy_rows(n, start=start)))
        assert watch.check(ctx) is not None
        monitor.check()
    # Two checks (two strikes: a rollback) and two drift scorings, yet one load of the champion and one of the version it replaced,
    # on the configured device.
    assert loads == [(f"v{bad}", "cpu"), ("v1", "cpu")]
    scored = ctx.store.events(types=["drift.scored"])
    # The monitor scored with the champion: the planted one, then v1 once the second strike rolled it back.
    assert [(e.version, "mean_confidence" in e.payload) for e in scored] == [(bad, True), ("1", True)]
    assert ctx.keeper.alias_version("champion") == "1"
    # Two models are kept: a third version pushes out the least recently used one.
    ctx.predictor(bad)
    third = ctx.registry.log_candidate(model_dir=ctx.models.path("1"), run_name="third", params={}, metrics={},
                                       tags={}, json_artifacts={}).version
    ctx.predictor(third)
    ctx.predictor(bad)
    ctx.predictor("1")
    assert [name for name, _ in loads] == [f"v{bad}", "v1", f"v{third}", "v1"]


def test_models_unused_for_keep_loaded_seconds_are_released_and_reloaded_when_needed(ctx, tmp_path, monkeypatch):
    import retrain.evaluation

    from daemon.service import Daemon

    loads = []
    real = retrain.evaluation.Predictor

    class Counting(real):
        def __init__(self, model_dir, **kwargs):
            loads.append(model_dir.name)
            super().__init__(model_dir, **kwargs)

    monkeypatch.setattr(retrain.evaluation, "Predictor", Counting)
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(300)))
    ctx.store.append("retrain.requested", "bootstrap", actor="test")
    assert maybe_run(ctx).outcome == "PROMOTE"
    ctx.predictor("1")
    assert ctx.loaded_models() == ["1"]
    assert ctx.release_idle_models(3600) == [] and ctx.loaded_models() == ["1"]  # used just now: kept
    assert ctx.release_idle_models(0) == ["1"] and ctx.loaded_models() == []
    loads.clear()
    ctx.predictor("1")
    assert loads == ["v1"]  # loaded again when a job needs it

    # The daemon's cycle job releases what it left unused for model.keep_loaded_seconds.
    service = Daemon(ctx)
    ctx.settings.model.keep_loaded_seconds = 3600
    service.cycle()
    assert ctx.loaded_models() == ["1"]
    ctx.settings.model.keep_loaded_seconds = 0
    service.cycle()
    assert ctx.loaded_models() == []
