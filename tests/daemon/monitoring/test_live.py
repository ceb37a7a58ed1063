"""The live monitors on recorded served traffic (a real SQLite state store, a fake registry): a surge of
negative predictions per source opens and closes with hysteresis and survives a restart, thin sources are
not scored, the label-free estimate uses the champion's temperature, and old traffic is deleted."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import numpy as np
import pytest

from daemon import events
from daemon.context import Context
from daemon.monitoring.live import ALL, LiveMonitor
from daemon.state import traffic
from daemon.telemetry import Metrics

T0 = datetime(2026, 12, 1, 0, 0, tzinfo=timezone.utc)
LABELS = ["negative", "neutral", "positive"]


class Registry:
    def __init__(self, version="4", metrics=None):
        self.champion = SimpleNamespace(version=version, metrics=metrics or {})

    def get_alias(self, alias):
        return self.champion


@pytest.fixture
def ctx(settings, store):
    settings.serve.live_window_minutes = 60
    settings.serve.live_baseline_hours = 24
    return Context(settings, store, Registry(metrics={"calibration.temperature": 1.0}), keeper=None, inbox=None,
                   owner="test")


def serve(store, at, source, n, negative_share, version="4", rng=np.random.default_rng(0)):
    rows = []
    for i in range(n):
        label = "negative" if i < round(n * negative_share) else LABELS[1 + i % 2]
        p = {name: 0.1 for name in LABELS}
        p[label] = 0.8
        rows.append({"at": at + timedelta(seconds=i), "version": version, "source": source, "text": f"{source} {i}",
                     "label": label, "score": 0.8, "scores": p})
    traffic.record(store, rows)


def surge_on_wire(store, negative_share):
    """Three calm hours of "wire" traffic (20 % negative), then, half an hour before the hour returned,
    a window with `negative_share` negative."""
    for hour in range(3):
        serve(store, T0 + timedelta(hours=hour), "wire", 100, 0.2)
    now = T0 + timedelta(hours=4)
    serve(store, now - timedelta(minutes=30), "wire", 100, negative_share)
    return now


def test_a_negative_surge_on_one_source_opens_after_two_checks_and_closes_after_calm(ctx, store):
    sent = []
    monitor = LiveMonitor(ctx, notify=sent.append)
    for hour in range(6):  # the baseline: 20 % negative on both sources
        serve(store, T0 + timedelta(hours=hour), "wire", 100, 0.2)
        serve(store, T0 + timedelta(hours=hour), "blog", 100, 0.2)
    now = T0 + timedelta(hours=7)
    serve(store, now - timedelta(minutes=50), "wire", 100, 0.6)  # wire turns negative, blog does not
    serve(store, now - timedelta(minutes=50), "blog", 100, 0.2)
    first = monitor.check(now)
    assert first.type == events.LIVE_SCORED
    wire, blog = first.payload["sources"]["wire"], first.payload["sources"]["blog"]
    assert wire["surging"] and wire["alert"] == "ok"  # one surging check is not an alert yet
    assert wire["share"] == pytest.approx(0.6) and wire["baseline_share"] == pytest.approx(0.2)
    assert not blog["surging"] and first.payload["sources"][ALL]["rows"] == 200

    second = monitor.check(now + timedelta(minutes=5))
    assert second.payload["sources"]["wire"]["alert"] == "open"
    assert second.payload["sources"]["blog"]["alert"] == "ok"
    # wire surged, and so did all sources together (40 % against 20 %): a market-wide alert too.
    opened = {e.payload["source"]: e for e in store.events(types=[events.LIVE_SURGE_OPENED])}
    assert set(opened) == {"wire", ALL} and "negative news from wire at 60%" in opened["wire"].reason
    assert [(m["event"], m["source"]) for m in sent] == [(events.LIVE_SURGE_OPENED, ALL),
                                                         (events.LIVE_SURGE_OPENED, "wire")]

    metrics = Metrics()
    metrics.served_traffic(second.payload)
    text = metrics.registry.get_sample_value
    assert text("cltool_served_surge_open", {"source": "wire"}) == 1
    assert text("cltool_served_surge_open", {"source": "blog"}) == 0
    assert text("cltool_served_surge_share", {"source": "wire"}) == pytest.approx(0.6)

    # A restarted daemon resumes the open alert, and calm traffic closes it after close_after checks.
    monitor = LiveMonitor(ctx, notify=sent.append)
    later = now + timedelta(hours=3)
    serve(store, later - timedelta(minutes=50), "wire", 100, 0.2)
    serve(store, later - timedelta(minutes=50), "blog", 100, 0.2)
    readings = [monitor.check(later + timedelta(minutes=5 * k)) for k in range(ctx.settings.drift.close_after)]
    assert [r.payload["sources"]["wire"]["alert"] for r in readings][-1] == "ok"
    assert all(r.payload["sources"]["wire"]["alert"] == "open" for r in readings[:-1])
    assert {e.payload["source"] for e in store.events(types=[events.LIVE_SURGE_CLOSED])} == {"wire", ALL}
    assert [m["event"] for m in sent][2:] == [events.LIVE_SURGE_CLOSED] * 2


def test_thin_sources_are_not_scored_and_an_empty_window_writes_nothing(ctx, store):
    monitor = LiveMonitor(ctx)
    assert monitor.check(T0) is None  # nothing served
    serve(store, T0 - timedelta(hours=5), "wire", 100, 0.2)
    serve(store, T0 - timedelta(minutes=30), "wire", 10, 0.9)
    reading = monitor.check(T0).payload["sources"]["wire"]
    assert reading["scored"] is False and "fewer than 30 rows" in reading["why"]


def test_the_estimate_uses_the_champions_temperature_and_only_its_own_answers(ctx, store):
    serve(store, T0 - timedelta(minutes=30), "wire", 200, 0.3, version="4")
    serve(store, T0 - timedelta(minutes=20), "wire", 50, 0.3, version="3")  # the old champion's answers
    estimate = LiveMonitor(ctx).check(T0).payload["estimate"]
    assert estimate["version"] == "4" and estimate["rows"] == 200 and estimate["calibrated"]
    # Every answer says 0.8 for its top class: a calibrated 0.8 means 80 % right, macro-F1 near 0.8.
    assert estimate["low"] <= estimate["macro_f1"] <= estimate["high"]
    assert estimate["macro_f1"] == pytest.approx(0.8, abs=0.05)
    ctx.registry.champion.metrics = {"calibration.temperature": 3.0}  # the model was over-confident
    softer = LiveMonitor(ctx).check(T0 + timedelta(minutes=1)).payload["estimate"]
    assert softer["macro_f1"] < estimate["macro_f1"] - 0.2


def test_traffic_older_than_the_retention_is_deleted(ctx, store):
    serve(store, T0 - timedelta(days=40), "wire", 10, 0.2)
    serve(store, T0 - timedelta(minutes=5), "wire", 10, 0.2)
    LiveMonitor(ctx).check(T0)
    assert sum(traffic.label_counts(store, T0 - timedelta(days=400), T0).values()) == 10


def test_cltool_drift_shows_the_latest_served_reading(ctx, store):
    from daemon.cli.drift_view import collect, render

    now = surge_on_wire(store, 0.6)
    monitor = LiveMonitor(ctx)
    monitor.check(now)
    monitor.check(now + timedelta(minutes=1))
    data = collect(ctx)
    assert set(data["live"]["open_alerts"]) == {ALL, "wire"}
    text = render(data)
    assert "served traffic" in text and "wire" in text and "OPEN" in text
    assert "estimated macro-F1 of v4 without labels" in text and "surge: negative news from wire" in text


class Embedder:
    """Embeds a text by its family: texts naming 'merger' sit far from the others."""

    labels = LABELS

    def __init__(self):
        self.calls = 0

    def predict_and_embed(self, texts):
        self.calls += 1
        rng = np.random.default_rng(len(texts))
        emb = rng.normal(0, 1, (len(texts), 8)) + np.array([[4.0 if "merger" in t else 0.0] * 8 for t in texts])
        probs = np.full((len(texts), 3), 1 / 3)
        return probs.argmax(axis=1), probs, emb


def test_served_texts_embeddings_drift_is_found_once_per_period(ctx, store):
    embedder = Embedder()
    ctx._predictors["4"] = embedder  # the champion, as the daemon's jobs share it
    monitor = LiveMonitor(ctx)
    serve(store, T0 - timedelta(hours=5), "wire", 80, 0.2)
    serve(store, T0 - timedelta(minutes=30), "wire", 80, 0.2)
    steady = monitor.check_embeddings(T0)
    assert steady.type == events.LIVE_EMBEDDING_SCORED and not steady.payload["drifted"]
    assert monitor.check_embeddings(T0 + timedelta(minutes=1)) is None  # not due yet: no second pass
    assert embedder.calls == 2  # baseline and window, once
    later = T0 + timedelta(hours=2)
    traffic.record(store, [{"at": later - timedelta(minutes=10, seconds=i), "version": "4", "source": "wire",
                            "text": f"merger talk {i}", "label": "neutral", "score": 0.5,
                            "scores": {"negative": 0.2, "neutral": 0.5, "positive": 0.3}} for i in range(80)])
    shifted = monitor.check_embeddings(later)
    assert shifted.payload["drifted"] and "DRIFTED" in shifted.reason
    assert shifted.payload["window"]["rows"] == 80
    from daemon.cli.drift_view import collect, render

    monitor.check(later)
    assert "served texts' embeddings (champion v4): MMD²" in render(collect(ctx))


def test_an_open_surge_survives_a_restart_after_a_check_that_scored_nothing(ctx, store):
    now = surge_on_wire(store, 0.7)
    monitor = LiveMonitor(ctx)
    monitor.check(now)
    assert monitor.check(now + timedelta(minutes=1)).payload["sources"]["wire"]["alert"] == "open"
    # A restart, then a check whose window is too thin to score: the open alert is still saved...
    thin = now + timedelta(hours=3)
    serve(store, thin - timedelta(minutes=10), "wire", 5, 0.2)
    reading = LiveMonitor(ctx).check(thin)
    assert reading.payload["sources"]["wire"]["scored"] is False
    assert reading.payload["hysteresis"]["wire"]["state"] == "open"
    # ... so the next restart still knows it.
    assert LiveMonitor(ctx).check(thin + timedelta(minutes=1)).payload["sources"]["wire"]["alert"] == "open"
