"""deploy/: the files name real settings, commands and endpoints, and their pins agree with the project's.

CI has no Docker engine and no cluster, so nothing here starts a container. What is checked is what
drifts silently between the code and these files: a renamed setting, a moved endpoint, a torch pin;
and what the tools that read them would reject: `docker-compose config` on compose.yaml, the
Kubernetes API schema (kubernetes-validate) on the manifest.
"""

from __future__ import annotations

import configparser
import functools
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import kubernetes_validate
import pytest

from daemon.cli.main import cli
from daemon.config import ObserveSection, Settings
from daemon.telemetry import HealthServer, Metrics

yaml = pytest.importorskip("yaml")  # PyYAML arrives with mlflow; not a direct dependency

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PORT = ObserveSection.model_fields["port"].default
# The schemas ship in the kubernetes-validate wheel, so validation needs no network. The version is
# pinned so that a new release of the package does not change what the manifest is checked against.
KUBERNETES_VERSION = "1.31.0"
# Dummy values for the variables compose.yaml requires, and the services that may see each one.
COMPOSE_SECRETS = {
    "POSTGRES_PASSWORD": ("dummy-postgres-superuser", {"postgres", "postgres-init"}),
    "MLFLOW_DB_PASSWORD": ("dummy-mlflow-db-role", {"postgres-init", "mlflow"}),
    "STATE_DB_PASSWORD": ("dummy-cltool-db-role", {"postgres-init", "cltool"}),
    "MLFLOW_FLASK_SERVER_SECRET_KEY": ("dummy-flask-secret-key", {"mlflow"}),
    "MLFLOW_ADMIN_PASSWORD": ("dummy-mlflow-admin", {"mlflow", "mlflow-users"}),
    "DAEMON_MLFLOW_PASSWORD": ("dummy-daemon-mlflow-user", {"mlflow-users", "cltool"}),
}


@functools.cache  # each file is read and parsed once; callers only read the result
def dockerfile_lines() -> list[str]:
    return [line.strip() for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.strip()]


def dockerfile_match(pattern: str) -> str:
    """The first group of `pattern` in the Dockerfile (a line-anchored search)."""
    found = re.search(pattern, "\n".join(dockerfile_lines()), re.M)
    assert found, f"the Dockerfile has no line matching {pattern}"
    return found.group(1)


def dockerfile_env() -> dict[str, str]:
    pairs = [word.split("=", 1) for line in dockerfile_lines() if line.startswith("ENV ")
             for word in shlex.split(line.removeprefix("ENV "))]
    return dict(pairs)


@functools.cache  # each file is read and parsed once; callers only read the result
def compose_services() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]


def compose_service(name: str = "cltool") -> dict:
    return compose_services()[name]


@functools.cache  # each file is read and parsed once; callers only read the result
def k8s_docs() -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "kubernetes" / "cltool.yaml").read_text()))


def k8s_pod() -> dict:
    return next(d for d in k8s_docs() if d["kind"] == "Deployment")["spec"]["template"]["spec"]


def k8s_container() -> dict:
    return k8s_pod()["containers"][0]


def systemd_values(key: str) -> list[str]:
    """The values of every `key=` line of the systemd unit."""
    lines = (DEPLOY / "systemd" / "cltool.service").read_text().splitlines()
    return [line.removeprefix(key + "=") for line in lines if line.startswith(key + "=")]


def systemd_env() -> dict[str, str]:
    return dict(word.split("=", 1) for value in systemd_values("Environment") for word in shlex.split(value))


def cltool_env() -> list[tuple[str, str, str]]:
    """(file, name, value) of every CLTOOL_* setting the deploy files give the daemon."""
    found = [("Dockerfile", k, v) for k, v in dockerfile_env().items()]
    found += [("compose.yaml", k, str(v)) for k, v in compose_service()["environment"].items()]
    found += [("kubernetes/cltool.yaml", e["name"], str(e["value"])) for e in k8s_container()["env"] if "value" in e]
    found += [("systemd/cltool.service", k, v) for k, v in systemd_env().items()]
    return [(f, k, v) for f, k, v in found if k.startswith("CLTOOL_") and k != "CLTOOL_CONFIG"]


def test_every_cltool_variable_in_deploy_sets_the_setting_it_names(monkeypatch):
    variables = cltool_env()
    assert {name for _, name, _ in variables} >= {"CLTOOL_STATE_DIR", "CLTOOL_STORE__URL", "CLTOOL_OBSERVE__HOST"}
    for source, name, value in variables:
        monkeypatch.setenv(name, value)
        settings = Settings()
        # A misspelt name is ignored by the settings loader, so look for the value where the name points.
        node: object = settings
        for part in name.removeprefix("CLTOOL_").lower().split("__"):
            assert hasattr(node, part), f"{source}: {name} names no setting ({part!r} is not one)"
            node = getattr(node, part)
        assert str(node) == value, f"{source}: {name}={value} did not reach the setting (got {node!r})"
        monkeypatch.delenv(name)


def test_containers_serve_probes_and_metrics_on_a_reachable_address():
    # Probes and scrapes come to the container's own address; a daemon on 127.0.0.1 would fail them all.
    assert dockerfile_env()["CLTOOL_OBSERVE__HOST"] == "0.0.0.0"
    assert f"EXPOSE {PORT}" in dockerfile_lines()
    container = k8s_container()
    assert {"name": "CLTOOL_OBSERVE__HOST", "value": "0.0.0.0"} in container["env"]
    assert {"name": "metrics", "containerPort": PORT} in container["ports"]
    # Published on the host's loopback only: the endpoints have no authentication.
    assert compose_service()["ports"] == [f"127.0.0.1:{PORT}:{PORT}"]
    assert f"127.0.0.1:{PORT}/healthz" in " ".join(compose_service()["healthcheck"]["test"])


def test_kubernetes_probes_ask_paths_the_health_server_answers():
    container = k8s_container()
    probes = {kind: container[kind]["httpGet"] for kind in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert {p["port"] for p in probes.values()} == {"metrics"}
    assert probes["livenessProbe"]["path"] == "/healthz" and probes["readinessProbe"]["path"] == "/readyz"
    with HealthServer(Metrics().registry, {"store": lambda: None}, port=0) as server:
        for probe in probes.values():
            with urllib.request.urlopen(server.url + probe["path"], timeout=5) as response:
                assert response.status == 200, probe


def test_deploy_files_start_real_cli_commands():
    started = {
        "Dockerfile CMD": dockerfile_match(r'^CMD \["(\w+)"\]'),
        "compose command": compose_service()["command"][0],
        "kubernetes args": k8s_container()["args"][0],
        "systemd ExecStart": shlex.split(systemd_values("ExecStart")[0])[-1],
    }
    assert started == dict.fromkeys(started, "run")
    assert "run" in cli.commands
    serve_unit = (DEPLOY / "systemd" / "cltool-serve.service").read_text().splitlines()
    exec_start = next(line.removeprefix("ExecStart=") for line in serve_unit if line.startswith("ExecStart="))
    assert shlex.split(exec_start)[-1] == "serve" and "serve" in cli.commands


def test_kubernetes_runs_the_image_as_its_own_user():
    uid = int(dockerfile_match(r"useradd .*--uid (\d+)"))
    # fsGroup makes the volume writable by that user; another uid could not write its state.
    assert k8s_pod()["securityContext"] == {"runAsNonRoot": True, "runAsUser": uid, "fsGroup": uid}


def test_the_image_copies_what_exists_and_pins_the_projects_torch():
    for line in dockerfile_lines():
        if line.startswith("COPY "):
            for source in shlex.split(line)[1:-1]:
                assert (REPO / source).exists(), f"Dockerfile copies {source}, which the repository lacks"
    pinned = dockerfile_match(r'"torch==([^"]+)"')
    assert f"torch=={pinned}" in (REPO / "constraints.txt").read_text().splitlines()


def test_the_image_installs_the_postgres_driver():
    # The state store URL is postgresql+psycopg://; without the extra the daemon fails at start-up.
    assert "postgres" in dockerfile_match(r'pip install .*"\.\[([\w,]+)\]"').split(",")


# --- compose.yaml: PostgreSQL, MLflow with basic auth, the daemon --------------------------------------


def compose_binary() -> list[str]:
    """docker-compose (the Debian package, which .ci/run installs), else the docker compose plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor the docker compose plugin is installed")


def compose_config(tmp_path: Path, secrets: dict[str, str]) -> subprocess.CompletedProcess:
    """`docker-compose config` on compose.yaml with only `secrets` (and PATH) in the environment."""
    empty = tmp_path / "empty.env"  # so that a deploy/.env on this machine cannot fill in a secret
    empty.write_text("")
    command = [*compose_binary(), "--env-file", str(empty), "-f", str(DEPLOY / "compose.yaml"), "config"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), **secrets}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def test_compose_config_accepts_the_file_and_gives_each_service_only_its_own_secrets(tmp_path):
    result = compose_config(tmp_path, {name: value for name, (value, _) in COMPOSE_SECRETS.items()})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    for name, (value, allowed) in COMPOSE_SECRETS.items():
        seen = {service for service, config in services.items() if value in json.dumps(config)}
        assert seen == allowed, f"{name} reaches {sorted(seen)}, expected {sorted(allowed)}"
    # The daemon logs in as its own user, never as the admin the server creates.
    admin = services["mlflow"]["environment"]["MLFLOW_AUTH_ADMIN_USERNAME"]
    assert services["cltool"]["environment"]["MLFLOW_TRACKING_USERNAME"] not in ("", admin)


@pytest.mark.parametrize("missing", sorted(COMPOSE_SECRETS))
def test_compose_config_names_a_secret_that_is_not_set(tmp_path, missing):
    result = compose_config(tmp_path, {name: value for name, (value, _) in COMPOSE_SECRETS.items() if name != missing})
    assert result.returncode != 0
    assert f"set {missing}" in result.stderr, result.stderr


def test_deploy_files_write_no_secret():
    text = (DEPLOY / "compose.yaml").read_text()
    assert set(re.findall(r"\$\{(\w+):\?", text)) == set(COMPOSE_SECRETS)
    for service, config in compose_services().items():
        for key, value in config.get("environment", {}).items():
            if re.search(r"PASSWORD|SECRET", key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"compose.yaml: {service} writes {key}"
    for env in k8s_container()["env"]:
        if re.search(r"PASSWORD|SECRET", env["name"]):
            assert "secretKeyRef" in env.get("valueFrom", {}), f"kubernetes/cltool.yaml writes {env['name']}"
    # No URL carries a password (user:password@host): libpq reads PGPASSWORD.
    for path in ["compose.yaml", "mlflow.Dockerfile", "Dockerfile", "kubernetes/cltool.yaml", "systemd/cltool.service"]:
        assert not re.search(r"://[^/@\s:]+:[^/@\s]+@", (DEPLOY / path).read_text()), f"{path} writes a password"


def mlflow_server_options() -> dict[str, str]:
    """The `--option value` pairs of compose.yaml's `mlflow server` command."""
    words = shlex.split(compose_service("mlflow")["command"])
    assert words[:2] == ["mlflow", "server"] and len(words) % 2 == 0, words
    return dict(zip(words[2::2], words[3::2]))


def test_compose_runs_mlflow_with_basic_auth_on_postgresql():
    mlflow = compose_service("mlflow")
    options = mlflow_server_options()
    assert options["--app-name"] == "basic-auth"
    assert {"MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_AUTH_ADMIN_PASSWORD"} <= set(
        mlflow["environment"])
    backend = urllib.parse.urlsplit(options["--backend-store-uri"])
    assert backend.scheme == "postgresql+psycopg"
    # Proxied artifacts (--serve-artifacts is the default) on a volume only the server writes.
    assert "--no-serve-artifacts" not in options
    assert f"mlartifacts:{options['--artifacts-destination']}" in mlflow["volumes"]
    # A request whose Host is not allowed is answered 403: the daemon's and the published port's.
    allowed = re.fullmatch(r"\$\{MLFLOW_ALLOWED_HOSTS:-([^}]+)\}", options["--allowed-hosts"]).group(1).split(",")
    daemon = compose_service()["environment"]
    published = mlflow["ports"][0].split(":")[1]
    daemon_host = urllib.parse.urlsplit(daemon["CLTOOL_MLFLOW__TRACKING_URI"]).netloc
    assert {daemon_host, f"localhost:{published}"} <= set(allowed)
    # The state store has its own database and role; the daemon cannot reach MLflow's tables.
    store = urllib.parse.urlsplit(daemon["CLTOOL_STORE__URL"])
    assert store.scheme == "postgresql+psycopg"
    assert store.path != backend.path and store.username != backend.username
    # Unset, so that the daemon's experiment uses the server's proxied artifact root.
    assert "CLTOOL_MLFLOW__ARTIFACT_LOCATION" not in daemon


def test_the_mlflow_image_adds_auth_and_psycopg_at_the_projects_pins():
    assert compose_service("mlflow")["build"]["dockerfile"] == "mlflow.Dockerfile"
    text = (DEPLOY / "mlflow.Dockerfile").read_text()
    pins = (REPO / "constraints.txt").read_text().splitlines()
    version = re.search(r"^FROM ghcr\.io/mlflow/mlflow:v(\S+)$", text, re.M).group(1)
    assert f"mlflow=={version}" in pins and f'"mlflow[auth]=={version}"' in text
    psycopg = re.search(r'"psycopg\[binary\]==([^"]+)"', text).group(1)
    assert f"psycopg=={psycopg}" in pins


def test_the_mlflow_image_writes_an_auth_config_mlflow_reads():
    text = (DEPLOY / "mlflow.Dockerfile").read_text()
    uri = re.search(r"^ARG AUTH_DATABASE_URI=(\S+)$", text, re.M).group(1)
    lines = [line.replace("${AUTH_DATABASE_URI}", uri)
             for line in re.findall(r"""['"](\[mlflow\]|\w+ = [^'"]+)['"]""", text)]
    path = re.search(r"^ENV MLFLOW_AUTH_CONFIG_PATH=(\S+)$", text, re.M).group(1)
    assert f"> {path}" in text
    config = configparser.ConfigParser()
    config.read_string("\n".join(lines))
    # Every key is one that MLflow's own basic_auth.ini names (read as text: importing the app is slow).
    shipped = Path(importlib.util.find_spec("mlflow").origin).parent / "server" / "auth" / "basic_auth.ini"
    known = set(re.findall(r"^#? ?(\w+) =", shipped.read_text(), re.M))
    assert set(config["mlflow"]) <= known and {"default_permission", "database_uri"} <= set(config["mlflow"])
    # The users live in PostgreSQL, in a database of their own.
    auth = urllib.parse.urlsplit(config["mlflow"]["database_uri"])
    backend = urllib.parse.urlsplit(mlflow_server_options()["--backend-store-uri"])
    assert auth.scheme == "postgresql+psycopg" and auth.path != backend.path


def test_compose_creates_a_non_admin_mlflow_user_for_the_daemon_before_it_starts():
    users = compose_service("mlflow-users")
    compile(users["command"][2], "compose.yaml: mlflow-users", "exec")
    assert users["environment"]["MLFLOW_TRACKING_USERNAME"] == compose_service("mlflow")["environment"][
        "MLFLOW_AUTH_ADMIN_USERNAME"]
    assert users["environment"]["DAEMON_MLFLOW_USER"] == compose_service()["environment"]["MLFLOW_TRACKING_USERNAME"]
    assert compose_service()["depends_on"]["mlflow-users"] == {"condition": "service_completed_successfully"}


# --- kubernetes/cltool.yaml ----------------------------------------------------------------------------


def test_kubernetes_manifest_matches_the_api_schema():
    problems = []
    for doc in k8s_docs():
        try:  # strict: an unknown (say, misspelt) field is an error
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as error:
            problems.append(f"{doc['kind']} {doc['metadata']['name']}: {error.message} at {error.json_path}")
    assert not problems


def test_kubernetes_gives_the_daemon_postgresql_and_an_mlflow_login():
    env = {e["name"]: e for e in k8s_container()["env"]}
    store = urllib.parse.urlsplit(env["CLTOOL_STORE__URL"]["value"])
    assert store.scheme == "postgresql+psycopg" and store.password is None
    assert {"PGPASSWORD", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"} <= set(env)
    assert env["MLFLOW_TRACKING_USERNAME"]["value"] != "admin"
