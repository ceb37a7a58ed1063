"""deploy/: the files name real settings, commands and endpoints, and their pins agree with the project's.

CI has no Docker engine and no cluster, so nothing here starts a container. What is checked is what
drifts silently between the code and these files: a renamed setting, a moved endpoint, a torch pin.
"""

from __future__ import annotations

import functools
import re
import shlex
import urllib.request
from pathlib import Path

import pytest

from daemon.cli.main import cli
from daemon.config import ObserveSection, Settings
from daemon.telemetry import HealthServer, Metrics

yaml = pytest.importorskip("yaml")  # PyYAML arrives with mlflow; not a direct dependency

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
PORT = ObserveSection.model_fields["port"].default


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
def compose_service() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]["cltool"]


@functools.cache  # each file is read and parsed once; callers only read the result
def k8s_pod() -> dict:
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "cltool.yaml").read_text()))
    return next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]


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
    found += [("kubernetes/cltool.yaml", e["name"], str(e["value"])) for e in k8s_container()["env"]]
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
