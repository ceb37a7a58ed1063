"""AliasKeeper over a real state store and an in-memory registry fake (the real one is tested in
tests/registry and end to end)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from daemon.errors import PromotionRefused
from daemon.promotion.aliases import AliasKeeper


@dataclass
class FakeVersion:
    version: str
    tags: dict = field(default_factory=dict)


class FakeRegistry:
    def __init__(self, versions: dict[str, str]) -> None:  # version -> decision tag
        self.versions = {v: FakeVersion(v, {"cltool.decision": d}) for v, d in versions.items()}
        self.aliases: dict[str, str] = {}
        self.calls: list[tuple] = []

    def get_version(self, version):
        if version not in self.versions:
            raise LookupError(f"no version {version}")
        return self.versions[version]

    def get_alias(self, alias):
        return self.versions[self.aliases[alias]] if alias in self.aliases else None

    def promote(self, version):
        self.calls.append(("promote", version))
        if self.aliases.get("champion") not in (None, version):
            self.aliases["previous_champion"] = self.aliases["champion"]
        self.aliases["champion"] = version

    def rollback(self, to=None):
        self.calls.append(("rollback", to))
        demoted, self.aliases["champion"] = self.aliases["champion"], to
        self.aliases["previous_champion"] = demoted

    def mark_challenger(self, version):
        self.calls.append(("challenger", version))
        self.aliases["challenger"] = version


@pytest.fixture
def registry():
    return FakeRegistry({"1": "PROMOTE", "2": "PROMOTE", "3": "REJECT"})


@pytest.fixture
def keeper(store, registry):
    return AliasKeeper(store, registry, owner="test", lock_wait=0.5)


def test_promote_moves_aliases_and_records_intent_then_sync(keeper, registry, store):
    keeper.promote("1", "first", actor="alice")
    move = keeper.promote("2", "better", actor="alice")
    assert (move.champion, move.previous_champion) == ("2", "1")
    assert [e.type for e in store.events()] == ["promotion", "alias.synced", "promotion", "alias.synced"]
    promotion = store.events(types=["promotion"])[-1]
    assert (promotion.version, promotion.actor, promotion.reason, promotion.payload["from"]) == ("2", "alice", "better", "1")


def test_rejected_version_needs_force_and_is_recorded_as_forced(keeper, registry, store):
    with pytest.raises(PromotionRefused, match="--force"):
        keeper.promote("3", "I know better", actor="bob")
    assert registry.aliases == {} and store.events() == []
    move = keeper.promote("3", "I know better", actor="bob", force=True)
    assert move.champion == "3" and move.event.payload["forced"] is True


def test_rollback_defaults_to_previous_champion(keeper, registry):
    keeper.promote("1", "a", actor="x")
    keeper.promote("2", "b", actor="x")
    move = keeper.rollback("live accuracy fell", actor="ops")
    assert (move.champion, move.previous_champion) == ("1", "2")
    with pytest.raises(PromotionRefused, match="already the champion"):
        keeper.rollback("again", actor="ops", to="1")


def test_rollback_without_a_champion_or_previous_is_refused(keeper, registry):
    with pytest.raises(PromotionRefused, match="no champion"):
        keeper.rollback("why", actor="ops")
    keeper.promote("1", "a", actor="x")
    with pytest.raises(PromotionRefused, match="no previous_champion"):
        keeper.rollback("why", actor="ops")


def test_reconcile_finishes_an_intent_interrupted_by_a_crash(keeper, registry, store):
    keeper.promote("1", "a", actor="x")
    # A crash after the intent row, before the alias moved:
    store.append("promotion", "b", version="2", actor="x", payload={"op": "promote", "to": "2", "from": "1"})
    assert registry.aliases["champion"] == "1"
    done = keeper.reconcile()
    assert [m.champion for m in done] == ["2"] and registry.aliases["champion"] == "2"
    assert keeper.reconcile() == []  # idempotent: nothing left to finish


def test_a_second_mover_waits_then_fails_clearly(keeper, store, registry):
    other = AliasKeeper(store, registry, owner="cycle", lock_wait=0.3)
    with other.lock():
        with pytest.raises(Exception, match="lock 'aliases' is held by cycle"):
            keeper.promote("1", "a", actor="x")
