"""Metrics scraped through a real HealthServer on loopback, and the health/readiness probes."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime, timezone

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from daemon.telemetry import HealthServer, Metrics, UnknownLabelError


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.fixture
def metrics():
    return Metrics()


@pytest.fixture
def server(metrics):
    checks = {"store": lambda: None}
    with HealthServer(metrics.registry, checks, port=0) as srv:
        yield srv


def test_live_readings_are_absent_until_a_champion_scored_a_batch(metrics, server):
    _, before = get(server.url + "/metrics")
    names = {name for name, _ in samples(before)}
    assert not names & {"cltool_live_macro_f1", "cltool_live_accuracy", "cltool_prediction_mean_confidence"}
    assert "cltool_inbox_backlog_files" in names  # the other gauges are there from the first scrape
    metrics.live_macro_f1(0.8)
    metrics.live_macro_f1(0.7)  # set again: the same series, not a second registration
    _, after = get(server.url + "/metrics")
    assert samples(after)[("cltool_live_macro_f1", ())] == 0.7


def test_scrape_shows_exact_values_after_events(metrics, server):
    metrics.cycle_finished("PROMOTE", at=1_700_000_000)
    metrics.cycle_finished("PROMOTE", at=datetime(2024, 1, 1, tzinfo=timezone.utc))
    metrics.cycle_finished("failed", at=1_800_000_000)  # a failure must not move the last-success time
    metrics.promoted("gate", version=3)
    metrics.promoted("manual", version="4")
    metrics.rolled_back("automatic", version=3)
    metrics.drift("psi", score=0.42, drifted=True)
    metrics.drift("negative_surge", score=0.1, drifted=False)
    metrics.live_macro_f1(0.875)
    metrics.inbox_backlog(7)
    metrics.job_error("cycle")
    metrics.job_error("cycle")
    metrics.job_misfire("scan_inbox")
    metrics.quarantined(2)

    status, body = get(f"{server.url}/metrics")
    assert status == 200
    assert 'cltool_cycles_total{outcome="PROMOTE"} 2.0' in body
    got = samples(body)
    assert got[("cltool_cycles_total", (("outcome", "failed"),))] == 1
    assert got[("cltool_cycles_total", (("outcome", "REJECT"),))] == 0  # pre-created at 0
    assert got[("cltool_last_successful_cycle_timestamp_seconds", ())] == 1_704_067_200
    assert got[("cltool_promotions_total", (("actor_kind", "gate"),))] == 1
    assert got[("cltool_promotions_total", (("actor_kind", "manual"),))] == 1
    assert got[("cltool_rollbacks_total", (("kind", "automatic"),))] == 1
    assert got[("cltool_rollbacks_total", (("kind", "manual"),))] == 0
    # only the current champion has a series
    assert {k for k in got if k[0] == "cltool_champion_info"} == {("cltool_champion_info", (("version", "3"),))}
    assert got[("cltool_champion_info", (("version", "3"),))] == 1
    assert got[("cltool_drift_score", (("detector", "psi"),))] == 0.42
    assert got[("cltool_drift_state", (("detector", "psi"),))] == 1
    assert got[("cltool_drift_state", (("detector", "negative_surge"),))] == 0
    assert got[("cltool_live_macro_f1", ())] == 0.875
    assert got[("cltool_inbox_backlog_files", ())] == 7
    assert got[("cltool_scheduler_job_errors_total", (("job_id", "cycle"),))] == 2
    assert got[("cltool_scheduler_job_misfires_total", (("job_id", "scan_inbox"),))] == 1
    assert got[("cltool_quarantined_files_total", ())] == 2


def test_metrics_use_their_own_registry_not_the_global_one():
    Metrics()
    Metrics()  # a second instance would raise "Duplicated timeseries" on a shared registry
    assert REGISTRY.get_sample_value("cltool_quarantined_files_total") is None


def test_unknown_outcome_is_refused_with_the_allowed_values(metrics):
    with pytest.raises(UnknownLabelError, match="outcome = 'DONE'.*PROMOTE, REJECT, WAIT, failed, aborted"):
        metrics.cycle_finished("DONE", at=0)


def test_healthz_and_unknown_path(server):
    assert get(f"{server.url}/healthz") == (200, "ok\n")
    assert get(f"{server.url}/nope")[0] == 404


def test_readyz_turns_503_naming_the_failing_check(metrics):
    broken = {"on": False}

    def mlflow_reachable() -> None:
        if broken["on"]:
            raise ConnectionError("tracking server at 127.0.0.1:5000 refused")

    checks = {"store": lambda: None, "mlflow": mlflow_reachable}
    with HealthServer(metrics.registry, checks, port=0) as srv:
        status, body = get(f"{srv.url}/readyz")
        assert status == 200
        assert json.loads(body) == {"ready": True, "checks": {"store": "ok", "mlflow": "ok"}}

        broken["on"] = True
        status, body = get(f"{srv.url}/readyz")
        assert status == 503
        doc = json.loads(body)
        assert doc["ready"] is False
        assert doc["failing"] == ["mlflow"]
        assert doc["checks"]["mlflow"] == "ConnectionError: tracking server at 127.0.0.1:5000 refused"
        assert doc["checks"]["store"] == "ok"


def test_port_zero_binds_a_free_port_and_stop_frees_it(metrics):
    srv = HealthServer(metrics.registry, {}, port=0)
    assert srv.host == "127.0.0.1"
    srv.start()
    try:
        bound = srv.port
        assert bound > 0
        assert get(f"{srv.url}/healthz")[0] == 200
    finally:
        srv.stop()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{bound}/healthz", timeout=2)


def test_import_starts_nothing():
    import subprocess
    import sys

    code = ("import threading, daemon.telemetry, daemon.telemetry.http, daemon.telemetry.webhook, sys;"
            "assert threading.active_count() == 1, threading.enumerate();"
            "bad = {'mlflow', 'registry', 'retrain'} & {m.split('.')[0] for m in sys.modules};"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=20)
