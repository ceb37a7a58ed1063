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
        url = wait_for(lambda: next((line.split("metrics at ")[1].split("/metrics")[0]
                                     for line in log.read_text().splitlines() if "metrics at " in line), None),
                       120, "the daemon's metrics URL")
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
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
        server.stop()
    text = log.read_text()
    assert daemon.returncode == 0, text[-3000:]
    assert "Traceback" not in text, text[-5000:]
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
