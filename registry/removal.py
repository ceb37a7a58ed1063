"""Removing an old version for good: its registry entry, its MLflow run and every file it left.

Retention first deletes a rejected version's weights (`ModelRegistry.delete_weights`); much later, when the
version is older than `mlflow.keep_runs`, it removes the rest, so the MLflow store stops growing with every
cycle. The decision, its reasons and its metrics stay in cltool's event log (the audit trail is never
pruned); MLflow keeps a tombstone of the version, so its number is never given out again.

Order, each step safe to repeat: the logged model's files and the run's artifacts, then the run and the
logged model marked deleted, then the registry entry. A crash part-way leaves the version registered, and
calling `remove_version` again finishes it. MLflow's deletes are soft; `collect_garbage` makes them final.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from registry.errors import WeightsKeptError
from registry.store import NOT_FOUND, error_code, sqlite_path
from registry.urls import mask_url

if TYPE_CHECKING:
    from registry.models import ModelRegistry

log = logging.getLogger(__name__)

GC_BACKLOG = 20
"""Soft-deleted runs `collect_garbage` lets pile up before it runs `mlflow gc` (a few seconds of start-up)."""


def remove_version(registry: ModelRegistry, version: str, after_run: Callable[[], None] | None = None) -> None:
    """Delete every trace of `version` from MLflow (refused while an alias points at it)."""
    info = registry.get_version(version)
    if info.aliases:
        raise WeightsKeptError(registry.model_name, info.version, f"it is the {' and '.join(info.aliases)}")
    client = registry._connect()
    model_id = info.source.removeprefix("models:/") if info.source.startswith("models:/m-") else None
    logged = _found(lambda: client.get_logged_model(model_id)) if model_id else None  # None once deleted
    run = _found(lambda: client.get_run(info.run_id)) if info.run_id else None  # None once collected
    for location in ([logged.artifact_location] if logged else []) + ([run.info.artifact_uri] if run else []):
        registry._artifacts(location).delete_artifacts()
    if run is not None and run.info.lifecycle_stage != "deleted":
        client.delete_run(info.run_id)
    if logged is not None:
        client.delete_logged_model(model_id)
    if after_run is not None:  # a crash test's hook: the run is deleted, the version still registered
        after_run()
    client.delete_model_version(registry.model_name, info.version)
    log.info("removed %s version %s and its run %s", registry.model_name, info.version, info.run_id or "-")


def _found(get: Callable[[], Any]) -> Any:
    """What `get` returns, None where MLflow answers that it does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return get()
    except MlflowException as exc:
        if error_code(exc) in NOT_FOUND:
            return None
        raise


def collect_garbage(registry: ModelRegistry, *, force: bool = False) -> int | None:
    """Make MLflow's soft deletes in cltool's experiment final with `mlflow gc`; the number of runs collected.

    Only for an SQLite tracking store (the embedded default, which cltool owns): a tracking server or a
    shared database is collected by its operator (`mlflow gc` on the server), and None is returned. Waits
    until GC_BACKLOG deleted runs have piled up unless `force`."""
    from mlflow.entities import ViewType

    if sqlite_path(registry.tracking_uri) is None:
        return None
    client = registry._connect()
    deleted, token = [], None
    while True:
        page = client.search_runs([registry._experiment_id], run_view_type=ViewType.DELETED_ONLY,
                                  max_results=1000, page_token=token)
        deleted.extend(run.info.run_id for run in page)
        token = page.token
        if not token:
            break
    if not deleted or (len(deleted) < GC_BACKLOG and not force):
        return 0
    env = {**os.environ, "MLFLOW_TRACKING_URI": registry.tracking_uri}
    done = subprocess.run(
        [sys.executable, "-m", "mlflow", "gc", "--backend-store-uri", registry.tracking_uri,
         "--tracking-uri", registry.tracking_uri, "--run-ids", ",".join(deleted)],
        env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        log.warning("mlflow gc on %s failed (%s); the deleted runs stay until the next try",
                    mask_url(registry.tracking_uri), last)
        return 0
    log.info("mlflow gc: %d deleted run(s) collected from %s", len(deleted), mask_url(registry.tracking_uri))
    return len(deleted)
