"""The CLI through click's CliRunner, on an empty state (no model needed)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from daemon.cli.main import cli
from tests.daemon.conftest import sentences, write_csv


@pytest.fixture
def run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()

    def invoke(*args):
        return runner.invoke(cli, ["--state-dir", str(tmp_path / "state"), "--inbox-dir", str(tmp_path / "inbox"),
                                   *args], catch_exceptions=False)

    return invoke


def test_every_command_has_help():
    runner = CliRunner()
    for command in ["init", "run", "ingest", "retrain", "status", "promote", "rollback", "history", "predict", "explain"]:
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0 and "Usage: cli " + command in result.output.replace("cltool", "cli")


def test_init_writes_a_config_that_loads(tmp_path):
    result = CliRunner().invoke(cli, ["init", "--dir", str(tmp_path / "d")])
    assert result.exit_code == 0
    text = (tmp_path / "d" / "cltool.toml").read_text()
    assert "[train]" in text and "learning_rate" in text and (tmp_path / "d" / "inbox").is_dir()
    again = CliRunner().invoke(cli, ["init", "--dir", str(tmp_path / "d")])
    assert again.exit_code == 1 and "--force" in again.output


def test_status_json_on_an_empty_state(run):
    data = json.loads(run("status", "--json").stdout)
    assert data["champion"] is None and data["challenger"] is None and data["previous_champion"] is None
    assert data["pending_rows"] == 0 and data["last_decision"] is None and data["daemon"] is None


def test_ingest_reports_and_exits_1_on_quarantine(run, tmp_path):
    good = write_csv(tmp_path / "good.csv", sentences(30))
    result = run("ingest", str(good), "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)[0]["status"] == "accepted"
    bad = write_csv(tmp_path / "bad.csv", [("x", "maybe")])
    result = run("ingest", str(bad))
    assert result.exit_code == 1 and "quarantined" in result.output and "row 1, column 'label'" in result.output
    status = json.loads(run("status", "--json").stdout)
    assert 0 < status["pending_rows"] <= 30 and len(status["pending_batches"]) == 1
    history = json.loads(run("history", "--json").stdout)
    assert [e["type"] for e in history] == ["ingest.accepted", "ingest.quarantined"]
    assert all(set(e) >= {"type", "version", "reason", "at"} for e in history)


def test_bad_config_exits_2_naming_the_key(run):
    result = run("--set", "train.epochs=0", "status")
    assert result.exit_code == 2 and "train.epochs = 0" in result.output


def test_retrain_records_a_request(run):
    assert run("retrain", "--reason", "new regulation").exit_code == 0
    [event] = json.loads(run("history", "--json").stdout)
    assert (event["type"], event["reason"]) == ("retrain.requested", "new regulation")


def test_rollback_and_promote_without_models_fail_clearly(run):
    result = run("rollback", "--reason", "x")
    assert result.exit_code == 1 and "no champion to roll back" in result.output
    result = run("promote", "9", "--reason", "x")
    assert result.exit_code == 1 and "9" in result.output
    result = run("predict", "hello")
    assert result.exit_code == 1 and "has no champion yet" in result.output


def test_status_and_predict_say_a_running_daemon_is_training_the_first_model(run, tmp_path):
    from daemon.config import load_settings
    from daemon.state.locks import DAEMON_LOCK, Locks
    from daemon.state.store import StateStore

    settings = load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"))
    settings.state_dir.mkdir(parents=True)
    store = StateStore(settings.store_url)
    result = run("predict", "hello")  # nobody runs: the user is told how to make a first model
    assert result.exit_code == 1 and "`cltool run --once`" in result.output
    Locks(store).acquire(DAEMON_LOCK, "host:123", ttl_seconds=600)
    result = run("predict", "hello")  # a daemon runs but has not started a cycle
    assert result.exit_code == 1 and "the daemon (host:123) trains one once enough labeled rows" in result.output
    assert "run --once" not in result.output  # the daemon's lock would refuse that

    store.append("cycle.started", "200 new train rows", payload={"cycle_id": "c1", "batches": ["b1", "b2"]})
    store.append("cycle.phase", "training", payload={"cycle_id": "c1", "phase": "training"})
    status = json.loads(run("status", "--json").stdout)
    assert status["cycle"]["cycle_id"] == "c1" and status["cycle"]["phase"] == "training"
    assert status["cycle"]["batches"] == ["b1", "b2"] and status["cycle"]["trigger"] == "200 new train rows"
    text = run("status").stdout
    assert "cycle c1 running since" in text and "training since" in text and "on 2 batches" in text
    result = run("predict", "hello")
    assert result.exit_code == 1 and "is training one now (cycle c1, training)" in result.output

    store.append("cycle.finished", "REJECT", payload={"cycle_id": "c1"})
    assert json.loads(run("status", "--json").stdout)["cycle"] is None
    assert "running since" not in run("status").stdout
