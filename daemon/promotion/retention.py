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
"""

from __future__ import annotations

import logging

from daemon import events, failpoints
from daemon.context import Context
from registry.models import ModelRegistry
from registry.records import VersionInfo

log = logging.getLogger(__name__)


def prunable(ctx: Context, keep: int) -> list[VersionInfo]:
    """Versions whose weights `prune` would delete, newest first."""
    if keep <= 0:
        return []
    served = {e.version for e in ctx.store.events(types=[events.PROMOTION, events.ROLLBACK]) if e.version}
    versions = ctx.registry.list_versions(with_metrics=False)  # newest first
    return [v for v in versions[keep:]
            if not v.aliases and v.version not in served and ModelRegistry.PRUNED_TAG not in v.tags]


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
