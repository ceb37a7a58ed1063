"""Outages handled like a service, with the real servers stopped and started under a running daemon:
/readyz answers 503 within 2 s naming what is down; one line when a dependency goes and one when it is
back, no traceback storm; the events are in the log once the store is back."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.production.servers import (
    MlflowServer,
    clean_environ,
    free_port,
    running_postgres,
    wait_for,
)

pytestmark = pytest.mark.integration

CLTOOL = str(Path(sys.executable).parent / "cltool")


@pytest.fixture
def own_postgres():
    """A PostgreSQL of this test's own: stopping it must not take the session's MLflow server down."""
    with running_postgres() as pg:
        yield pg


def readyz(url: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=10) as reply:
            status, body = reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    return status, json.loads(body), time.monotonic() - started


def metrics_url(log: Path) -> str:
    """The daemon's /metrics base URL, from its start-up line."""
    return wait_for(lambda: next((line.split("metrics at ")[1].split("/metrics")[0]
                                  for line in log.read_text().splitlines() if "metrics at " in line), None),
                    120, "the daemon's metrics URL")


def stop(daemon: subprocess.Popen, server: MlflowServer) -> None:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=60)
    server.stop()


def clean_exit_log(daemon: subprocess.Popen, log: Path) -> str:
    """The stopped daemon's log, once it is known to have exited 0 without a traceback."""
    text = log.read_text()
    assert daemon.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-5000:]
    return text


def test_the_daemon_rides_out_a_database_and_an_mlflow_outage(own_postgres, tmp_path):
    mlflow_port = free_port()
    env = dict(clean_environ(), CLTOOL_STORE__URL=own_postgres.create_database("cltool"),
               CLTOOL_MLFLOW__TRACKING_URI=f"http://127.0.0.1:{mlflow_port}",  # nothing listens there yet
               CLTOOL_OBSERVE__PORT="0", CLTOOL_TRIGGER__POLL_SECONDS="1")
    args = [CLTOOL, "--state-dir", str(tmp_path / "state"), "--inbox-dir", str(tmp_path / "inbox")]
    log = tmp_path / "daemon.log"
    with open(log, "wb") as out:
        daemon = subprocess.Popen([*args, "run"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    server = MlflowServer(tmp_path / "mlflow", None, port=mlflow_port)
    try:
        url = metrics_url(log)
        # MLflow is down from the start: not ready, and why, within 2 s.
        status, body, seconds = readyz(url)
        assert status == 503 and body["failing"] == ["mlflow"] and seconds < 2
        server.start()
        wait_for(lambda: readyz(url)[0] == 200, 60, "/readyz 200 once MLflow is up")

        own_postgres.stop()
        status, body, seconds = readyz(url)
        assert status == 503 and body["failing"] == ["state_store"] and seconds < 2
        time.sleep(8)  # several inbox polls and a heartbeat against the stopped database
        own_postgres.start()
        wait_for(lambda: readyz(url)[0] == 200, 60, "/readyz 200 once PostgreSQL is back")
        wait_for(lambda: log.read_text().count("dependency.restored") >= 2, 60, "the store's return recorded")
    finally:
        stop(daemon, server)
    text = clean_exit_log(daemon, log)
    lines = text.splitlines()
    lost = [line for line in lines if "dependency.lost" in line]
    back = [line for line in lines if "dependency.restored" in line]
    assert len(lost) == 2 and len(back) == 2, "\n".join(lost + back)
    assert "mlflow" in lost[0] and "state_store" in lost[1] and "mlflow" in back[0] and "state_store" in back[1]
    history = json.loads(subprocess.run([*args, "history", "--all", "--json", "--limit", "100"], env=env,
                                        capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    recorded = [(e["type"], e["payload"]["dependency"]) for e in history if e["type"].startswith("dependency.")]
    assert sorted(recorded) == sorted([("dependency.lost", "mlflow"), ("dependency.restored", "mlflow"),
                                       ("dependency.lost", "state_store"), ("dependency.restored", "state_store")])


def test_mlflow_stopped_mid_cycle_fails_the_cycle_cleanly_and_the_retry_decides_once(own_postgres, tmp_path):
    """MLflow goes away while the second cycle trains: that cycle fails without a traceback, its batch stays
    pending, the champion stays, retries back off; once MLflow is back the batch is decided exactly once and
    the stores check clean (no orphan version, no open intent)."""
    from retrain.modeling import build_tiny_model
    from tests.production.test_standby import events
    from tests.production.test_topology import LABELS, toy_rows

    server = MlflowServer(tmp_path / "mlflow", None).start()
    url = own_postgres.create_database("cltool")
    env = dict(clean_environ(), CLTOOL_STORE__URL=url, CLTOOL_MLFLOW__TRACKING_URI=server.url,
               CLTOOL_MODEL__BASE=str(build_tiny_model(tmp_path / "tiny", LABELS)), CLTOOL_MODEL__MAX_LENGTH="16",
               # Long enough a training run to stop MLflow inside it; the toy rows are learnt either way.
               CLTOOL_TRAIN__EPOCHS="30", CLTOOL_TRAIN__BATCH_SIZE="16", CLTOOL_TRAIN__LEARNING_RATE="0.002",
               CLTOOL_TRAIN__EARLY_STOPPING_PATIENCE="0", CLTOOL_TRIGGER__MIN_NEW_ROWS="50",
               CLTOOL_TRIGGER__POLL_SECONDS="1", CLTOOL_TRIGGER__RETRY_BACKOFF_SECONDS="2",
               CLTOOL_TRIGGER__RETRY_BACKOFF_MAX_SECONDS="4", CLTOOL_GATE__FIRST_MODEL_MIN_MACRO_F1="0",
               CLTOOL_GATE__MIN_FRESH_ROWS="10", CLTOOL_GATE__MIN_FRESH_GAIN="-1", CLTOOL_OBSERVE__PORT="0",
               MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")  # fail at once rather than retry inside one call
    args = [CLTOOL, "--state-dir", str(tmp_path / "state"), "--inbox-dir", str(tmp_path / "inbox")]
    log = tmp_path / "daemon.log"

    def ingest(name: str, start: int) -> None:
        toy_rows(200, start=start).to_csv(tmp_path / name, index=False)
        subprocess.run([*args, "ingest", str(tmp_path / name)], env=env, check=True, capture_output=True, cwd=tmp_path)

    def phases(cycle: int) -> list[str]:
        started = events(url, "cycle.started")
        if len(started) < cycle:
            return []
        cycle_id = started[cycle - 1]["payload"]["cycle_id"]
        return [e["payload"]["phase"] for e in events(url, "cycle.phase") if e["payload"]["cycle_id"] == cycle_id]

    with open(log, "wb") as out:
        daemon = subprocess.Popen([*args, "run"], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        url_of_metrics = metrics_url(log)
        ingest("b1.csv", 0)
        wait_for(lambda: events(url, "decision"), 300, "the first decision")
        ingest("b2.csv", 1000)
        wait_for(lambda: "training" in phases(2), 300, "the second cycle to be training")
        server.stop()
        status, body, seconds = readyz(url_of_metrics)
        assert status == 503 and body["failing"] == ["mlflow"] and seconds < 2
        failed = wait_for(lambda: events(url, "cycle.failed"), 300, "the second cycle to fail")
        assert len(events(url, "decision")) == 1  # the champion stays v1
        pending = events(url, "cycle.started")[-1]["payload"]["batches"]
        time.sleep(6)  # a retry or two against the stopped server: each fails before training
        server.start()
        wait_for(lambda: len(events(url, "decision")) == 2, 300, "the retried cycle's decision")
    finally:
        stop(daemon, server)
    text = clean_exit_log(daemon, log)
    assert text.count("dependency.lost") == 1 and text.count("dependency.restored") == 1, text[-5000:]
    assert "MLflow" in failed[0]["reason"] or "mlflow" in failed[0]["reason"].lower(), failed[0]["reason"]
    decisions = events(url, "decision")
    assert [d["version"] for d in decisions] == ["1", "2"]
    assert decisions[1]["payload"]["batches"] == pending  # the interrupted batch, decided once
    server.start()  # for the checks: the registry holds exactly the two decided versions
    try:
        fsck = subprocess.run([*args, "fsck", "--json"], env=env, capture_output=True, text=True, cwd=tmp_path)
        assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    finally:
        server.stop()
