"""The whole loop through the installed `cltool`, as subprocesses, with a real MLflow (SQLite) and the
real packaged MiniLM: init -> ingest -> run --once -> champion -> second batch -> decision ->
promote / rollback -> quarantine -> next batch -> restarts change nothing -> a second daemon is
refused -> Ctrl-C stops the daemon cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLTOOL = str(Path(sys.executable).parent / "cltool")
DEMO = REPO / "data" / "demo"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    environment = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                       CLTOOL_CONFIG=str(root / "cltool.toml"),
                       # The default training recipe; shorter texts and a lower trigger for small batches.
                       CLTOOL_MODEL__MAX_LENGTH="48", CLTOOL_TRIGGER__MIN_NEW_ROWS="50",
                       CLTOOL_TRIGGER__POLL_SECONDS="1")
    environment.pop("CLTOOL_TRAIN__LAUNCHER", None)  # the default: every cycle trains in a supervised child
    tweets = pd.concat([pd.read_csv(DEMO / "01-tweets.csv"), pd.read_csv(DEMO / "02-tweets.csv")], ignore_index=True)
    for name, (start, stop) in {"b1.csv": (0, 400), "b2.csv": (400, 700), "b3.csv": (700, 950)}.items():
        tweets.iloc[start:stop].to_csv(root / name, index=False)
    bad = tweets.iloc[950:1000].copy()
    bad.loc[bad.index[3], "label"] = "very positive"
    bad.to_csv(root / "bad.csv", index=False)
    return root, environment


def cltool(env, *args, ok=True, timeout=600):
    root, environment = env
    done = subprocess.run([CLTOOL, *args], cwd=root, env=environment, capture_output=True, text=True, timeout=timeout)
    if ok:
        assert done.returncode == 0, f"cltool {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


def as_json(env, *args):
    return json.loads(cltool(env, *args, "--json").stdout)


def snapshot(env):
    status = as_json(env, "status")
    events = as_json(env, "history", "--all", "--limit", "1000")
    return ({alias: (status[alias] or {}).get("version") for alias in ("champion", "challenger", "previous_champion")},
            status["pending_rows"], [e["type"] for e in events if not e["type"].startswith("daemon.")])


def test_loop_end_to_end(env):
    root, _ = env
    out = cltool(env, "init", "--dir", str(root))
    assert (root / "cltool.toml").is_file() and "wrote" in out.stdout

    # Batch 1 bootstraps the champion from the packaged MiniLM.
    assert as_json(env, "ingest", str(root / "b1.csv"))[0]["status"] == "accepted"
    first = as_json(env, "run", "--once")
    assert first["cycle"]["outcome"] == "PROMOTE" and first["cycle"]["version"] == "1"
    status = as_json(env, "status")
    assert status["champion"]["version"] == "1"
    assert 0.0 <= status["champion"]["metrics"]["fresh_macro_f1"] <= 1.0
    assert status["pending_rows"] == 0 and status["previous_champion"] is None
    # One batch so far: the accuracy matrix is one cell, the fresh score; nothing to forget yet.
    continual = status["champion"]["continual"]
    assert continual["avg_macro_f1"] == pytest.approx(status["champion"]["metrics"]["fresh_macro_f1"])
    assert continual["forgetting"] is None and continual["backward_transfer"] is None

    # A restart with nothing new changes nothing.
    before = snapshot(env)
    assert as_json(env, "run", "--once")["cycle"] is None
    assert snapshot(env) == before

    # Batch 2: a candidate judged against the champion, decision with reasons recorded everywhere.
    cltool(env, "ingest", str(root / "b2.csv"))
    assert as_json(env, "status")["pending_rows"] > 50
    second = as_json(env, "run", "--once")["cycle"]
    assert second["version"] == "2" and second["outcome"] in {"PROMOTE", "REJECT", "WAIT"}
    assert "cl_avg_macro_f1" in second["metrics"] and "cl_forgetting" in second["metrics"]
    status = as_json(env, "status")
    assert status["last_decision"]["version"] == "2"
    assert status["last_decision"]["outcome"] == second["outcome"]
    assert any("fresh macro-F1" in reason for reason in status["last_decision"]["reasons"])
    decisions = as_json(env, "history", "--type", "decision")
    assert [(e["version"], e["type"]) for e in decisions] == [("1", "decision"), ("2", "decision")]
    assert all(e["reason"] and e["at"] for e in decisions)
    explained = as_json(env, "explain", "2")
    assert explained["reproduced"] and explained["outcome"] == second["outcome"]

    # promote and rollback move the aliases and are recorded with who and why.
    if second["outcome"] == "PROMOTE":
        assert status["champion"]["version"] == "2" and status["previous_champion"]["version"] == "1"
        cltool(env, "rollback", "--reason", "drill")
        assert (as_json(env, "status")["champion"]["version"]) == "1"
        cltool(env, "promote", "2", "--reason", "drill over")
        expected = ("2", "1")
    else:
        assert status["challenger"]["version"] == "2" and status["champion"]["version"] == "1"
        force = []
        if second["outcome"] == "REJECT":
            refused = cltool(env, "promote", "2", "--reason", "try it", ok=False)
            assert refused.returncode == 1 and "--force" in refused.stderr
            force = ["--force"]
        cltool(env, "promote", "2", "--reason", "reviewed by hand", *force)
        promotion = as_json(env, "history", "--type", "promotion")[-1]
        assert promotion["payload"]["forced"] is (second["outcome"] == "REJECT")
        assert as_json(env, "status")["champion"]["version"] == "2"
        cltool(env, "rollback", "--reason", "back to the gate's choice")
        expected = ("1", "2")
    status = as_json(env, "status")
    assert (status["champion"]["version"], status["previous_champion"]["version"]) == expected
    moves = as_json(env, "history", "--type", "promotion", "--type", "rollback")
    manual = [e for e in moves if e["actor"] != "daemon"]
    assert len(manual) == 2 and all(e["reason"] for e in manual)

    # A malformed file is quarantined with its reason; the next good batch is still processed.
    refused = cltool(env, "ingest", str(root / "bad.csv"), ok=False)
    assert refused.returncode == 1 and "quarantined" in refused.stderr
    [reason_file] = (root / "state" / "quarantine").glob("*bad.csv.reason.json")
    reason = json.loads(reason_file.read_text())
    assert reason["errors"][0]["row"] == 4 and reason["errors"][0]["column"] == "label"
    assert reason["errors"][0]["value"] == "very positive"
    (root / "inbox" / "b3.csv").write_bytes((root / "b3.csv").read_bytes())
    os.utime(root / "inbox" / "b3.csv", (time.time() - 10, time.time() - 10))
    third = as_json(env, "run", "--once")
    assert [r["status"] for r in third["ingested"]] == ["accepted"]
    assert third["cycle"]["version"] == "3"

    # Restarting after all of that changes nothing: same aliases, nothing pending, no new events.
    before = snapshot(env)
    assert as_json(env, "run", "--once")["cycle"] is None
    assert snapshot(env) == before

    # The champion answers.
    [prediction] = as_json(env, "predict", "Shares plunge after profit warning")
    assert prediction["label"] in {"negative", "neutral", "positive"} and 0 < prediction["score"] <= 1


def test_second_daemon_refused_and_ctrl_c_stops_cleanly(env):
    root, environment = env
    if not (root / "cltool.toml").exists():
        cltool(env, "init", "--dir", str(root))
    daemon = subprocess.Popen([CLTOOL, "run"], cwd=root, env=environment, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while as_json(env, "status")["daemon"] is None:
            assert daemon.poll() is None, daemon.stderr.read()
            assert time.monotonic() < deadline, "daemon did not take the leader lock"
            time.sleep(1)
        second = cltool(env, "run", "--once", ok=False)
        assert second.returncode == 3
        assert "Only one daemon may lead a state store" in second.stderr
        daemon.send_signal(signal.SIGINT)
        _out, err = daemon.communicate(timeout=120)
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0, err[-2000:]
    assert as_json(env, "status")["daemon"] is None
    assert as_json(env, "history", "--all", "--limit", "1")[0]["type"] == "daemon.stopped"
