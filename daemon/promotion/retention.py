"""Retention: which registered versions keep their model weights.

Every cycle registers its candidate (about 88 MB with MiniLM) and most candidates are rejected, so a
daemon that runs hourly would fill its disk within a year. After each cycle, and on `cltool prune`,
the weights of versions that can no longer serve are deleted. Their registry entry, MLflow run,
params, metrics and reports stay, tagged `cltool.pruned`, so every decision remains reviewable.

A version keeps its weights while any of these holds:
- it is among the newest `mlflow.keep_versions` versions (recent rejects stay promotable by hand);
- an alias points at it (champion, previous_champion, challenger);
- it ever was champion (a promotion or rollback names it in the event log), so it stays a rollback target.
`mlflow.keep_versions = 0` keeps every version's weights.

Later still, a version older than the newest `mlflow.keep_runs` that never served loses the rest: its
registry entry, MLflow run, metrics and reports (`remove`), so the MLflow store is bounded too. Its
decision, reasons and metrics stay in the event log, and a `model.removed` event says what went and when.
`mlflow.keep_runs = 0` keeps every run.
"""

from __future__ import annotations

import logging

from daemon import events, failpoints
from daemon.context import Context
from registry import removal
from registry.models import ModelRegistry
from registry.records import VersionInfo

log = logging.getLogger(__name__)


def _never_served(ctx: Context, keep: int) -> list[VersionInfo]:
    """Versions older than the newest `keep` that hold no alias and never were champion, newest first."""
    served = {e.version for e in ctx.store.events(types=[events.PROMOTION, events.ROLLBACK]) if e.version}
    versions = ctx.registry.list_versions(with_metrics=False)  # newest first
    return [v for v in versions[keep:] if not v.aliases and v.version not in served]


def prunable(ctx: Context, keep: int) -> list[VersionInfo]:
    """Versions whose weights `prune` would delete, newest first."""
    if keep <= 0:
        return []
    return [v for v in _never_served(ctx, keep) if ModelRegistry.PRUNED_TAG not in v.tags]


def removable(ctx: Context, keep_runs: int) -> list[VersionInfo]:
    """Versions whose run and registry entry `remove` would delete, newest first."""
    return [] if keep_runs <= 0 else _never_served(ctx, keep_runs)


def prune(ctx: Context, keep: int, *, actor: str, dry_run: bool = False) -> list[VersionInfo]:
    """Delete the weights of every prunable version (none with dry_run); returns them.

    Under the alias lock: no promote or rollback can pick a version while its weights go."""
    with ctx.keeper.lock():
        found = prunable(ctx, keep)
        if dry_run:
            return found
        for info in found:
            note = (f"weights deleted {ctx.clock().isoformat(timespec='seconds')} by {actor}: older than the "
                    f"newest {keep} versions (mlflow.keep_versions) and never champion")
            ctx.registry.delete_weights(info.version, note,
                                        after_files=lambda: failpoints.hit("retention.after_delete"))
            ctx.models.evict(info.version)  # the local copy too: nothing may serve it any more
            ctx.store.append(events.MODEL_PRUNED, note, version=info.version, actor=actor)
    if found:
        log.info("retention: deleted the weights of %d old version(s): %s", len(found),
                 ", ".join(f"v{v.version}" for v in found))
    return found


def remove(ctx: Context, keep_runs: int, *, actor: str, dry_run: bool = False) -> list[VersionInfo]:
    """Remove every removable version from MLflow (none with dry_run); returns them.

    The event first, then the deletes: a crash in between leaves the version registered, and the next pass
    deletes it without recording it twice. Under the alias lock, like `prune`."""
    with ctx.keeper.lock():
        found = removable(ctx, keep_runs)
        if dry_run:
            return found
        recorded = {e.version for e in ctx.store.events(types=[events.MODEL_REMOVED])}
        for info in found:
            if info.version not in recorded:
                note = (f"run {info.run_id or '-'} and registry entry removed "
                        f"{ctx.clock().isoformat(timespec='seconds')} by {actor}: older than the newest {keep_runs} "
                        f"versions (mlflow.keep_runs) and never champion; its decision stays in this log")
                ctx.store.append(events.MODEL_REMOVED, note, version=info.version, actor=actor,
                                 payload={"run_id": info.run_id, "decision": info.tags.get("cltool.decision"),
                                          "reasons": info.tags.get("cltool.reasons", "")})
            removal.remove_version(ctx.registry, info.version,
                                   after_run=lambda: failpoints.hit("retention.after_run_removed"))
            ctx.models.evict(info.version)
    if found:
        log.info("retention: removed %d old version(s) and their runs from MLflow: %s", len(found),
                 ", ".join(f"v{v.version}" for v in found))
    return found


def apply(ctx: Context, *, actor: str) -> None:
    """The daemon's pass after each cycle: weights by mlflow.keep_versions, runs by mlflow.keep_runs, then
    MLflow's garbage collection once enough soft-deleted runs piled up (embedded store only)."""
    mlflow = ctx.settings.mlflow
    prune(ctx, mlflow.keep_versions, actor=actor)
    if remove(ctx, mlflow.keep_runs, actor=actor):
        removal.collect_garbage(ctx.registry)
