"""`cltool serve` as a subprocess on a real MLflow store: it serves @champion, follows `cltool promote`
with no failed request during the swap, keeps serving the old version when the new one cannot load,
records the traffic sample in the state store, and stops cleanly on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from retrain.modeling import build_tiny_model
from tests.production.servers import wait_for

CLTOOL = str(Path(sys.executable).parent / "cltool")
LABELS = ["negative", "neutral", "positive"]


def http(url, path, body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.fixture
def setup(tmp_path):
    from registry.models import ModelRegistry

    state = tmp_path / "state"
    registry = ModelRegistry(f"sqlite:///{state / 'mlflow.db'}", "cltool-sentiment", experiment="cltool",
                             artifact_location=(state / "mlartifacts").as_uri())
    for n in (1, 2, 3):
        model = build_tiny_model(tmp_path / f"m{n}", LABELS, seed=n)
        registry.log_candidate(model_dir=model, run_name=f"candidate-{n}", params={}, metrics={}, tags={},
                               json_artifacts={}, description=f"tiny {n}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLTOOL_")}
    env.update(CLTOOL_STATE_DIR=str(state), CLTOOL_INBOX_DIR=str(tmp_path / "inbox"),
               CLTOOL_SERVE__POLL_SECONDS="0.5", CLTOOL_SERVE__PORT="0")
    return tmp_path, state, env


def _files_of_version(state, version):
    from urllib.parse import urlparse

    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{state / 'mlflow.db'}")
    source = client.get_model_version("cltool-sentiment", version).source
    return Path(urlparse(client.get_logged_model(source.removeprefix("models:/")).artifact_location).path)


def cltool(env, *args, cwd):
    done = subprocess.run([CLTOOL, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"cltool {' '.join(args)}: {done.stderr[-2000:]}"
    return done.stdout


def test_serve_follows_the_champion_with_no_failed_request(setup):
    root, state, env = setup
    cltool(env, "promote", "1", "--reason", "first", cwd=root)
    log = (root / "serve.log").open("w")
    server = subprocess.Popen([CLTOOL, "serve"], env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT)
    try:
        line = wait_for(lambda: next((x for x in (root / "serve.log").read_text().splitlines()
                                      if "listening on" in x), None), 60, "the listening line")
        url = line.split("listening on ")[1].split()[0]
        wait_for(lambda: http(url, "/readyz")[0] == 200, 120, "the champion to load")
        assert json.loads(http(url, "/readyz")[1])["model_version"] == "1"

        stop, answers, failures = threading.Event(), [], []

        def client():
            while not stop.is_set():
                status, text = http(url, "/predict", {"texts": ["Profit fell.", "Sales rose."], "source": "wire"})
                (answers if status == 200 else failures).append(json.loads(text) if status == 200 else (status, text))

        threads = [threading.Thread(target=client) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(1)
        cltool(env, "promote", "2", "--reason", "swap under load", cwd=root)
        wait_for(lambda: answers and answers[-1]["model_version"] == "2", 60, "version 2 to be served")
        time.sleep(1)
        stop.set()
        for t in threads:
            t.join()
        assert not failures
        versions = [a["model_version"] for a in answers]
        assert set(versions) == {"1", "2"} and versions.index("2") > 0
        assert versions[versions.index("2"):] == ["2"] * (len(versions) - versions.index("2"))  # no flip back

        # A version whose files are broken is not swapped in: version 2 goes on, and it is reported.
        broken = list(_files_of_version(state, "3").rglob("model.safetensors"))
        assert broken
        for weights in broken:
            weights.write_bytes(b"not a model")
        cltool(env, "promote", "3", "--reason", "broken on purpose", cwd=root)
        ready = wait_for(lambda: (r := json.loads(http(url, "/readyz")[1]))["failing_versions"] and r, 60,
                         "the failed load of version 3")
        assert ready["model_version"] == "2" and ready["failing_versions"] == ["3"]
        status, text = http(url, "/predict", {"texts": ["Still here?"]})
        assert status == 200 and json.loads(text)["model_version"] == "2"
        metrics = http(url, "/metrics")[1]
        assert "cltool_serve_model_load_failing 1.0" in metrics and "cltool_serve_model_version 2.0" in metrics
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
        log.close()
    assert code == 0, (root / "serve.log").read_text()[-3000:]
    history = json.loads(cltool(env, "history", "--all", "--json", "--limit", "100", cwd=root))
    kinds = [e["type"] for e in history]
    assert {"serve.started", "serve.swapped", "serve.load_failed"} <= set(kinds)
    failed = next(e for e in history if e["type"] == "serve.load_failed")
    assert failed["version"] == "3" and "still serving 2" in failed["reason"]
    # The traffic sample is in the state store, with its source and version.
    import sqlalchemy as sa

    engine = sa.create_engine(f"sqlite:///{state / 'state.db'}")
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT version, source, count(*) FROM served GROUP BY version, source")).all()
    assert {(v, s) for v, s, _ in rows} >= {("1", "wire"), ("2", "wire")}
