"""ModelRegistry: cltool's one handle on MLflow tracking and the model registry.

Production is whichever version the alias `champion` points at. Only aliases move — never the
deprecated stages — and only the three in `ModelRegistry.ALIASES`.

Alias moves take several MLflow calls and MLflow has no transaction across them, so each move is
ordered so that a crash part-way leaves the champion either untouched or already moved, and
re-running the same call (with the same explicit version) finishes the job. The caller (the
daemon, under its leader lock) records the intended move in its event log before calling.

Nothing connects on construction: the MLflow client, the SQLite folder and the experiment are
created on first use (see store.py), so building a ModelRegistry costs nothing. Every MLflow call
goes through one explicit MlflowClient; only logging a model touches mlflow's global state
(see candidate.py).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from registry.errors import (
    NoChampionError,
    NoRollbackTargetError,
    RegistryAccessDenied,
    RegistryUnavailable,
    UnknownAliasError,
    UnknownVersionError,
    WeightsKeptError,
    WeightsPrunedError,
)
from registry.limits import MAX_VERSION_TAG_VALUE_LENGTH, metrics_for_mlflow, tags_for_mlflow
from registry.records import AliasMove, VersionInfo, version_info
from registry.store import NOT_FOUND, default_artifact_location, error_code, open_store
from registry.urls import mask_url

log = logging.getLogger(__name__)


class ModelRegistry:
    """Runs, versions and aliases of one registered model in one MLflow store."""

    ALIASES = ("champion", "challenger", "previous_champion")
    PRUNED_TAG = "cltool.pruned"  # on a version whose weights were deleted; the value says when and why

    def __init__(
        self,
        tracking_uri: str,
        model_name: str,
        experiment: str = "cltool",
        artifact_location: str | None = None,
    ) -> None:
        self.tracking_uri = tracking_uri
        self.model_name = model_name
        self.experiment = experiment
        self.artifact_location = artifact_location or default_artifact_location(tracking_uri)
        self._client: Any = None
        self._experiment_id: str | None = None
        self._connect_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"ModelRegistry({mask_url(self.tracking_uri)!r}, {self.model_name!r}, experiment={self.experiment!r})"

    # ---- connection ------------------------------------------------------------------------

    def _connect(self) -> Any:
        """The explicit MlflowClient, opened once; a failure is not cached, so a later call retries."""
        with self._connect_lock:
            if self._client is None:
                self._client, self._experiment_id = open_store(
                    self.tracking_uri, self.experiment, self.artifact_location
                )
        return self._client

    def ping(self, timeout: float = 2.0) -> None:
        """Raise RegistryUnavailable unless both the tracking and the registry store answer. A tracking
        server is asked its /health with `timeout` (MLflow's own client retries a refused connection for
        minutes before it gives up; and /health costs the server no password check); a database store
        answers two queries."""
        if self.tracking_uri.startswith(("http://", "https://")):
            import urllib.request

            try:
                # An http(s) URI only (checked above), so no file: or custom scheme can be opened.
                with urllib.request.urlopen(self.tracking_uri.rstrip("/") + "/health", timeout=timeout):  # nosec B310
                    return
            except OSError as exc:
                raise RegistryUnavailable(mask_url(self.tracking_uri), exc) from exc
        try:
            client = self._connect()
            client.get_experiment(self._experiment_id)
            client.search_registered_models(max_results=1)
        except (RegistryUnavailable, RegistryAccessDenied):
            raise
        except Exception as exc:
            raise RegistryUnavailable(mask_url(self.tracking_uri), exc) from exc

    # ---- reading ---------------------------------------------------------------------------

    def _alias_map(self) -> dict[str, str]:
        """alias -> version for the registered model; empty before the first candidate."""
        from mlflow.exceptions import MlflowException

        client = self._connect()
        try:
            model = client.get_registered_model(self.model_name)
        except MlflowException as exc:
            if error_code(exc) in NOT_FOUND:
                return {}
            raise
        except RegistryAccessDenied as exc:
            # A server whose default permission is NO_PERMISSIONS answers 403, not 404, for a model that
            # does not exist yet (there is nothing to grant on); the search shows what the user may see.
            quoted = self.model_name.replace("'", "\\'")
            if exc.code == "PERMISSION_DENIED" and not client.search_registered_models(f"name = '{quoted}'"):
                return {}
            raise
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def _search_versions(self) -> list[Any]:
        """Every ModelVersion of the model, newest first (paged: a store returns at most a page)."""
        client = self._connect()
        quoted = self.model_name.replace("'", "\\'")
        found, token = [], None
        while True:
            page = client.search_model_versions(f"name = '{quoted}'", page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        return sorted(found, key=lambda mv: int(mv.version), reverse=True)

    def _known_versions(self) -> list[str]:
        """Version numbers in ascending order, for error messages."""
        return [str(mv.version) for mv in reversed(self._search_versions())]

    def _run_metrics(self, run_id: str) -> dict[str, float]:
        from mlflow.exceptions import MlflowException

        if not run_id:
            return {}
        try:
            return dict(self._connect().get_run(run_id).data.metrics)
        except MlflowException as exc:  # the run was deleted; the version itself is still valid
            if error_code(exc) in NOT_FOUND:
                return {}
            raise

    def _info(self, mv: Any, aliases: Mapping[str, str], with_metrics: bool = True) -> VersionInfo:
        mine = tuple(sorted(a for a, v in aliases.items() if v == str(mv.version)))
        return version_info(mv, mine, self._run_metrics(mv.run_id) if with_metrics else {})

    def get_version(self, version: str) -> VersionInfo:
        from mlflow.exceptions import MlflowException

        version = str(version)
        # MLflow answers a non-numeric version with a type error, not "not found".
        if not version.isdigit():
            raise UnknownVersionError(self.model_name, version, self._known_versions())
        try:
            mv = self._connect().get_model_version(self.model_name, version)
        except MlflowException as exc:
            if error_code(exc) in NOT_FOUND:
                raise UnknownVersionError(self.model_name, version, self._known_versions()) from None
            raise
        return self._info(mv, self._alias_map())

    def list_versions(self, with_metrics: bool = True) -> list[VersionInfo]:
        """Every version, newest first. `with_metrics=False` skips reading each version's run (one
        store query per version) and leaves `metrics` empty."""
        versions = self._search_versions()
        aliases = self._alias_map()
        return [self._info(mv, aliases, with_metrics) for mv in versions]

    def alias_version(self, alias: str) -> str | None:
        """The version `alias` points at, in one registry call (what `cltool serve` polls)."""
        self._check_alias(alias)
        return self._alias_map().get(alias)

    def get_alias(self, alias: str) -> VersionInfo | None:
        self._check_alias(alias)
        version = self._alias_map().get(alias)
        return None if version is None else self.get_version(version)

    # ---- writing ---------------------------------------------------------------------------

    def log_candidate(
        self,
        *,
        model_dir: Path,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        json_artifacts: Mapping[str, Any],
        files: Sequence[Path] = (),
        description: str = "",
        input_example: list[str] | None = None,
        datasets: Sequence[Mapping[str, Any]] = (),
    ) -> VersionInfo:
        """Log a fine-tuned model folder as one run and register it as a new version (no alias).

        `datasets` become the run's MLflow dataset inputs (see registry/review.py for their shape)."""
        from registry.candidate import log_and_register

        client = self._connect()
        _, version = log_and_register(
            client=client,
            tracking_uri=self.tracking_uri,
            experiment_id=self._experiment_id,
            model_name=self.model_name,
            model_dir=model_dir,
            run_name=run_name,
            params=params,
            metrics=metrics,
            tags=tags,
            json_artifacts=json_artifacts,
            files=list(files),
            description=description,
            input_example=input_example,
            datasets=datasets,
        )
        return self.get_version(version)

    def _check_alias(self, alias: str) -> None:
        if alias not in self.ALIASES:
            raise UnknownAliasError(alias, self.ALIASES)

    def set_alias(self, alias: str, version: str) -> None:
        self._check_alias(alias)
        version = self.get_version(version).version  # a clear error for an unknown version
        self._connect().set_registered_model_alias(self.model_name, alias, version)

    def clear_alias(self, alias: str) -> None:
        """Remove `alias` (nothing to do when no version holds it)."""
        self._check_alias(alias)
        if alias in self._alias_map():
            self._connect().delete_registered_model_alias(self.model_name, alias)

    def mark_challenger(self, version: str) -> None:
        """A rejected or not-yet-decided candidate: kept visible in the UI beside the champion."""
        self.set_alias("challenger", version)

    def promote(self, version: str) -> AliasMove:
        """`version` becomes champion; the old champion becomes previous_champion.

        Order: previous_champion first, then champion, then challenger cleared. A crash between
        steps leaves the old champion in place (and maybe also as previous_champion); calling
        promote(version) again completes the move. Promoting the champion again changes nothing.
        """
        version = self.get_version(version).version
        aliases = self._alias_map()
        current = aliases.get("champion")
        client = self._connect()
        if current != version:
            if current is not None:
                client.set_registered_model_alias(self.model_name, "previous_champion", current)
            client.set_registered_model_alias(self.model_name, "champion", version)
        if aliases.get("challenger") == version:
            client.delete_registered_model_alias(self.model_name, "challenger")
        move = AliasMove("champion", current, version)
        log.info("promote %s: champion %s -> %s", self.model_name, current, version)
        return move

    def rollback(self, to: str | None = None) -> AliasMove:
        """champion := `to` (default: previous_champion); previous_champion := the demoted version.

        Demoted becomes previous_champion so a second rollback() undoes the first, and so the UI
        always shows which version was live just before. Order: previous_champion first, then
        champion, so a crash in between leaves the champion untouched and rollback(to=same)
        completes it (a caller retrying should pass the version it resolved the first time).
        """
        aliases = self._alias_map()
        current = aliases.get("champion")
        if current is None:
            raise NoChampionError(self.model_name)
        target = to if to is not None else aliases.get("previous_champion")
        if target is None:
            raise NoRollbackTargetError(self.model_name, self._known_versions())
        target = self.get_version(str(target)).version
        if target == current:
            return AliasMove("champion", current, current)
        client = self._connect()
        client.set_registered_model_alias(self.model_name, "previous_champion", current)
        client.set_registered_model_alias(self.model_name, "champion", target)
        if aliases.get("challenger") == target:
            client.delete_registered_model_alias(self.model_name, "challenger")
        log.info("rollback %s: champion %s -> %s", self.model_name, current, target)
        return AliasMove("champion", current, target)

    def set_tags(self, version: str, tags: Mapping[str, str]) -> None:
        """Tag the version and its run alike, so the run page never contradicts the version page."""
        info = self.get_version(version)
        client = self._connect()
        # Model-version tag values may be far longer than run tags (100,000 characters).
        for key, value in tags_for_mlflow(tags, limit=MAX_VERSION_TAG_VALUE_LENGTH).items():
            client.set_model_version_tag(self.model_name, info.version, key, value)
        if info.run_id:
            for key, value in tags_for_mlflow(tags).items():
                client.set_tag(info.run_id, key, value)

    def log_metrics(self, version: str, metrics: Mapping[str, float]) -> None:
        """Add step-0 metrics to the run that logged `version` (figures known only after its registration)."""
        from mlflow.entities import Metric

        info = self.get_version(version)
        if not metrics or not info.run_id:
            return
        now_ms = int(time.time() * 1000)
        self._connect().log_batch(info.run_id, metrics=[Metric(key, value, timestamp=now_ms, step=0)
                                                        for key, value in metrics_for_mlflow(metrics).items()])

    def delete_weights(self, version: str, note: str, after_files: Callable[[], None] | None = None) -> None:
        """Delete a version's model files (its MLflow LoggedModel's artifacts) and tag it `cltool.pruned`
        with `note`. Its registry entry, run, params, metrics and reports stay, so it can still be
        reviewed; it can no longer be downloaded, served or promoted. Refused while an alias points at it.

        Files first, tag second: a crash between the two leaves an untagged version without files,
        and calling again finishes (deleting what is already gone is not an error)."""
        info = self.get_version(version)
        if info.aliases:
            raise WeightsKeptError(self.model_name, info.version, f"it is the {' and '.join(info.aliases)}")
        if not info.source.startswith("models:/m-"):
            raise WeightsKeptError(self.model_name, info.version,
                                   f"its source {info.source!r} is not an MLflow logged model")
        client = self._connect()
        location = client.get_logged_model(info.source.removeprefix("models:/")).artifact_location
        self._artifacts(location).delete_artifacts()
        if after_files is not None:  # a crash test's hook between the two steps
            after_files()
        client.set_model_version_tag(self.model_name, info.version, self.PRUNED_TAG, note)
        log.info("deleted the weights of %s version %s (%s)", self.model_name, info.version, note)

    def has_weights(self, version: str) -> bool:
        """Whether the version's model files are in the artifact store (not pruned, not lost)."""
        info = self.get_version(version)
        if self.PRUNED_TAG in info.tags or not info.source.startswith("models:/m-"):
            return False
        location = self._connect().get_logged_model(info.source.removeprefix("models:/")).artifact_location
        return any(True for _ in self._artifacts(location).list_artifacts())

    def _artifacts(self, location: str) -> Any:
        """The artifact repository at `location`, resolved against this registry's tracking server (a proxied
        `mlflow-artifacts:` location means nothing without it; mlflow's global tracking URI is never set)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(location, tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)

    def delete_version(self, version: str) -> None:
        """Remove a registered version that holds no alias (an orphan no decision names: `cltool fsck
        --repair`). Its MLflow run, metrics and reports stay."""
        info = self.get_version(version)
        if info.aliases:
            raise WeightsKeptError(self.model_name, info.version, f"it is the {' and '.join(info.aliases)}")
        self._connect().delete_model_version(self.model_name, info.version)
        log.info("deleted %s version %s from the registry", self.model_name, info.version)

    def download_model(self, version: str, dst: Path) -> Path:
        """A folder with config, safetensors weights and tokenizer, ready for from_pretrained."""
        from registry.download import download_transformers_model

        info = self.get_version(version)
        if self.PRUNED_TAG in info.tags:
            raise WeightsPrunedError(self.model_name, info.version, info.tags[self.PRUNED_TAG])
        version = info.version
        return download_transformers_model(
            client=self._connect(),
            tracking_uri=self.tracking_uri,
            model_name=self.model_name,
            version=version,
            dst=Path(dst),
        )

    def read_json_artifact(self, version: str, name: str) -> Any:
        """A JSON artifact `<name>.json` of the run behind `version` (eval report, lineage, config)."""
        import json
        import tempfile

        from registry.errors import MissingArtifactError

        info = self.get_version(version)
        with tempfile.TemporaryDirectory() as scratch:
            try:
                path = self._connect().download_artifacts(info.run_id, f"{name}.json", scratch)
            except Exception as exc:  # mlflow raises several types for a missing artifact
                raise MissingArtifactError(version, f"{name}.json", type(exc).__name__) from exc
            return json.loads(Path(path).read_text(encoding="utf-8"))
