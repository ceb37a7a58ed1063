"""Drift monitoring in-process on a tiny model with a real MLflow (SQLite in tmp_path): each batch is
scored once against the champion's data, alerts open and close with hysteresis (surviving a restart),
a retrain is requested, and `cltool drift` shows it."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from daemon.cli.main import cli
from daemon.config import load_settings
from daemon.context import open_context
from daemon.cycle.run import maybe_run
from daemon.monitoring.drift_pass import (
    CLOSED,
    DRIFT_ACTOR,
    OPENED,
    SCORED,
    SKIPPED,
    DriftMonitor,
    drift_report,
)
from daemon.service import Daemon
from tests.daemon.conftest import write_csv
from tests.daemon.cycle.test_cycle import LABELS, cycle_settings, tiny_base  # noqa: F401 (fixture)

WORDS = {"negative": ["plunge", "loss"], "neutral": ["meeting", "held"], "positive": ["soar", "profit"]}
FILLER = "shares market firm quarter report today stock group".split()


def rows(n: int, start: int, mix=(1, 1, 1)) -> list[tuple[str, str]]:
    """n distinct rows; `mix` weights negative/neutral/positive. Texts keep one shape (5-digit ids) so
    only the labels differ between a normal and a shifted batch."""
    rng = random.Random(start)
    labels = rng.choices(LABELS, weights=mix, k=n)
    return [(f"{rng.choice(WORDS[label])} {' '.join(rng.sample(FILLER, 2))} item {start + i:05d}", label)
            for i, label in enumerate(labels)]


@pytest.fixture
def ctx(tmp_path, tiny_base):
    settings = cycle_settings(
        tmp_path, tiny_base,
        train={"epochs": 2, "batch_size": 16, "learning_rate": 0.002, "early_stopping_patience": 0},
        trigger={"min_new_rows": 100000, "interval_seconds": 0},  # no cycles unless asked
        drift={"open_after": 2, "close_after": 2, "min_reference_rows": 20, "mmd_permutations": 100},
        watch={"enabled": False},
    )
    return open_context(settings, owner="test")


def ingest(ctx, tmp_path, name, data):
    result = ctx.inbox.ingest_copy(write_csv(tmp_path / name, data))
    assert result.status == "accepted", result.reason
    return result.batch.batch_id


def by_detector(event):
    return {r["detector"]: r for r in event.payload["results"]}


def test_alert_opens_after_k_drifted_batches_closes_after_k_clean_and_survives_a_restart(ctx, tmp_path):
    sent = []
    monitor = DriftMonitor(ctx, notify=sent.append)

    first = ingest(ctx, tmp_path, "a.csv", rows(300, 0))
    [skipped] = monitor.check()
    assert skipped.type == SKIPPED and skipped.batch_id == first and "no champion" in skipped.reason
    assert monitor.check() == []  # remembered: not looked at twice
    ctx.store.append("retrain.requested", "bootstrap", actor="test")
    assert maybe_run(ctx).outcome == "PROMOTE"

    normal = ingest(ctx, tmp_path, "b.csv", rows(120, 10000))
    [clean] = monitor.check()
    assert (clean.type, clean.batch_id, clean.version) == (SCORED, normal, "1")
    results = by_detector(clean)
    assert set(results) == {"live_performance", "label_mix", "prediction_mix", "embedding_mmd", "text_stats",
                            "negative_surge"}
    assert not results["label_mix"]["drifted"] and not results["negative_surge"]["drifted"]
    assert clean.payload["reference"]["mode"] == "champion" and clean.payload["reference"]["rows"] > 200
    assert 0 <= results["live_performance"]["details"]["live_macro_f1"] <= 1

    surge = (6, 1, 1)  # three quarters negative
    ingest(ctx, tmp_path, "c.csv", rows(120, 20000, surge))
    [once] = monitor.check()
    assert by_detector(once)["negative_surge"]["drifted"] and by_detector(once)["label_mix"]["drifted"]
    assert by_detector(once)["negative_surge"]["alert"] == "ok"  # one drifted batch opens nothing
    # (The tiny model's embedding MMD may drift on b and c alike, and open: it is not what this test is about.)
    assert not [e for e in ctx.store.events(types=[OPENED]) if e.payload["detector"] in ("negative_surge", "label_mix")]

    twice = ingest(ctx, tmp_path, "d.csv", rows(120, 30000, surge))
    [event] = monitor.check()
    assert by_detector(event)["negative_surge"]["alert"] == "open"
    assert by_detector(event)["negative_surge"]["severity"] == "critical"
    opened = {e.payload["detector"]: e for e in ctx.store.events(types=[OPENED])}
    assert {"negative_surge", "label_mix"} <= set(opened) and opened["label_mix"].batch_id == twice
    assert {m["detector"] for m in sent} >= {"negative_surge", "label_mix"}
    message = next(m for m in sent if m["detector"] == "negative_surge")
    assert message["event"] == OPENED and "OPENED" in message["text"] and message["batch_id"] == twice
    request = ctx.store.last_event("retrain.requested")
    # One request while one is open: it names the first alert that opened (the surge, or the tiny model's MMD).
    assert request.actor == DRIFT_ACTOR and any(f"opened: {name}" in request.reason for name in opened)

    # A restart: a new monitor picks the alert state up from the event log.
    restarted = DriftMonitor(ctx, notify=sent.append)
    ingest(ctx, tmp_path, "e.csv", rows(120, 40000))
    [still] = restarted.check()
    assert by_detector(still)["negative_surge"]["alert"] == "open"  # one clean batch closes nothing
    last = ingest(ctx, tmp_path, "f.csv", rows(120, 50000))
    restarted.check()
    closed = {e.payload["detector"]: e for e in ctx.store.events(types=[CLOSED])}
    assert {"negative_surge", "label_mix"} <= set(closed) and closed["negative_surge"].batch_id == last
    assert any(m["event"] == CLOSED and m["detector"] == "negative_surge" for m in sent)
    assert len(ctx.store.events(types=["retrain.requested"])) == 2  # bootstrap + one drift request

    # Every batch has exactly one verdict.
    verdicts = [e.batch_id for e in ctx.store.events(types=[SCORED, SKIPPED])]
    assert sorted(verdicts) == sorted(b.batch_id for b in ctx.store.list_batches())

    report = drift_report(ctx, [twice, last])
    assert [b["batch_id"] for b in report["batches"]] == [twice, last]
    assert {(a["event"], a["detector"]) for a in report["alerts"]} >= {(OPENED, "negative_surge"),
                                                                        (CLOSED, "negative_surge")}
    assert drift_report(ctx, ["no-such-batch"]) is None
    json.dumps(report)  # goes into MLflow as a JSON artifact

    # `cltool drift` on that state: JSON for scripts, and the PNG timeline.
    png = tmp_path / "timeline.png"
    base = ["--state-dir", str(ctx.settings.state_dir), "--inbox-dir", str(ctx.settings.inbox_dir)]
    out = CliRunner().invoke(cli, [*base, "drift", "--json", "--plot", str(png)])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["scored_batches"] == 5 and data["plot"] == str(png)
    assert data["detectors"]["negative_surge"]["alert"] == "ok"
    assert data["detectors"]["negative_surge"]["threshold"] == pytest.approx(0.10)
    assert [t["results"]["negative_surge"]["alert"] for t in data["timeline"]] == ["ok", "ok", "open", "open", "ok"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = CliRunner().invoke(cli, [*base, "drift", "--since", "1h"])
    assert text.exit_code == 0 and "negative_surge" in text.output and "timeline:" in text.output
    assert (ctx.settings.state_dir / "drift-timeline.png").is_file()
    later = CliRunner().invoke(cli, [*base, "drift", "--json", "--since", "2999-01-01"])
    assert json.loads(later.output)["scored_batches"] == 0 and json.loads(later.output)["plot"] is None
    bad = CliRunner().invoke(cli, [*base, "drift", "--since", "last tuesday"])
    assert bad.exit_code == 2 and "30m, 12h, 7d" in bad.output


def test_rolling_reference_without_a_champion_runs_the_label_monitors(tmp_path):
    settings = load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"),
                             drift={"reference": "rolling", "window_batches": 2, "min_reference_rows": 20})
    ctx = open_context(settings, owner="test")
    monitor = DriftMonitor(ctx)
    ingest(ctx, tmp_path, "a.csv", rows(100, 0))
    [first] = monitor.check()
    assert first.type == SKIPPED and "min_reference_rows" in first.reason  # nothing before it
    ingest(ctx, tmp_path, "b.csv", rows(100, 1000))
    ingest(ctx, tmp_path, "c.csv", rows(100, 2000, (0, 1, 0)))  # all neutral
    second, third = monitor.check()
    assert not by_detector(second)["label_mix"]["drifted"]
    assert by_detector(third)["label_mix"]["drifted"]
    assert third.payload["reference"]["batches"] == 2 and third.version is None
    assert set(third.payload["skipped"]) == {"live_performance", "prediction_mix", "embedding_mmd"}


def test_disabled_monitor_scores_nothing(tmp_path):
    settings = load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"),
                             drift={"enabled": False})
    ctx = open_context(settings, owner="test")
    ingest(ctx, tmp_path, "a.csv", rows(50, 0))
    assert DriftMonitor(ctx).check() == []


def test_the_daemon_scores_a_batch_before_a_cycle_takes_it_and_holds_the_inbox_meanwhile(ctx, tmp_path):
    daemon = Daemon(ctx)
    daemon.ctx.inbox.settle_seconds = 0
    write_csv(ctx.settings.inbox_dir / "a.csv", rows(120, 0))
    with daemon.intake:  # as while the cycle job scores and trains
        daemon.poll_inbox()
        assert (ctx.settings.inbox_dir / "a.csv").exists() and not ctx.store.list_batches()
    daemon.poll_inbox()
    [batch] = ctx.store.list_batches()
    ctx.store.append("retrain.requested", "go", actor="test")
    daemon.cycle()
    verdict = ctx.store.last_event(SKIPPED)
    started = ctx.store.last_event("cycle.started")
    assert verdict.batch_id == batch.batch_id and started is not None and verdict.id < started.id


def test_a_batch_recorded_after_the_drift_pass_is_still_scored_before_the_cycle_learns_it(ctx, tmp_path):
    daemon = Daemon(ctx)
    first = ingest(ctx, tmp_path, "a.csv", rows(60, 0))
    ctx.store.append("retrain.requested", "go", actor="test")
    check = daemon.drift_monitor.check
    late: list[str] = []

    def check_then_a_cli_ingest_lands():
        verdicts = check()
        if not late:  # `cltool ingest` in another process, right after the daemon's drift pass
            late.append(ingest(ctx, tmp_path, "b.csv", rows(60, 500)))
        return verdicts

    daemon.drift_monitor.check = check_then_a_cli_ingest_lands
    daemon.cycle()
    started = ctx.store.last_event("cycle.started")
    assert started is not None and set(started.payload["batches"]) == {first, late[0]}
    verdicts = {e.batch_id: e.id for e in ctx.store.events(types=[SCORED, SKIPPED])}
    assert all(verdicts[b] < started.id for b in (first, late[0])), "a batch was learned before its verdict"
