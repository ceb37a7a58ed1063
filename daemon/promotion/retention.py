"""Retention: which registered versions keep their model weights.

Every cycle registers its candidate (about 44 MB with MiniLM in float16) and most candidates are rejected, so a
daemon that runs hourly would fill its disk within a year. After each cycle, and on `cltool prune`,
the weights of versions that can no longer serve are deleted. Their registry entry, MLflow run,
params, metrics and reports stay, tagged `cltool.pruned`, so every decision remains reviewable.

A version keeps its weights while any of these holds:
- it is among the newest `mlflow.keep_versions` versions (recent rejects stay promotable by hand);
- an alias points at it (champion, previous_champion, challenger);
- it is one of the `mlflow.keep_champions` versions that were champion most recently (a promotion or
  rollback names it in the event log), so it stays a rollback target; 0 = every former champion.
`mlflow.keep_versions = 0` keeps every version's weights.

Later still, a version older than the newest `mlflow.keep_runs` that never served loses the rest: its
registry entry, MLflow run, metrics and reports (`remove`), so the MLflow store is bounded too. Its
decision, reasons and metrics stay in the event log, and a `model.removed` event says what went and when.
A former champion is never removed (only its weights may go): the audit trail of what served stays whole.
`mlflow.keep_runs = 0` keeps every run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from daemon import events, failpoints
from daemon.context import Context
from registry import removal
from registry.models import ModelRegistry
from registry.records import VersionInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Listing:
    """One read of the registry and the event log that a retention pass decides on."""

    versions: list[VersionInfo]  # newest first
    champions: list[str]  # every version that was champion, the most recent first

    @classmethod
    def read(cls, ctx: Context) -> _Listing:
        moves = ctx.store.events(types=[events.PROMOTION, events.ROLLBACK], newest_first=True)
        champions = list(dict.fromkeys(e.version for e in moves if e.version))
        return cls(ctx.registry.list_versions(with_metrics=False), champions)

    def prunable(self, keep: int, keep_champions: int) -> list[tuple[VersionInfo, str]]:
        """Versions whose weights may go, with why, newest first."""
        if keep <= 0:
            return []
        kept = set(self.champions[:keep_champions] if keep_champions else self.champions)
        found = []
        for info in self.versions[keep:]:
            if info.aliases or info.version in kept or ModelRegistry.PRUNED_TAG in info.tags:
                continue
            found.append((info, "never champion" if info.version not in self.champions else
                          f"a former champion older than the newest {keep_champions} (mlflow.keep_champions)"))
        return found

    def removable(self, keep_runs: int) -> list[VersionInfo]:
        """Versions whose run and registry entry may go (never champion, no alias), newest first."""
        if keep_runs <= 0:
            return []
        return [v for v in self.versions[keep_runs:] if not v.aliases and v.version not in self.champions]


def _keep_champions(ctx: Context, keep_champions: int | None) -> int:
    return ctx.settings.mlflow.keep_champions if keep_champions is None else keep_champions


def prunable(ctx: Context, keep: int, keep_champions: int | None = None) -> list[VersionInfo]:
    """Versions whose weights `prune` would delete, newest first."""
    return [info for info, _ in _Listing.read(ctx).prunable(keep, _keep_champions(ctx, keep_champions))]


def removable(ctx: Context, keep_runs: int) -> list[VersionInfo]:
    """Versions whose run and registry entry `remove` would delete, newest first."""
    return _Listing.read(ctx).removable(keep_runs)


def prune(ctx: Context, keep: int, *, actor: str, dry_run: bool = False,
          keep_champions: int | None = None) -> list[VersionInfo]:
    """Delete the weights of every prunable version (none with dry_run); returns them.

    Under the alias lock: no promote or rollback can pick a version while its weights go."""
    with ctx.keeper.lock():
        return _prune(ctx, _Listing.read(ctx), keep, _keep_champions(ctx, keep_champions), actor, dry_run)


def remove(ctx: Context, keep_runs: int, *, actor: str, dry_run: bool = False) -> list[VersionInfo]:
    """Remove every removable version from MLflow (none with dry_run); returns them.

    The event first, then the deletes: a crash in between leaves the version registered, and the next pass
    deletes it without recording it twice. Under the alias lock, like `prune`."""
    with ctx.keeper.lock():
        return _remove(ctx, _Listing.read(ctx), keep_runs, actor, dry_run)


def both(ctx: Context, keep: int, keep_runs: int, *, actor: str, dry_run: bool = False,
         keep_champions: int | None = None) -> tuple[list[VersionInfo], list[VersionInfo]]:
    """`prune` and `remove` under one hold of the alias lock, decided on one listing of the registry:
    (the versions that lost their weights, the versions removed)."""
    with ctx.keeper.lock():
        listing = _Listing.read(ctx)
        pruned = _prune(ctx, listing, keep, _keep_champions(ctx, keep_champions), actor, dry_run)
        # Pruning only tags versions, which removal does not look at: the same listing decides both.
        return pruned, _remove(ctx, listing, keep_runs, actor, dry_run)


def _prune(ctx: Context, listing: _Listing, keep: int, keep_champions: int, actor: str,
           dry_run: bool) -> list[VersionInfo]:
    found = listing.prunable(keep, keep_champions)
    if dry_run:
        return [info for info, _ in found]
    for info, why in found:
        note = (f"weights deleted {ctx.clock().isoformat(timespec='seconds')} by {actor}: older than the "
                f"newest {keep} versions (mlflow.keep_versions) and {why}")
        ctx.registry.delete_weights(info.version, note, after_files=lambda: failpoints.hit("retention.after_delete"))
        ctx.models.evict(info.version)  # the local copy too: nothing may serve it any more
        ctx.store.append(events.MODEL_PRUNED, note, version=info.version, actor=actor)
    if found:
        log.info("retention: deleted the weights of %d old version(s): %s", len(found),
                 ", ".join(f"v{info.version}" for info, _ in found))
    return [info for info, _ in found]


def _remove(ctx: Context, listing: _Listing, keep_runs: int, actor: str, dry_run: bool) -> list[VersionInfo]:
    found = listing.removable(keep_runs)
    if dry_run:
        return found
    recorded = {e.version for e in ctx.store.events(types=[events.MODEL_REMOVED])} if found else set()
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
    """The daemon's pass after each cycle: weights by mlflow.keep_versions and keep_champions, runs by
    mlflow.keep_runs (one listing of the registry for both), then MLflow's garbage collection once enough
    soft-deleted runs piled up (embedded store only)."""
    mlflow = ctx.settings.mlflow
    _, removed = both(ctx, mlflow.keep_versions, mlflow.keep_runs, actor=actor)
    if removed:
        removal.collect_garbage(ctx.registry)
