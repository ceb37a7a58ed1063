"""A real `cltool run` (subprocess, real APScheduler, tiny model, real MLflow on SQLite): /metrics,
/healthz and /readyz over loopback HTTP on an ephemeral port, the metrics moving after a drifted
batch, and the drift alert's opening and closing received by a webhook on a loopback HTTP server."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon.state.store import StateStore
from retrain.modeling import build_tiny_model
from tests.daemon.conftest import write_csv
from tests.daemon.monitoring.test_drift_pass import LABELS, rows

CLTOOL = str(Path(sys.executable).parent / "cltool")
SURGE = (6, 1, 1)  # three quarters negative


class Webhook:
    """A loopback HTTP server that keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def get(url: str, timeout: float = 30) -> tuple[int, str]:
    """(status, body); (0, the error) when nothing answered, so a failing assert shows why."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError as exc:  # refused, reset, timed out
        return 0, f"{type(exc).__name__}: {exc}"


def scrape(base: str) -> dict[tuple[str, tuple], float]:
    status, text = get(f"{base}/metrics")
    assert status == 200, text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_for(what: str, check, daemon: subprocess.Popen, log: Path, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if daemon.poll() is not None:
            pytest.fail(f"daemon exited ({daemon.returncode}) waiting for {what}:\n{log.read_text()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-4000:]}")
        time.sleep(0.3)


def drop(inbox: Path, name: str, data) -> None:
    """Write under a temporary name, age it past the settle time, rename into the inbox."""
    staging = write_csv(inbox / f".{name}.tmp", data)
    os.utime(staging, (time.time() - 10, time.time() - 10))
    staging.rename(inbox / name)


def test_daemon_serves_metrics_that_move_on_drift_and_posts_alerts_to_a_webhook(tmp_path):
    tiny = build_tiny_model(tmp_path / "tiny", LABELS)
    hook = Webhook()
    state, inbox = tmp_path / "state", tmp_path / "inbox"
    inbox.mkdir()
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
        CLTOOL_MODEL__BASE=str(tiny), CLTOOL_MODEL__MAX_LENGTH="16", CLTOOL_TRAIN__EPOCHS="2",
        CLTOOL_TRAIN__LEARNING_RATE="0.002", CLTOOL_TRAIN__EARLY_STOPPING_PATIENCE="0",
        CLTOOL_TRIGGER__MIN_NEW_ROWS="50", CLTOOL_TRIGGER__POLL_SECONDS="0.5",
        CLTOOL_GATE__FIRST_MODEL_MIN_MACRO_F1="0", CLTOOL_GATE__MIN_FRESH_ROWS="5", CLTOOL_WATCH__ENABLED="false",
        CLTOOL_DRIFT__OPEN_AFTER="1", CLTOOL_DRIFT__CLOSE_AFTER="1", CLTOOL_DRIFT__MIN_REFERENCE_ROWS="20",
        CLTOOL_OBSERVE__PORT="0", CLTOOL_OBSERVE__REFRESH_SECONDS="0.5", CLTOOL_OBSERVE__WEBHOOK_URL=hook.url,
        CLTOOL_OBSERVE__WEBHOOK_RETRIES="1",
    )
    log = tmp_path / "daemon.log"
    with open(log, "w") as err:
        daemon = subprocess.Popen([CLTOOL, "--state-dir", str(state), "--inbox-dir", str(inbox), "run"],
                                  cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        # The bound URL is in the log; the same URL is in an `observe.listening` event.
        match = wait_for("the metrics URL in the log",
                         lambda: re.search(r"metrics at (http://127\.0\.0\.1:\d+)/metrics", log.read_text()), daemon, log)
        base = match.group(1)
        listening = StateStore(f"sqlite:///{state / 'state.db'}").last_event("observe.listening")
        assert listening.payload["url"] == base and listening.payload["port"] > 0

        assert get(f"{base}/healthz") == (200, "ok\n")
        # /readyz answers within 2 s, so while the MLflow database is first created (migrations) it may say
        # 503 with a timed-out check; it turns 200 once both stores answer.
        status, body = wait_for("/readyz 200", lambda: (reply := get(f"{base}/readyz"))[0] == 200 and reply,
                                daemon, log, timeout=120)
        assert json.loads(body)["checks"] == {"state_store": "ok", "mlflow": "ok"}
        before = scrape(base)
        assert before[("cltool_cycles_total", (("outcome", "PROMOTE"),))] == 0
        assert not any(name == "cltool_drift_state" for name, _ in before)

        # Batch 1 bootstraps the champion (nothing to compare it with yet: not scored for drift).
        drop(inbox, "a.csv", rows(300, 0))
        # The alias moves inside the cycle, before the cycle records its outcome: wait for both, or a
        # scrape between the two sees the champion without the PROMOTE count.
        promoted = ("cltool_cycles_total", (("outcome", "PROMOTE"),))
        first = wait_for("champion v1 and its cycle counted", lambda: (m := scrape(base)).get(
            ("cltool_champion_info", (("version", "1"),))) == 1 and m.get(promoted) == 1 and m, daemon, log)
        assert first[promoted] == 1
        assert first[("cltool_promotions_total", (("actor_kind", "gate"),))] == 1
        assert first[("cltool_last_successful_cycle_timestamp_seconds", ())] > time.time() - 300

        # A negative surge: the alert opens at once (open_after = 1), the metrics and the webhook say so.
        drop(inbox, "b.csv", rows(150, 10000, SURGE))
        surge = ("cltool_drift_state", (("detector", "negative_surge"),))
        # One scored event sets every detector's gauges in turn: wait for the last of them too.
        after = wait_for("negative_surge alert in /metrics", lambda: (m := scrape(base)).get(surge) == 1
                         and ("cltool_live_macro_f1", ()) in m and m, daemon, log)
        assert after[("cltool_drift_score", (("detector", "negative_surge"),))] >= 0.10
        assert after[("cltool_drift_window_drifted", (("detector", "label_mix"),))] == 1
        assert 0 <= after[("cltool_live_macro_f1", ())] <= 1
        opened = wait_for("the webhook for the opened alert", lambda: [
            m for m in hook.received if m["event"] == "drift.alert_opened" and m["detector"] == "negative_surge"],
            daemon, log, timeout=60)
        assert opened[0]["severity"] == "critical" and "OPENED" in opened[0]["text"] and opened[0]["file"] == "b.csv"

        # The alert asked for a retrain; a normal batch then closes the alert (close_after = 1).
        drop(inbox, "c.csv", rows(150, 20000))
        closed = wait_for("the webhook for the closed alert", lambda: [
            m for m in hook.received if m["event"] == "drift.alert_closed" and m["detector"] == "negative_surge"],
            daemon, log)
        assert closed[0]["file"] == "c.csv" and closed[0]["text"]
        wait_for("negative_surge back to 0", lambda: scrape(base).get(surge) == 0, daemon, log, timeout=30)
        store = StateStore(f"sqlite:///{state / 'state.db'}")
        assert any(e.reason == "requested by daemon:drift" for e in store.events(types=["cycle.started"]))

        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=120)
        assert daemon.returncode == 0, log.read_text()[-3000:]
    finally:
        if daemon.poll() is None:
            daemon.kill()
        hook.close()
