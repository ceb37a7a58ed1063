"""The production story on the real topology: PostgreSQL state store, `mlflow server --app-name
basic-auth` on PostgreSQL with proxied artifacts, cltool as a non-admin MLflow user, the real CLI as
subprocesses. Two state folders stand for two hosts: everything one needs to carry on is in the two
stores. A consumer that cannot read either folder loads the champion from the server."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from retrain.modeling import build_tiny_model
from tests.daemon.cycle.test_cycle import LABELS
from tests.daemon.cycle.test_cycle import toy_rows as cycle_rows
from tests.production.servers import clean_environ

pytestmark = pytest.mark.integration

CLTOOL = str(Path(sys.executable).parent / "cltool")
MODEL = "prod-sentiment"
# Secrets the story runs with; none may appear in any output, event, MLflow param, tag or artifact.
DB_PASSWORD = "Db-Secret-9"  # the test server trusts loopback, so any password opens it: it is only carried
WEBHOOK = "http://127.0.0.1:9/services/T000/B000/Webhook-Secret-7"
OUTPUTS: list[str] = []  # every stdout and stderr of the story's cltool processes


def toy_rows(n: int, start: int = 0) -> pd.DataFrame:
    """The cycle tests' toy rows (a tiny model learns them in seconds), as a frame to write out."""
    return pd.DataFrame(cycle_rows(n, start), columns=["text", "label"])


@pytest.fixture(scope="module")
def prod(postgres, mlflow_server, cltool_user, tmp_path_factory):
    root = tmp_path_factory.mktemp("prod")
    base = build_tiny_model(root / "tiny-base", LABELS)
    environment = dict(
        clean_environ(), **cltool_user.env(),
        CLTOOL_STORE__URL=postgres.create_database("cltool_story").replace("postgres@", f"postgres:{DB_PASSWORD}@"),
        CLTOOL_OBSERVE__WEBHOOK_URL=WEBHOOK,
        CLTOOL_MLFLOW__TRACKING_URI=mlflow_server.url, CLTOOL_MLFLOW__MODEL_NAME=MODEL,
        CLTOOL_MLFLOW__EXPERIMENT="prod-story",
        # The tiny model learns the toy rows in seconds (as tests/daemon/cycle/test_cycle.py).
        CLTOOL_MODEL__BASE=str(base), CLTOOL_MODEL__MAX_LENGTH="16", CLTOOL_TRAIN__EPOCHS="10",
        CLTOOL_TRAIN__BATCH_SIZE="16", CLTOOL_TRAIN__LEARNING_RATE="0.002",
        CLTOOL_TRAIN__EARLY_STOPPING_PATIENCE="0", CLTOOL_TRIGGER__MIN_NEW_ROWS="50",
        CLTOOL_GATE__FIRST_MODEL_MIN_MACRO_F1="0", CLTOOL_GATE__MIN_FRESH_ROWS="10")
    toy_rows(200).to_csv(root / "b1.csv", index=False)
    toy_rows(200, start=1000).to_csv(root / "b2.csv", index=False)
    return root, environment


def cltool(prod, host: str, *args, ok=True, env=None):
    """`cltool` on `host`: its own working and state folder under the module's root."""
    root, environment = prod
    folder = root / host
    folder.mkdir(exist_ok=True)
    done = subprocess.run([CLTOOL, "--state-dir", str(folder / "state"), "--inbox-dir", str(folder / "inbox"), *args],
                          cwd=folder, env={**environment, **(env or {})}, capture_output=True, text=True, timeout=600)
    OUTPUTS.extend([done.stdout, done.stderr])
    if ok:
        assert done.returncode == 0, f"cltool {' '.join(args)} on {host} failed ({done.returncode}):\n{done.stderr[-3000:]}"
    return done


def as_json(prod, host, *args, env=None):
    return json.loads(cltool(prod, host, *args, "--json", env=env).stdout)


def test_the_story_runs_on_postgres_and_an_mlflow_server(prod, mlflow_server):
    root, environment = prod
    # Host A records a batch; host B, an empty state folder with the same two URLs, trains on it.
    assert as_json(prod, "a", "ingest", str(root / "b1.csv"))[0]["status"] == "accepted"
    first = as_json(prod, "b", "run", "--once")
    assert first["ingested"] == [] and first["cycle"]["outcome"] == "PROMOTE" and first["cycle"]["version"] == "1"

    # Back on A: the next batch is judged against the champion B made, with B's batch as history.
    assert as_json(prod, "a", "ingest", str(root / "b2.csv"))[0]["status"] == "accepted"
    second = as_json(prod, "a", "run", "--once")["cycle"]
    assert second["version"] == "2" and second["outcome"] in {"PROMOTE", "REJECT", "WAIT"}
    status = as_json(prod, "b", "status")
    assert status["pending_rows"] == (status["pending_rows"] if second["outcome"] == "WAIT" else 0)

    # promote / rollback as an operator on either host, recorded in the shared log.
    champion = status["champion"]["version"]
    other = "2" if champion == "1" else "1"
    cltool(prod, "a", "promote", other, "--reason", "drill", "--force")
    cltool(prod, "b", "rollback", "--reason", "drill over")
    log = as_json(prod, "b", "history", "--all", "--limit", "200")
    assert [e["version"] for e in log if e["type"] == "decision"] == ["1", "2"]
    moves = [(e["type"], e["version"], e["reason"]) for e in log if e["type"] in ("promotion", "rollback")]
    assert moves[-2:] == [("promotion", other, "drill"), ("rollback", champion, "drill over")]

    # Retention on the server, as the non-admin user: two rejected candidates, then the older one leaves MLflow
    # with its run and its files; its decision stays in the shared log.
    for n, start in ((3, 2000), (4, 3000)):
        toy_rows(200, start=start).to_csv(root / f"b{n}.csv", index=False)
        cltool(prod, "a", "ingest", str(root / f"b{n}.csv"))
        cycle = as_json(prod, "a", "run", "--once", env={"CLTOOL_GATE__MIN_FRESH_GAIN": "1.0"})["cycle"]
        assert (cycle["version"], cycle["outcome"]) == (str(n), "REJECT")
    removed = as_json(prod, "b", "prune", "--keep", "1", "--keep-runs", "1")
    assert [(v["version"], v["what"]) for v in removed] == [("3", "run")]
    [event] = as_json(prod, "a", "history", "--type", "model.removed")
    assert event["version"] == "3" and event["payload"]["decision"] == "REJECT"
    assert not [p for p in mlflow_server.artifacts.rglob("*") if event["payload"]["run_id"] in str(p) and p.is_file()]
    gone = cltool(prod, "b", "explain", "3", ok=False)
    assert gone.returncode == 1 and "removed from MLflow by retention" in gone.stderr
    assert as_json(prod, "b", "status", "--live")["champion"]["version"] == champion

    # The models live on the server, not on either host: no artifact folder in a state folder, and the
    # local model folders are a cache that can be deleted at any moment.
    assert any(mlflow_server.artifacts.rglob("model.safetensors"))
    for host in ("a", "b"):
        assert not list((root / host / "state").rglob("mlartifacts"))
        shutil.rmtree(root / host / "state" / "work" / "models", ignore_errors=True)
    predicted = as_json(prod, "a", "predict", "plunge loss item 7", "soar profit item 8")
    assert [p["version"] for p in predicted] == [champion, champion]

    # A consumer on "another host": no state folder at all, only the server and a user that may read.
    consumer = root / "consumer"
    consumer.mkdir()
    for host in ("a", "b"):
        (root / host).rename(root / f"{host}-moved-away")
    script = ("import mlflow, json; m = mlflow.pyfunc.load_model('models:/%s@champion');"
              "print(json.dumps(m.predict(['plunge loss item 7', 'soar profit item 8'])['label'].tolist()))" % MODEL)
    done = subprocess.run([sys.executable, "-c", script], cwd=consumer, capture_output=True, text=True, timeout=300,
                          env={**environment, "MLFLOW_TRACKING_URI": mlflow_server.url,
                               "MLFLOW_REGISTRY_URI": mlflow_server.url})
    assert done.returncode == 0, done.stderr[-3000:]
    labels = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(labels) == 2 and set(labels) <= set(LABELS)


def test_no_secret_reaches_outputs_events_or_mlflow(prod, mlflow_server, cltool_user, monkeypatch, tmp_path):
    """The database password, cltool's MLflow password and the webhook's secret path, grepped for in every
    CLI output and log line of the story, every event, and every MLflow param, tag and config artifact."""
    import mlflow
    import sqlalchemy as sa

    root, environment = prod
    assert OUTPUTS, "runs after the story"
    secrets = [DB_PASSWORD, cltool_user.password, "Webhook-Secret-7"]
    engine = sa.create_engine(environment["CLTOOL_STORE__URL"])
    with engine.connect() as conn:
        logged = [" ".join(map(str, row)) for row in conn.execute(sa.text("SELECT type, reason, payload FROM events"))]
    engine.dispose()
    for name, value in cltool_user.env().items():
        monkeypatch.setenv(name, value)
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("prod-story")
    runs = client.search_runs([experiment.experiment_id])
    assert runs and any("store.url" in run.data.params for run in runs)
    texts = [*OUTPUTS, *logged]
    for run in runs:
        texts += [json.dumps(run.data.params), json.dumps(run.data.tags)]
        texts.append(Path(client.download_artifacts(run.info.run_id, "config.json", str(tmp_path))).read_text())
    for version in client.search_model_versions(f"name = '{MODEL}'"):
        texts += [json.dumps(version.tags), version.description or ""]
    for secret in secrets:
        leaks = [text[max(0, text.index(secret) - 80):text.index(secret) + 40] for text in texts if secret in text]
        assert not leaks, f"{secret!r} leaked: {leaks[:3]}"
    # What is shown instead: the URL with its password masked, the webhook without its path.
    assert any("postgres:***@127.0.0.1" in text for text in texts)
    assert any('"observe.webhook_url": "http://127.0.0.1:9/***"' in text for text in texts)


def test_a_wrong_password_is_one_clear_error(prod, mlflow_server):
    # `status` reads cltool's own log; `status --live` asks the server, as every command that needs MLflow does.
    done = cltool(prod, "stranger", "status", "--live", ok=False, env={"MLFLOW_TRACKING_PASSWORD": "wrong"})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "refused" in done.stderr and "UNAUTHENTICATED" in done.stderr and "MLFLOW_TRACKING_PASSWORD" in done.stderr


def test_cltool_serve_on_another_host_serves_the_champion_from_the_server(prod, mlflow_server):
    """`cltool serve` with an empty state folder, the MLflow server (as cltool's non-admin user) and the
    PostgreSQL store: it loads @champion from the server, wants its bearer token, and records what it
    served in PostgreSQL."""
    import signal
    import socket
    import time
    import urllib.error
    import urllib.request

    import sqlalchemy as sa

    from tests.production.servers import wait_for

    root, environment = prod
    champion = as_json(prod, "serve-host", "status")["champion"]["version"]
    folder = root / "serve-host"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = "Serve-Token-5"
    env = {**environment, "CLTOOL_SERVE__TOKEN": token, "CLTOOL_SERVE__PORT": str(port),
           "CLTOOL_SERVE__POLL_SECONDS": "1"}
    log = (folder / "serve.log").open("w")
    server = subprocess.Popen([CLTOOL, "--state-dir", str(folder / "state"), "serve"], cwd=folder, env=env,
                              stdout=log, stderr=subprocess.STDOUT)

    def call(path, body=None, bearer=token):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data,
                                         headers={"Authorization": f"Bearer {bearer}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 (loopback)
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())
        except OSError:
            return None, None

    try:
        ready = wait_for(lambda: (r := call("/readyz"))[0] == 200 and r[1], 180, "cltool serve to load the champion")
        assert ready["model_version"] == champion
        status, body = call("/predict", {"texts": ["plunge loss item 7"], "source": "wire"})
        assert status == 200 and body["model_version"] == champion
        assert body["predictions"][0]["label"] in LABELS
        assert call("/predict", {"texts": ["x"]}, bearer="wrong")[0] == 401
        time.sleep(2)  # the recorder writes once a second
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=60)
        log.close()
    output = (folder / "serve.log").read_text()
    assert code == 0, output[-3000:]
    assert token not in output and not list((folder / "state").rglob("mlartifacts"))
    engine = sa.create_engine(environment["CLTOOL_STORE__URL"])
    with engine.connect() as conn:
        served = conn.execute(sa.text("SELECT version, source, text FROM served")).all()
    engine.dispose()
    assert [tuple(row) for row in served] == [(champion, "wire", "plunge loss item 7")]
