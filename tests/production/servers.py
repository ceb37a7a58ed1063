"""The production topology, for real, on loopback: a throwaway PostgreSQL 15 and an `mlflow server
--app-name basic-auth` on it with proxied artifacts, plus a non-admin MLflow user for cltool.

PostgreSQL refuses to run as root: as root, initdb and the server run as the unprivileged system user
`cltool-pg` (created when missing). Everything runs in one temporary folder and is stopped by `stop()`,
pass or fail. Nothing listens beyond 127.0.0.1.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from base64 import b64encode
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

PG_BIN = Path(os.environ.get("CLTOOL_PG_BIN", "/usr/lib/postgresql/15/bin"))
PG_USER = "cltool-pg"
MLFLOW = str(Path(sys.executable).parent / "mlflow")


def clean_environ() -> dict[str, str]:
    """os.environ without MLflow's URI variables: in-process tests earlier in the session set them
    (mlflow.set_tracking_uri writes MLFLOW_TRACKING_URI), and a child must get only the URIs it is given; nor the tests' inline training: production trains
    in a child, as by default."""
    return {k: v for k, v in os.environ.items()
            if k not in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "CLTOOL_TRAIN__LAUNCHER")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available() -> str | None:
    """None when the topology can start here, else why not."""
    if not (PG_BIN / "initdb").is_file():
        return f"PostgreSQL 15 is not installed ({PG_BIN}/initdb; Debian package postgresql, or set CLTOOL_PG_BIN)"
    if os.geteuid() == 0 and shutil.which("useradd") is None:
        try:
            pwd.getpwnam(PG_USER)
        except KeyError:
            return f"running as root and cannot create the unprivileged user {PG_USER} (no useradd)"
    return None


def require() -> None:
    """Skip the calling test when the topology cannot start here; fail instead under
    CLTOOL_REQUIRE_TOPOLOGY=1 (CI), where a skip would hide that nothing production-shaped ran."""
    import pytest

    why = available()
    if why:
        if os.environ.get("CLTOOL_REQUIRE_TOPOLOGY") == "1":
            pytest.fail(f"CLTOOL_REQUIRE_TOPOLOGY=1 but {why}")
        pytest.skip(why)


@contextmanager
def running_postgres() -> Iterator["Postgres"]:
    """A fresh PostgreSQL for the `with` block (the test skips or fails first where none can start)."""
    require()
    pg = Postgres()
    try:
        yield pg.init()
    finally:
        pg.remove()


def wait_for(predicate, timeout: float, what: str, every: float = 0.2):
    """Poll `predicate` until it returns something true (returned), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def _pg_user() -> str | None:
    """The user the server runs as: None = this process's own user (not root)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER],
                       check=True, capture_output=True)
    return PG_USER


class Postgres:
    def __init__(self) -> None:
        # Under /tmp, not pytest's tmp_path: that is root's and 0700, which the server's user cannot enter.
        self.root = Path(tempfile.mkdtemp(prefix="cltool-pg-"))
        self.data, self.port = self.root / "pgdata", free_port()
        self.user = _pg_user()
        self.log = self.root / "postgres.log"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), user=self.user, cwd=self.root, capture_output=True, text=True,
                              check=check, timeout=120)

    def init(self) -> "Postgres":
        if self.user:
            shutil.chown(self.root, self.user)
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-instructions", "-N")
        return self.start()

    def start(self) -> "Postgres":
        # fsync off: a throwaway test server; loopback only; its socket in our folder, not /var/run.
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "-o",
                  f"-h 127.0.0.1 -p {self.port} -k {self.root} -c fsync=off -c full_page_writes=off", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str, driver: str = "postgresql+psycopg") -> str:
        return f"{driver}://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        self._run(str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-q", "-c",
                  f'CREATE DATABASE "{name}"')
        return self.url(name)


@dataclass
class User:
    name: str
    password: str

    def env(self) -> dict[str, str]:
        return {"MLFLOW_TRACKING_USERNAME": self.name, "MLFLOW_TRACKING_PASSWORD": self.password}


class MlflowServer:
    """`mlflow server --app-name basic-auth` on PostgreSQL, artifacts proxied to a local folder; or,
    without `pg`, a plain server on SQLite (no auth), e.g. to bring MLflow back during an outage test."""

    ADMIN = User("admin", "admin-Secret-1")

    def __init__(self, root: Path, pg: Postgres | None, port: int | None = None) -> None:
        self.root, self.pg, self.port = root, pg, port or free_port()
        self.artifacts = root / "mlartifacts"
        self.log_path = root / "mlflow-server.log"
        self.process: subprocess.Popen | None = None
        self.backend = pg.create_database("mlflow") if pg else f"sqlite:///{root / 'mlflow.db'}"
        self.auth_db = pg.create_database("mlflow_auth") if pg else None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 180) -> "MlflowServer":
        self.artifacts.mkdir(parents=True, exist_ok=True)
        ini = self.root / "basic_auth.ini"
        ini.write_text("[mlflow]\ndefault_permission = NO_PERMISSIONS\n"
                       f"database_uri = {self.auth_db}\nadmin_username = {self.ADMIN.name}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                       "auth_cache_ttl_seconds = 60\n")  # as deploy/mlflow.Dockerfile: no PBKDF2 per request
        env = dict(os.environ, MLFLOW_AUTH_CONFIG_PATH=str(ini), MLFLOW_FLASK_SERVER_SECRET_KEY="test-secret-key",
                   MLFLOW_AUTH_ADMIN_PASSWORD=self.ADMIN.password)
        auth = ["--app-name", "basic-auth"] if self.auth_db else []
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [MLFLOW, "server", *auth, "--backend-store-uri", self.backend,
                 "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
                 "--workers", "1"],
                cwd=self.root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({self.process.returncode}):\n{self.log_tail()}")
            if self.healthy():
                return self
            time.sleep(0.5)
        raise RuntimeError(f"mlflow server did not answer /health within {timeout:.0f} s:\n{self.log_tail()}")

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as reply:
                return reply.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def create_user(self, name: str, password: str) -> User:
        """A non-admin user, through the basic-auth REST API as the admin."""
        import json

        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/users/create", method="POST",
            data=json.dumps({"username": name, "password": password}).encode(),
            headers={"Content-Type": "application/json",
                     "Authorization": "Basic " + b64encode(f"{self.ADMIN.name}:{self.ADMIN.password}".encode()).decode()})
        with urllib.request.urlopen(request, timeout=30) as reply:
            assert reply.status == 200, reply.read()
        return User(name, password)
