"""deploy/prometheus and deploy/grafana: promtool accepts them, rules fire, and they name only real metrics."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from daemon.serving.app import ServeMetrics
from daemon.telemetry import Metrics

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
METRIC = re.compile(r"\bcltool_[a-z0-9_]+\b")


@pytest.fixture(scope="module")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed: apt-get install prometheus")
    return path


@pytest.mark.parametrize("args", [
    ["check", "rules", "alerts.yml"],
    ["check", "config", "prometheus.yml"],
    ["test", "rules", "alerts_test.yml"],  # NoSuccessfulCycle, DataDrift, NegativeSurge and Down fire
])
def test_promtool_accepts(promtool, args):
    result = subprocess.run([promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def exposed_names() -> set[str]:
    metrics = Metrics()
    metrics.drift_window("psi", 0.0, 0.1, False, False)  # labelled series without pre-created labels appear once used
    metrics.champion(1)
    metrics.job_error("j")
    metrics.job_misfire("j")
    metrics.live_macro_f1(0.8)  # the live readings appear once a champion has scored a batch
    metrics.live_accuracy(0.8)
    metrics.mean_confidence(0.8)
    metrics.served_traffic({"sources": {"*": {"rows": 40, "share": 0.5, "scored": True, "baseline_share": 0.2,
                                              "alert": "open"}},
                            "estimate": {"macro_f1": 0.7, "low": 0.6}, "confidence": {"window": {"mean_confidence": 0.8}},
                            "prediction_mix": {"psi": 0.1}})
    metrics.served_embeddings({"score": 0.01, "drifted": False})
    serving = ServeMetrics()  # `cltool serve`'s own /metrics
    serving.requests.labels(route="predict", code="200")
    serving.latency.labels(route="predict")
    return {s.name for registry in (metrics.registry, serving.registry)
            for family in registry.collect() for s in family.samples}


def test_alert_rules_name_only_exposed_metrics():
    yaml = pytest.importorskip("yaml")  # PyYAML arrives with mlflow; not a direct dependency
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    assert {r["alert"] for r in rules} >= {"CltoolDataDrift", "CltoolNegativeSurge", "CltoolLiveMacroF1Low",
                                           "CltoolLiveMacroF1Dropped", "CltoolNoSuccessfulCycle",
                                           "CltoolDown", "CltoolSchedulerJobErrors", "CltoolServedNegativeSurge",
                                           "CltoolServeModelLoadFailing", "CltoolServeDown"}
    names = exposed_names()
    for rule in rules:
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert set(METRIC.findall(rule["expr"])) <= names, rule["alert"]


def test_dashboard_is_valid_json_naming_only_exposed_metrics():
    dashboard = json.loads((DEPLOY / "grafana" / "cltool-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    assert {p["title"] for p in dashboard["panels"]} >= {
        "Drift score by detector", "Live macro-F1", "Cycles by outcome (per hour)",
        "Promotions and rollbacks (per day)", "Inbox backlog (files)", "Time since last successful cycle",
        "Drifted batches by detector (before hysteresis)", "Live sentiment per source (served, negative share)"}
    # The per-batch drift verdicts and the alert state built from them each have a panel.
    assert {m for e in exprs for m in METRIC.findall(e)} >= {"cltool_drift_window_drifted", "cltool_drift_state"}
    names = exposed_names()
    for expr in exprs:
        used = set(METRIC.findall(expr))
        assert used, f"expr names no cltool metric: {expr}"
        assert used <= names, f"{expr}: unknown {used - names}"
