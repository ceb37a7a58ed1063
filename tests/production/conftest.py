"""Session fixtures for the production topology (see servers.py). Without PostgreSQL 15 on the machine
these tests skip, unless CLTOOL_REQUIRE_TOPOLOGY=1 (as CI sets it): then they fail."""

from __future__ import annotations

import os

import pytest

from tests.production.servers import MlflowServer, Postgres, available


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    why = available()
    if why:
        if os.environ.get("CLTOOL_REQUIRE_TOPOLOGY") == "1":
            pytest.fail(f"CLTOOL_REQUIRE_TOPOLOGY=1 but {why}")
        pytest.skip(why)
    pg = Postgres()
    try:
        yield pg.init()
    finally:
        pg.remove()


@pytest.fixture(scope="session")
def mlflow_server(postgres, tmp_path_factory):
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"), postgres)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def cltool_user(mlflow_server):
    """cltool's own MLflow user: not an admin (it gets MANAGE on the experiment and model it creates)."""
    return mlflow_server.create_user("cltool-daemon", "daemon-Secret-2")
