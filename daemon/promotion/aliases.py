"""Alias moves and their history rows, made together under one lock shared by daemon and CLI.

Protocol: (1) under the `aliases` lock, append the `promotion`/`rollback` event (the intent, which is
also the history row); (2) move the aliases in MLflow (idempotent); (3) append `alias.synced`
naming the intent. A crash between (1) and (3) leaves an intent without its `alias.synced`;
`reconcile()` (run at every start and before every manual move) finishes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from daemon import events, failpoints
from daemon.errors import PromotionRefused
from daemon.state.locks import ALIAS_LOCK, Locks
from daemon.state.store import Event, StateStore

# The actor of rollbacks made by the post-promotion watch (daemon/watch.py); metrics tell them apart.
AUTO_ROLLBACK_ACTOR = "daemon:auto-rollback"

log = logging.getLogger(__name__)

INTENT_TYPES = events.ALIAS_MOVES
LOCK_WAIT_SECONDS = 30.0
LOCK_HINT = ("A cycle or another `cltool promote/rollback` is moving aliases right now; "
             "try again in a moment.")


def _check_weights(info) -> None:  # noqa: ANN001 (a registry VersionInfo)
    """Refuse to serve a version whose weights retention deleted (daemon/retention.py)."""
    from registry.models import ModelRegistry

    if ModelRegistry.PRUNED_TAG in info.tags:
        raise PromotionRefused(info.version, f"its weights were deleted ({info.tags[ModelRegistry.PRUNED_TAG]})")


def recorded_aliases(store: StateStore) -> dict[str, str | None]:
    """Where cltool's last synced alias moves left each alias: champion and previous_champion as the last
    `alias.synced` names them; challenger the last challenger move's version, unless a later promotion or
    rollback took that version (MLflow then clears it)."""
    synced = store.last_event(events.ALIAS_SYNCED)
    found: dict[str, str | None] = {"champion": None, "challenger": None, "previous_champion": None}
    if synced is None:
        return found
    found["champion"] = synced.payload.get("champion")
    found["previous_champion"] = synced.payload.get("previous_champion")
    done = {e.payload.get("intent_id") for e in store.events(types=[events.ALIAS_SYNCED])}
    for move in store.events(types=list(events.ALIAS_MOVES)):
        if move.id not in done:
            continue  # an interrupted move: the next start-up or manual move finishes it
        if move.type == events.CHALLENGER:
            found["challenger"] = move.version
        elif move.payload.get("to", move.version) == found["challenger"]:
            found["challenger"] = None
    return found


@dataclass(frozen=True)
class Move:
    event: Event
    champion: str | None
    previous_champion: str | None


class AliasKeeper:
    def __init__(self, store: StateStore, registry, owner: str, lock_wait: float = LOCK_WAIT_SECONDS) -> None:
        self.store, self.registry, self.owner, self.lock_wait = store, registry, owner, lock_wait
        self.locks = Locks(store)

    def lock(self):
        return self.locks.held(ALIAS_LOCK, self.owner, ttl_seconds=300, wait_seconds=self.lock_wait, hint=LOCK_HINT)

    # -- the three moves -----------------------------------------------------------------------
    def promote(self, version: str, reason: str, *, actor: str, force: bool = False,
                decision: str | None = None) -> Move:
        """Make `version` champion. A version the gate rejected needs force=True and is recorded as forced."""
        info = self.registry.get_version(version)
        decided = decision or info.tags.get("cltool.decision")
        if decided == "REJECT" and not force:
            raise PromotionRefused(version, "the gate rejected it (cltool.decision=REJECT); pass --force with a "
                                            "--reason to promote it anyway")
        with self.lock():
            self.reconcile(locked=True)
            _check_weights(self.registry.get_version(version))  # under the lock: retention prunes under it too
            current = self.registry.get_alias("champion")
            if current is not None and current.version == version:
                raise PromotionRefused(version, "it is already the champion")
            event = self.store.append(events.PROMOTION, reason, version=version, actor=actor, payload={
                "op": "promote", "to": version, "from": current.version if current else None,
                "forced": bool(force and decided == "REJECT"), "gate_decision": decided})
            failpoints.hit("promote.after_intent")
            return self.apply(event)

    def rollback(self, reason: str, *, actor: str, to: str | None = None) -> Move:
        with self.lock():
            self.reconcile(locked=True)
            current = self.registry.get_alias("champion")
            target = to or self.alias_version("previous_champion")
            if current is None:
                raise PromotionRefused(to or "(none)", "there is no champion to roll back")
            if target is None:
                raise PromotionRefused("(none)", "there is no previous_champion; name one with --to VERSION")
            _check_weights(self.registry.get_version(target))  # an unknown or pruned version fails here, before any event
            if target == current.version:
                raise PromotionRefused(target, "it is already the champion")
            event = self.store.append(events.ROLLBACK, reason, version=target, actor=actor,
                                      payload={"op": "rollback", "to": target, "from": current.version})
            failpoints.hit("rollback.after_intent")
            return self.apply(event)

    def alias_version(self, alias: str) -> str | None:
        info = self.registry.get_alias(alias)
        return info.version if info else None

    # -- crash repair --------------------------------------------------------------------------
    def reconcile(self, locked: bool = False) -> list[Move]:
        """Finish every recorded intent whose `alias.synced` row is missing (a crash between the two)."""
        if not locked:
            with self.lock():
                return self.reconcile(locked=True)
        synced = {e.payload.get("intent_id") for e in self.store.events(types=[events.ALIAS_SYNCED])}
        done = []
        for event in self.store.events(types=INTENT_TYPES):
            if event.id not in synced:
                log.warning("finishing interrupted %s of version %s (event %d)", event.type, event.version, event.id)
                done.append(self.apply(event))
        return done

    def apply(self, event: Event) -> Move:
        """Carry out a recorded intent; the caller holds the lock (see `lock()`)."""
        op, target = event.payload["op"], event.payload["to"]
        if op == "promote":
            self.registry.promote(target)
        elif op == "rollback":
            if self.alias_version("champion") != target:  # re-applying a finished rollback must not move twice
                self.registry.rollback(to=target)
        else:
            self.registry.mark_challenger(target)
        failpoints.hit("alias.after_move")
        champion = self.alias_version("champion")
        previous = self.alias_version("previous_champion")
        self.store.append(events.ALIAS_SYNCED, f"{op} {target}", version=target, actor=event.actor,
                          payload={"intent_id": event.id, "champion": champion, "previous_champion": previous})
        return Move(event, champion, previous)
