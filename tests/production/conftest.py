"""Session fixtures for the production topology (see servers.py). Without PostgreSQL 15 on the machine
these tests skip, unless CLTOOL_REQUIRE_TOPOLOGY=1 (as CI sets it): then they fail."""

from __future__ import annotations

import pytest

from tests.production.servers import MlflowServer, running_postgres


@pytest.fixture(scope="session")
def postgres():
    with running_postgres() as pg:
        yield pg


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
