"""Plain, immutable views of registry state handed to the rest of cltool.

The daemon and the CLI see these, never MLflow entities, so they stay independent of mlflow's
classes (which change between major versions) and can be compared and logged as-is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class VersionInfo:
    """One registered model version, with the metrics of the run that produced it."""

    version: str
    run_id: str
    aliases: tuple[str, ...]
    tags: dict[str, str] = field(hash=False)
    metrics: dict[str, float] = field(hash=False)
    created_at: datetime
    description: str
    source: str = ""
    """Where MLflow keeps the model (``models:/m-…`` in mlflow 3), for lineage in messages."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "run_id": self.run_id,
            "aliases": list(self.aliases),
            "tags": dict(self.tags),
            "metrics": dict(self.metrics),
            "created_at": self.created_at.isoformat(),
            "description": self.description,
            "source": self.source,
        }


@dataclass(frozen=True)
class AliasMove:
    """What an alias pointed at before and after a promote or rollback, for the event log."""

    alias: str
    from_version: str | None
    to_version: str

    @property
    def changed(self) -> bool:
        return self.from_version != self.to_version


def version_info(mv: Any, aliases: tuple[str, ...], metrics: dict[str, float]) -> VersionInfo:
    """Build a VersionInfo from an mlflow ModelVersion (duck-typed: no mlflow import needed)."""
    created = datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, tz=timezone.utc)
    return VersionInfo(
        version=str(mv.version),
        run_id=mv.run_id or "",
        aliases=aliases,
        tags=dict(mv.tags or {}),
        metrics=dict(metrics),
        created_at=created,
        description=mv.description or "",
        source=mv.source or "",
    )
