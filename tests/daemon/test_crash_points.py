"""Crash at every named crash point (daemon/failpoints.py), restart, and check that nothing was lost or
done twice: `fsck` finds every invariant holding, and the interrupted work is finished exactly once.

The crash is real: the installed `cltool` runs as a subprocess with CLTOOL_FAILPOINTS set and dies
through os._exit at the point (exit 86). The restart is the daemon's own start-up and one pass
(`Daemon.run_once`, as `cltool run --once`), in this process. Tiny model, real MLflow and state store.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from daemon import events, failpoints
from daemon.config import load_settings
from daemon.context import open_context
from daemon.fsck import fsck
from daemon.service import Daemon
from retrain.modeling import build_tiny_model
from tests.daemon.conftest import write_csv
from tests.daemon.cycle.test_cycle import LABELS, toy_rows

pytestmark = pytest.mark.integration

CLTOOL = str(Path(sys.executable).parent / "cltool")


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", LABELS)


SECTIONS = {
    "train": {"epochs": 4, "batch_size": 16, "learning_rate": 0.002, "early_stopping_patience": 0},
    "trigger": {"min_new_rows": 50},
    "gate": {"first_model_min_macro_f1": 0.0, "min_fresh_rows": 10},
    "drift": {"min_reference_rows": 20},
    "observe": {"enabled": False},
}


class State:
    """One state folder, its config file for the subprocess, and in-process contexts over it."""

    def __init__(self, root: Path, tiny_base: Path, **overrides) -> None:
        self.root = root
        sections = {key: dict(value) for key, value in SECTIONS.items()}
        sections["model"] = {"base": str(tiny_base), "max_length": 16}
        for section, values in overrides.items():
            sections.setdefault(section, {}).update(values)
        self.sections = sections
        lines = [f'state_dir = "{root / "state"}"', f'inbox_dir = "{root / "inbox"}"']
        for section, values in sections.items():
            lines.append(f"[{section}]")
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        self.config = root / "cltool.toml"
        self.config.write_text("\n".join(lines) + "\n")
        self.settings = load_settings(str(self.config))
        self.batches = 0

    def ctx(self, owner: str = "test"):
        return open_context(load_settings(str(self.config)), owner=owner)

    def drop(self, rows: int = 150) -> Path:
        """A new labeled file in the inbox (rows of its own)."""
        self.settings.inbox_dir.mkdir(parents=True, exist_ok=True)
        start = 1000 * self.batches
        self.batches += 1
        path = write_csv(self.settings.inbox_dir / f"batch{self.batches}.csv", toy_rows(rows, start=start))
        os.utime(path, (path.stat().st_atime - 10, path.stat().st_mtime - 10))  # settled: not being written
        return path

    def daemon_pass(self):
        """What a restarted daemon does: start-up repairs, then one pass (inbox, watch, drift, cycle)."""
        return Daemon(self.ctx(owner="daemon:restart")).run_once()

    def crash(self, point: str, *args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, failpoints.ENV: point}
        done = subprocess.run([CLTOOL, "--config", str(self.config), *args], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == failpoints.EXIT_CODE, (done.returncode, done.stderr[-2000:])
        assert f"crash point {point} reached" in done.stderr
        return done


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return f'"{value}"' if isinstance(value, str) else str(value)


def assert_consistent(state: State) -> None:
    """Every invariant holds, and every batch is pending or decided exactly once."""
    ctx = state.ctx()
    found = fsck(ctx)
    assert found.clean, "\n".join(p.line() for p in found.problems)
    decided: dict[str, int] = {}
    for event in ctx.store.events(types=[events.DECISION]):
        if event.payload.get("outcome") in ("PROMOTE", "REJECT"):
            for batch_id in event.payload["batches"]:
                decided[batch_id] = decided.get(batch_id, 0) + 1
    assert all(n == 1 for n in decided.values()), decided
    for batch in ctx.store.list_batches():
        assert (batch.cycle_id is not None) == (batch.batch_id in decided)


def register_rejected(ctx, model_dir: Path) -> str:
    """Register a model as a candidate the gate rejected (its decision recorded, no alias): a test's v2."""
    version = ctx.registry.log_candidate(model_dir=model_dir, run_name=f"test-{model_dir.name}", params={},
                                         metrics={}, tags={"cltool.decision": "REJECT"}, json_artifacts={}).version
    ctx.store.append(events.DECISION, "REJECT: test", version=version, payload={"outcome": "REJECT", "batches": []})
    return version


def with_champion(state: State) -> None:
    state.drop()
    state.daemon_pass()
    assert state.ctx().keeper.alias_version("champion") == "1"


# -- crash points while data comes in and a cycle runs: `cltool run --once` over one new file ----------

PASS_POINTS = ["ingest.after_claim", "ingest.after_record", "ingest.after_archive", "cycle.after_training",
               "cycle.after_registration", "cycle.after_decision", "alias.after_move", "cycle.before_finished"]


@pytest.mark.parametrize("point", PASS_POINTS)
def test_a_crash_during_a_pass_loses_nothing_and_decides_once(point, tmp_path, tiny_base):
    state = State(tmp_path, tiny_base)
    path = state.drop()
    state.crash(point, "run", "--once")
    state.daemon_pass()
    ctx = state.ctx()
    [batch] = ctx.store.list_batches()  # recorded once, whichever side of the crash it was recorded on
    assert batch.file_name == path.name and batch.cycle_id is not None
    assert not path.exists() and not list((state.settings.inbox_dir / ".claimed").iterdir())
    assert len(list(state.settings.archive_dir.glob(f"*{path.name}"))) == 1
    assert len(ctx.store.events(types=[events.INGEST_ACCEPTED])) == 1
    [decision] = [e for e in ctx.store.events(types=[events.DECISION])]
    assert ctx.keeper.alias_version("champion") == decision.version  # the first model was promoted once
    assert_consistent(state)


def test_a_crash_before_the_quarantine_event_is_repaired(tmp_path, tiny_base):
    state = State(tmp_path, tiny_base)
    bad = state.settings.inbox_dir / "bad.csv"
    state.settings.inbox_dir.mkdir(parents=True)
    bad.write_text("text,label\nfine,postive\n")
    os.utime(bad, (bad.stat().st_atime - 10, bad.stat().st_mtime - 10))
    state.crash("ingest.before_quarantine_event", "run", "--once")
    state.daemon_pass()
    ctx = state.ctx()
    [event] = ctx.store.events(types=[events.INGEST_QUARANTINED])
    assert event.actor == "fsck" and "postive" in event.reason
    assert_consistent(state)


# -- crash points around a champion: drift, probation, promote, rollback, retention ------------------

def test_a_crash_after_the_drift_verdict_scores_the_batch_once(tmp_path, tiny_base):
    state = State(tmp_path, tiny_base)
    with_champion(state)
    state.drop()
    state.crash("drift.after_scored", "run", "--once")
    state.daemon_pass()
    ctx = state.ctx()
    batch = ctx.store.list_batches()[-1]
    scored = [e for e in ctx.store.events(types=[events.DRIFT_SCORED, events.DRIFT_SKIPPED])
              if e.batch_id == batch.batch_id]
    assert len(scored) == 1 and scored[0].type == events.DRIFT_SCORED
    assert_consistent(state)


def test_a_crash_in_promote_and_in_rollback_is_finished_at_the_restart(tmp_path, tiny_base):
    state = State(tmp_path, tiny_base, gate={"min_fresh_gain": 1.0})  # every later candidate is rejected
    with_champion(state)
    state.drop()
    state.daemon_pass()
    assert state.ctx().keeper.alias_version("challenger") == "2"
    state.crash("promote.after_intent", "promote", "2", "--force", "--reason", "crash test")
    state.daemon_pass()
    ctx = state.ctx()
    assert (ctx.keeper.alias_version("champion"), ctx.keeper.alias_version("previous_champion")) == ("2", "1")
    assert len(ctx.store.events(types=[events.PROMOTION])) == 2  # the bootstrap's and this one, once
    assert_consistent(state)

    state.crash("rollback.after_intent", "rollback", "--reason", "crash test")
    state.daemon_pass()
    ctx = state.ctx()
    assert ctx.keeper.alias_version("champion") == "1"
    assert len(ctx.store.events(types=[events.ROLLBACK])) == 1
    assert_consistent(state)


def test_a_crash_in_the_probation_watch_still_rolls_back(tmp_path, tiny_base):
    state = State(tmp_path, tiny_base, watch={"min_rows": 10, "strikes": 1}, train={"epochs": 10})
    with_champion(state)
    # A model that knows nothing becomes champion by force: the watch must roll it back.
    ctx = state.ctx()
    version = register_rejected(ctx, build_tiny_model(tmp_path / "bad", LABELS, seed=99))
    ctx.keeper.promote(version, "crash test", actor="test", force=True)
    state.drop(300)
    state.settings = load_settings(str(state.config), trigger={"min_new_rows": 100_000})  # no cycle: the watch only
    state.config.write_text(state.config.read_text().replace("min_new_rows = 50", "min_new_rows = 100000"))
    state.crash("watch.after_scored", "run", "--once")
    state.daemon_pass()
    ctx = state.ctx()
    scored = ctx.store.events(types=[events.WATCH_SCORED])
    assert len(scored) == 1, [e.reason for e in scored]
    assert scored[0].payload["action"] == "strike", scored[0].reason  # a rollback verdict, recorded before the crash
    [rollback] = ctx.store.events(types=[events.ROLLBACK])  # carried out once, after the restart
    assert rollback.actor == "daemon:auto-rollback" and ctx.keeper.alias_version("champion") == "1"
    assert_consistent(state)


def test_a_crash_between_deleting_weights_and_tagging_is_finished_by_the_next_prune(tmp_path, tiny_base):
    state = State(tmp_path, tiny_base, gate={"min_fresh_gain": 1.0}, mlflow={"keep_versions": 0, "keep_runs": 0})
    with_champion(state)
    for _ in range(2):
        state.drop()
        state.daemon_pass()
    state.crash("retention.after_delete", "prune", "--keep", "1")
    ctx = state.ctx()
    assert "cltool.pruned" not in ctx.registry.get_version("2").tags  # files gone, tag not written
    assert_consistent(state)  # no alias holder lost its weights
    from daemon.promotion import retention

    [pruned] = retention.prune(ctx, 1, actor="test")  # the retried prune finishes it
    assert pruned.version == "2" and "cltool.pruned" in ctx.registry.get_version("2").tags
    assert not ctx.registry.has_weights("2") and ctx.registry.has_weights("1") and ctx.registry.has_weights("3")
    assert_consistent(state)


def test_a_crash_while_removing_an_old_version_is_finished_by_the_next_pass(tmp_path, tiny_base):
    from daemon.promotion import retention
    from registry.errors import UnknownVersionError

    state = State(tmp_path, tiny_base, gate={"min_fresh_gain": 1.0}, mlflow={"keep_versions": 0, "keep_runs": 0})
    with_champion(state)
    for _ in range(2):  # v2 and v3 rejected; v3 holds the challenger alias
        state.drop()
        state.daemon_pass()
    state.crash("retention.after_run_removed", "prune", "--keep", "1", "--keep-runs", "1")
    ctx = state.ctx()
    [removed] = ctx.store.events(types=[events.MODEL_REMOVED])
    assert removed.version == "2" and ctx.registry.get_version("2").version == "2"  # run deleted, still registered
    assert_consistent(state)
    assert [v.version for v in retention.remove(ctx, 1, actor="test")] == ["2"]  # the retried pass finishes it
    with pytest.raises(UnknownVersionError):
        ctx.registry.get_version("2")
    assert len(ctx.store.events(types=[events.MODEL_REMOVED])) == 1  # recorded once
    assert ctx.registry.has_weights("1") and ctx.registry.has_weights("3")
    assert_consistent(state)


def test_every_crash_point_is_exercised_here():
    tested = set(PASS_POINTS) | {"ingest.before_quarantine_event", "drift.after_scored", "promote.after_intent",
                                 "rollback.after_intent", "watch.after_scored", "retention.after_delete",
                                 "retention.after_run_removed"}
    assert tested == set(failpoints.POINTS)


def test_an_unknown_crash_point_is_refused(monkeypatch):
    monkeypatch.setenv(failpoints.ENV, "ingest.after_clam")
    with pytest.raises(failpoints.UnknownFailpoint, match="ingest.after_clam"):
        failpoints.hit("ingest.after_claim")
