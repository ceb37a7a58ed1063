"""`cltool fsck`: damage the stores in each way the invariants forbid, and check that fsck names each
damage, repairs what the event log can decide (recording each repair), and leaves the rest to a person."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from daemon import events
from daemon.cli.main import cli
from daemon.fsck import RepairRefused, fsck
from daemon.service import Daemon
from daemon.state import store as tables
from daemon.state.locks import DAEMON_LOCK, Locks
from registry.errors import RegistryUnavailable
from retrain.modeling import build_tiny_model
from tests.daemon.test_crash_points import State, register_rejected, tiny_base, with_champion  # noqa: F401 (fixture)
from tests.daemon.cycle.test_cycle import LABELS

pytestmark = pytest.mark.integration


@pytest.fixture
def state(tmp_path, tiny_base):  # noqa: F811
    """v1 champion (a real cycle) and v2, a rejected challenger."""
    state = State(tmp_path, tiny_base)
    with_champion(state)
    ctx = state.ctx()
    version = register_rejected(ctx, build_tiny_model(tmp_path / "m2", LABELS, seed=3))
    intent = ctx.store.append(events.CHALLENGER, "gate: REJECT", version=version,
                              payload={"op": "challenger", "to": version, "from": "1"})
    ctx.keeper.apply(intent)
    assert fsck(ctx).clean
    return state


def problems_by_check(found) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for problem in found.problems:
        out.setdefault(problem.check, []).append(problem.subject)
    return out


def test_every_repairable_damage_is_found_repaired_and_recorded(state, tmp_path):
    ctx = state.ctx()
    s = ctx.settings
    [batch] = ctx.store.list_batches()
    # 1. A promotion made outside cltool (say in the MLflow UI): champion and previous_champion moved.
    ctx.registry.set_alias("champion", "2")
    ctx.registry.set_alias("previous_champion", "1")
    orphan_model = build_tiny_model(tmp_path / "m3", LABELS, seed=4)
    # 2. A registered version no decision names (a cycle died between registering and deciding).
    orphan = ctx.registry.log_candidate(model_dir=orphan_model, run_name="c3", params={}, metrics={},
                                        tags={"cltool.cycle_id": "c-dead"}, json_artifacts={}).version
    # 3. That cycle's cycle.started without an end.
    ctx.store.append(events.CYCLE_STARTED, "test", payload={"cycle_id": "c-dead", "batches": []})
    # 4. Stored rows of a batch the ledger does not have.
    with ctx.store.engine.begin() as conn:
        conn.execute(tables.rows.insert().values(row_hash="f" * 64, batch_id="ghost", position=0, split="train",
                                                 text="ghost row", label="neutral"))
    # 5. A consumed batch marked pending again.
    with ctx.store.engine.begin() as conn:
        conn.execute(tables.batches.update().values(cycle_id=None))
    # 6. A recorded file back in inbox/.claimed (a crash between the ledger and the archive move).
    archived = next(s.archive_dir.glob(f"*{batch.file_name}"))
    shutil.copy(archived, s.inbox_dir / ".claimed" / batch.file_name)
    # 7. A quarantined file whose event was never written.
    (s.quarantine_dir / "x-bad.csv").write_text("text,label\nfine,postive\n")
    (s.quarantine_dir / "x-bad.csv.reason.json").write_text(json.dumps({"reason": "1 of 1 rows are bad",
                                                                         "file": "bad.csv", "checksum": "abc"}))

    found = fsck(ctx)
    assert not found.clean
    by_check = problems_by_check(found)
    assert by_check["aliases"] == ["champion", "previous_champion"]
    assert by_check["versions"] == [f"v{orphan}"]
    assert by_check["cycles"] == ["c-dead"]
    assert by_check["rows"] == ["ghost"]
    assert by_check["decisions"] == [batch.batch_id]
    assert len(by_check["files"]) == 2
    assert all(p.repair for p in found.problems)

    repaired = fsck(ctx, repair=True)
    assert repaired.clean and len(repaired.repaired) == len(found.problems)
    ctx = state.ctx()
    assert (ctx.keeper.alias_version("champion"), ctx.keeper.alias_version("previous_champion")) == ("1", None)
    assert orphan not in {v.version for v in ctx.registry.list_versions(with_metrics=False)}
    assert ctx.store.list_batches()[0].cycle_id is not None
    assert not list((s.inbox_dir / ".claimed").iterdir())
    assert ctx.store.last_event(events.CYCLE_ABORTED).payload == {"cycle_id": "c-dead", "interrupted": True}
    recorded = ctx.store.events(types=[events.FSCK_REPAIRED])
    assert {e.payload["check"] for e in recorded} == {"aliases", "versions", "cycles", "rows", "decisions", "files"}
    assert fsck(ctx).clean  # and nothing to do the second time


def test_an_open_intent_is_finished(state):
    ctx = state.ctx()
    # A promotion recorded, MLflow never told (what reconcile finishes at every start).
    intent = ctx.store.append(events.PROMOTION, "test", version="2", actor="someone", payload={
        "op": "promote", "to": "2", "from": "1", "forced": True, "gate_decision": "REJECT"})
    assert problems_by_check(fsck(ctx)) == {"intents": [f"event {intent.id}"]}
    assert fsck(ctx, repair=True).clean
    assert ctx.keeper.alias_version("champion") == "2"
    assert ctx.store.last_event(events.ALIAS_SYNCED).payload["champion"] == "2"


def test_what_the_log_cannot_decide_is_left_to_a_person_and_exits_1(state):
    ctx = state.ctx()
    [batch] = ctx.store.list_batches()
    with ctx.store.engine.begin() as conn:  # a stored row lost: the ledger and the rows disagree
        conn.execute(sa.delete(tables.rows).where(tables.rows.c.row_hash == sa.select(tables.rows.c.row_hash)
                                                  .limit(1).scalar_subquery()))
    champion = ctx.registry.get_version("1")  # the champion's weights deleted behind cltool's back
    location = ctx.registry._connect().get_logged_model(champion.source.removeprefix("models:/")).artifact_location
    shutil.rmtree(location.removeprefix("file://"))
    found = fsck(ctx, repair=True)
    assert not found.clean and found.repaired == []
    assert problems_by_check(found) == {"rows": [batch.batch_id], "weights": ["v1"]}

    runner = CliRunner()
    result = runner.invoke(cli, ["--config", str(state.config), "fsck"])
    assert result.exit_code == 1
    assert "[rows]" in result.output and "needs a person" in result.output and "2 problem(s)" in result.output
    data = json.loads(runner.invoke(cli, ["--config", str(state.config), "fsck", "--json"]).output)
    assert data["clean"] is False and {p["check"] for p in data["problems"]} == {"rows", "weights"}


def test_repair_is_refused_while_a_daemon_leads(state):
    ctx = state.ctx()
    Locks(ctx.store).acquire(DAEMON_LOCK, f"daemon:here:{os.getpid()}", 60)
    with pytest.raises(RepairRefused, match="stop it before"):
        fsck(ctx, repair=True)
    result = CliRunner().invoke(cli, ["--config", str(state.config), "fsck"])
    assert result.exit_code == 0 and "fsck: clean" in result.output  # checking is fine while it runs


def test_a_start_while_mlflow_is_down_checks_versions_once_it_is_back(state, tmp_path, monkeypatch):
    ctx = state.ctx(owner="daemon:test")
    orphan = ctx.registry.log_candidate(model_dir=build_tiny_model(tmp_path / "m3", LABELS, seed=4), run_name="c3",
                                        params={}, metrics={}, tags={"cltool.cycle_id": "c-dead"},
                                        json_artifacts={}).version
    ctx.store.append(events.CYCLE_STARTED, "test", payload={"cycle_id": "c-dead", "batches": []})

    def down(timeout: float = 2.0):
        raise RegistryUnavailable("http://mlflow.invalid", ConnectionRefusedError("refused"))

    monkeypatch.setattr(ctx.registry, "ping", down)
    daemon = Daemon(ctx)
    daemon.start_up()  # does not ask MLflow for its versions: the store-only repairs are done
    assert daemon.deferred_repairs == ("versions",)
    assert ctx.store.last_event(events.CYCLE_ABORTED).payload["cycle_id"] == "c-dead"
    assert orphan in {v.version for v in ctx.registry.list_versions(with_metrics=False)}
    monkeypatch.setattr(ctx.registry, "list_versions", lambda **kw: down())
    with pytest.raises(RegistryUnavailable):  # still away: the cycle job fails on the outage and tries again
        daemon.repair_deferred()
    assert daemon.deferred_repairs == ("versions",)
    monkeypatch.undo()
    daemon.repair_deferred()  # back: the orphan goes before any cycle registers a version of its own
    assert daemon.deferred_repairs == ()
    assert orphan not in {v.version for v in ctx.registry.list_versions(with_metrics=False)}
    daemon.shut_down("test")
