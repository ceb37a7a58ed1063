"""Leadership across hosts on PostgreSQL: a second daemon is refused while the leader lives; a standby
(`cltool run --standby`, in its own UTS namespace so that it runs under another host name, as on
another machine) takes over when the leader is killed with SIGKILL mid-cycle, once the leader's lease
lapses, and finishes the interrupted work: the batch is decided once. Two state folders, one per host."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from retrain.modeling import build_tiny_model
from tests.production.servers import clean_environ, wait_for
from tests.production.test_topology import LABELS, toy_rows

pytestmark = pytest.mark.integration

CLTOOL = str(Path(sys.executable).parent / "cltool")
LEASE = 6


def other_host_prefix() -> list[str]:
    """Run a command under the host name `standby-host` where this machine allows it (root, unshare)."""
    if shutil.which("unshare") and subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0:
        return ["unshare", "--uts", "sh", "-c", 'hostname standby-host && exec "$@"', "sh"]
    return []


def events(url: str, *types: str) -> list[dict]:
    engine = sa.create_engine(url)
    if not sa.inspect(engine).has_table("events"):  # the first daemon has not created the store yet
        return []
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT type, actor, reason, payload, version FROM events ORDER BY id")).mappings().all()
    engine.dispose()
    return [dict(r, payload=json.loads(r["payload"])) for r in rows if not types or r["type"] in types]


def test_a_standby_on_another_host_takes_over_from_a_killed_leader(postgres, mlflow_server, cltool_user, tmp_path):
    base = build_tiny_model(tmp_path / "tiny", LABELS)
    url = postgres.create_database("cltool_standby")
    env = dict(clean_environ(), **cltool_user.env(), CLTOOL_STORE__URL=url, CLTOOL_STORE__LEASE_SECONDS=str(LEASE),
               CLTOOL_MLFLOW__TRACKING_URI=mlflow_server.url, CLTOOL_MLFLOW__MODEL_NAME="standby-sentiment",
               CLTOOL_MLFLOW__EXPERIMENT="standby", CLTOOL_MODEL__BASE=str(base), CLTOOL_MODEL__MAX_LENGTH="16",
               CLTOOL_TRAIN__EPOCHS="10", CLTOOL_TRAIN__BATCH_SIZE="16", CLTOOL_TRAIN__LEARNING_RATE="0.002",
               CLTOOL_TRAIN__EARLY_STOPPING_PATIENCE="0", CLTOOL_TRIGGER__MIN_NEW_ROWS="50",
               CLTOOL_TRIGGER__POLL_SECONDS="1", CLTOOL_GATE__FIRST_MODEL_MIN_MACRO_F1="0",
               CLTOOL_GATE__MIN_FRESH_ROWS="10", CLTOOL_OBSERVE__PORT="0")

    def cltool(host: str, *args: str) -> list[str]:
        return [CLTOOL, "--state-dir", str(tmp_path / host / "state"), "--inbox-dir", str(tmp_path / host / "inbox"),
                *args]

    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("leader", "standby")}
    leader = subprocess.Popen(cltool("a", "run"), env=env, stdout=logs["leader"], stderr=subprocess.STDOUT)
    standby = None
    try:
        wait_for(lambda: events(url, "daemon.started"), 120, "the leader to start")
        refused = subprocess.run(cltool("b", "run"), env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 3 and "is held by daemon:" in refused.stderr and "--standby" in refused.stderr
        standby = subprocess.Popen([*other_host_prefix(), *cltool("b", "run", "--standby")], env=env,
                                   stdout=logs["standby"], stderr=subprocess.STDOUT)
        wait_for(lambda: "standby:" in (tmp_path / "standby.log").read_text(), 120, "the standby to wait")

        toy_rows(200).to_csv(tmp_path / "b1.csv", index=False)
        subprocess.run(cltool("a", "ingest", str(tmp_path / "b1.csv")), env=env, check=True, capture_output=True)
        wait_for(lambda: events(url, "cycle.phase"), 120, "the leader's cycle to be training")
        leader.send_signal(signal.SIGKILL)  # mid-cycle: no decision yet, the batch still pending
        leader.wait(timeout=30)
        assert not events(url, "decision")

        wait_for(lambda: len(events(url, "daemon.started")) == 2, LEASE + 60, "the standby to take over")
        started = events(url, "daemon.started")[-1]
        assert started["actor"] != events(url, "daemon.started")[0]["actor"]
        decided = wait_for(lambda: events(url, "decision"), 300, "the standby to decide the interrupted batch")
        assert len(decided) == 1 and decided[0]["payload"]["outcome"] == "PROMOTE"
        assert "took over the lead" in (tmp_path / "standby.log").read_text()
    finally:
        for process in (leader, standby):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=60)
        for handle in logs.values():
            handle.close()
    assert standby.returncode == 0, (tmp_path / "standby.log").read_text()[-3000:]
    assert len(events(url, "decision")) == 1  # decided once, by the standby
    cycles = [e["payload"]["cycle_id"] for e in events(url, "cycle.started")]
    assert len(cycles) == 2  # the leader's (killed) and the standby's
