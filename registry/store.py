"""Open an MLflow tracking + registry store: the client, the SQLite folder, the experiment.

Kept apart from ModelRegistry because it is the one place that turns "the store is not there"
(a missing folder, a refused connection, a locked database) into RegistryUnavailable.
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Any

from registry.errors import RegistryAccessDenied, RegistryError, RegistryUnavailable
from registry.urls import mask_url

log = logging.getLogger(__name__)

# MLflow's error codes for "no such entity" (the REST and SQL stores use both spellings).
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND")
# A tracking server with auth: 401 and 403.
DENIED = ("UNAUTHENTICATED", "PERMISSION_DENIED")


def error_code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", ""))


def sqlite_path(uri: str) -> Path | None:
    """The database file of a `sqlite:///…` URI (relative or absolute), None for other stores."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path in ("", ":memory:") else Path(path)


def default_artifact_location(uri: str) -> str | None:
    """`<db folder>/mlartifacts` beside a SQLite store; mlflow's own default would be `./mlruns`
    relative to whatever directory the daemon happened to start in. None: the server decides."""
    db = sqlite_path(uri)
    return (db.resolve().parent / "mlartifacts").as_uri() if db else None


def _ensure_experiment(client: Any, name: str, artifact_location: str | None) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location)
        except MlflowException as exc:  # another process created it in between
            if error_code(exc) != "RESOURCE_ALREADY_EXISTS":
                raise
            found = client.get_experiment_by_name(name)
    if found.lifecycle_stage == "deleted":
        # A deleted experiment's name stays taken; restoring it is the only way to reuse it.
        log.warning("restoring deleted MLflow experiment %r (%s)", name, found.experiment_id)
        client.restore_experiment(found.experiment_id)
    if artifact_location and found.artifact_location.rstrip("/") != artifact_location.rstrip("/"):
        # Not an error: the location is fixed when the experiment is created; say where it is.
        log.warning(
            "experiment %r keeps artifacts at %s, not %s (fixed when it was created)",
            name, found.artifact_location, artifact_location,
        )
    return found.experiment_id


class GuardedClient:
    """An MlflowClient whose 401/403 answers raise RegistryAccessDenied naming the call and the user,
    instead of an MlflowException with the server's response body in it."""

    def __init__(self, client: Any, tracking_uri: str) -> None:
        self._client, self._uri = client, tracking_uri

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attribute(*args, **kwargs)
            except Exception as exc:
                if error_code(exc) not in DENIED:
                    raise
                raise RegistryAccessDenied(mask_url(self._uri), name, os.environ.get("MLFLOW_TRACKING_USERNAME"),
                                           error_code(exc)) from exc

        return call


def open_store(tracking_uri: str, experiment: str, artifact_location: str | None) -> tuple[Any, str]:
    """(MlflowClient, experiment id); the first call on a new SQLite file creates its tables."""
    try:
        import mlflow

        db = sqlite_path(tracking_uri)
        if db is not None:
            db.resolve().parent.mkdir(parents=True, exist_ok=True)
        # registry_uri given explicitly: otherwise it falls back to mlflow's global setting.
        client = GuardedClient(mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri), tracking_uri)
        return client, _ensure_experiment(client, experiment, artifact_location)
    except RegistryError:
        raise
    except Exception as exc:  # a driver, HTTP or filesystem error all mean the same here
        raise RegistryUnavailable(tracking_uri, exc) from exc
