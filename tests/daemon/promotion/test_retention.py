"""Retention: old rejected versions lose their weights; champions, alias holders and the newest keep them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from daemon.cli.main import cli
from daemon.config import load_settings
from daemon.context import open_context
from daemon.errors import PromotionRefused
from daemon.promotion import retention
from registry.errors import WeightsKeptError, WeightsPrunedError
from tests.daemon.cycle.test_cycle import LABELS, tiny_base  # noqa: F401 (fixture)


@pytest.fixture
def ctx(tmp_path, tiny_base):
    settings = load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"),
                             model={"base": str(tiny_base)})
    ctx = open_context(settings, owner="test")
    # v1, v2, v3 each promoted in turn (v3 champion, v2 previous_champion, v1 a former champion without
    # an alias), then v4 and v5 rejected: no alias.
    for n in range(1, 6):
        version = ctx.registry.log_candidate(model_dir=tiny_base, run_name=f"c{n}", params={},
                                             metrics={"fresh_macro_f1": n / 10}, tags={"cltool.decision": "REJECT"},
                                             json_artifacts={"evaluation": {"n": n}}).version
        if n <= 3:
            ctx.keeper.promote(version, "test", actor="test", force=True)
    return ctx


def test_only_old_versions_that_cannot_serve_lose_their_weights(ctx, tmp_path):
    assert [v.version for v in retention.prunable(ctx, keep=1)] == ["4"]  # v5 is the newest, v1-v3 served
    assert [v.version for v in retention.prunable(ctx, keep=2)] == []
    assert retention.prunable(ctx, keep=0) == []  # 0 keeps everything

    assert [v.version for v in retention.prune(ctx, 1, actor="test", dry_run=True)] == ["4"]
    assert ctx.models.path("4").is_dir()  # a dry run deletes nothing (and v4 is now in the local cache)

    assert [v.version for v in retention.prune(ctx, 1, actor="test")] == ["4"]
    info = ctx.registry.get_version("4")
    assert "never champion" in info.tags["cltool.pruned"]
    assert info.metrics == {"fresh_macro_f1": 0.4}  # the run stays reviewable
    assert ctx.registry.read_json_artifact("4", "evaluation") == {"n": 4}
    with pytest.raises(WeightsPrunedError, match="version 4 .* has no weights any more"):
        ctx.models.path("4")
    with pytest.raises(PromotionRefused, match="weights were deleted"):
        ctx.keeper.promote("4", "try", actor="test", force=True)
    with pytest.raises(PromotionRefused, match="weights were deleted"):
        ctx.keeper.rollback("try", actor="test", to="4")
    assert ctx.models.path("1").is_dir()  # a former champion keeps its weights
    assert ctx.store.last_event("model.pruned").version == "4"
    assert retention.prune(ctx, 1, actor="test") == []  # done once, nothing left
    with pytest.raises(WeightsKeptError, match="it is the champion"):
        ctx.registry.delete_weights("3", "asked directly")  # the registry itself refuses an alias holder


def test_only_the_most_recent_former_champions_keep_their_weights(ctx):
    # Champions, most recent first: v3 (champion), v2 (previous_champion), v1 (no alias).
    assert [v.version for v in retention.prunable(ctx, keep=1, keep_champions=3)] == ["4"]
    assert [v.version for v in retention.prunable(ctx, keep=1, keep_champions=2)] == ["4", "1"]
    assert [v.version for v in retention.prunable(ctx, keep=1, keep_champions=1)] == ["4", "1"]  # v2 holds an alias
    assert [v.version for v in retention.prunable(ctx, keep=1, keep_champions=0)] == ["4"]  # 0: every champion

    assert [v.version for v in retention.prune(ctx, 1, actor="test", keep_champions=2)] == ["4", "1"]
    note = ctx.registry.get_version("1").tags["cltool.pruned"]
    assert "a former champion older than the newest 2 (mlflow.keep_champions)" in note
    with pytest.raises(PromotionRefused, match="weights were deleted"):
        ctx.keeper.rollback("too far back", actor="test", to="1")
    # Its run and registry entry are never removed: what served stays reviewable.
    assert [v.version for v in retention.removable(ctx, keep_runs=1)] == ["4"]


def test_recency_of_a_champion_counts_its_last_time_in_office(ctx):
    ctx.keeper.rollback("back to the first", actor="test", to="1")  # now v1, then v3, then v2
    assert ctx.registry.get_alias("previous_champion").version == "3"
    assert [v.version for v in retention.prunable(ctx, keep=1, keep_champions=2)] == ["4", "2"]
    assert [v.version for v in retention.prunable(ctx, keep=1, keep_champions=3)] == ["4"]


def test_a_retention_pass_lists_the_registry_once(ctx, monkeypatch):
    calls = []
    listed = ctx.registry.list_versions
    monkeypatch.setattr(ctx.registry, "list_versions", lambda **kw: calls.append(kw) or listed(**kw))
    pruned, removed = retention.both(ctx, 1, 1, actor="test", keep_champions=3)
    assert len(calls) == 1
    assert [v.version for v in pruned] == ["4"] and [v.version for v in removed] == ["4"]
    assert [v.version for v in ctx.registry.list_versions()] == ["5", "3", "2", "1"]


def test_the_weights_are_really_gone_from_the_artifact_store(ctx):
    client = ctx.registry._connect()

    def files(version: str) -> list[str]:
        source = ctx.registry.get_version(version).source
        from mlflow.store.artifact.artifact_repository_registry import (
            get_artifact_repository,
        )

        location = client.get_logged_model(source.removeprefix("models:/")).artifact_location
        return [f.path for f in get_artifact_repository(location).list_artifacts()]

    assert "model" in files("4") and "model" in files("5")
    retention.prune(ctx, 1, actor="test")
    assert files("4") == [] and "model" in files("5")


def test_cltool_prune_lists_then_deletes(ctx, tmp_path):
    args = ["--state-dir", str(tmp_path / "state"), "--inbox-dir", str(tmp_path / "inbox"), "prune", "--keep", "1"]
    dry = CliRunner().invoke(cli, [*args, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert [(v["version"], v["deleted"]) for v in json.loads(dry.output)] == [("4", False)]
    done = CliRunner().invoke(cli, args)
    assert done.exit_code == 0 and "deleted the weights of v4" in done.output
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0 and "nothing to prune" in again.output
    assert "the last 10 champions keep their weights" in again.output  # mlflow.keep_champions' default
    older = CliRunner().invoke(cli, [*args, "--keep-champions", "2", "--dry-run", "--json"])
    assert older.exit_code == 0, older.output
    assert [(v["version"], v["what"]) for v in json.loads(older.output)] == [("1", "weights")]
    older = CliRunner().invoke(cli, [*args, "--keep-champions", "2"])
    assert older.exit_code == 0 and "deleted the weights of v1" in older.output
    refused = CliRunner().invoke(cli, [*args[:4], "promote", "4", "--reason", "x", "--force"])
    assert refused.exit_code == 1 and "weights were deleted" in refused.output


def test_the_daemon_prunes_and_removes_after_each_cycle(tmp_path, tiny_base):
    from daemon.cycle.run import maybe_run
    from tests.daemon.conftest import write_csv
    from tests.daemon.cycle.test_cycle import cycle_settings, toy_rows

    settings = cycle_settings(tmp_path, tiny_base, mlflow={"keep_versions": 1, "keep_runs": 2})
    ctx = open_context(settings, owner="test")
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(200)))
    assert maybe_run(ctx).version == "1"
    older, old = (ctx.registry.log_candidate(model_dir=tiny_base, run_name=f"old reject {n}", params={}, metrics={},
                                             tags={"cltool.decision": "REJECT"}, json_artifacts={}).version
                  for n in (1, 2))
    ctx.inbox.ingest_copy(write_csv(tmp_path / "b.csv", toy_rows(200, start=1000)))
    assert maybe_run(ctx).version == "4"
    # v1 is the champion or a former one and v4 the newest: v3 lost its weights (older than keep_versions 1),
    # v2 its run and registry entry too (older than keep_runs 2).
    versions = ctx.registry.list_versions()
    assert [v.version for v in versions] == ["4", old, "1"] and older == "2"
    assert [v.version for v in versions if "cltool.pruned" in v.tags] == [old]
    assert ctx.store.last_event("model.pruned").actor == "daemon"
    removed = ctx.store.last_event("model.removed")
    assert (removed.version, removed.actor) == (older, "daemon")

# -- runs: older than mlflow.keep_runs, a version that never served leaves MLflow altogether ---------------

def test_an_old_version_that_never_served_is_removed_from_mlflow(ctx):
    from mlflow.exceptions import MlflowException

    from registry import removal
    from registry.errors import UnknownVersionError

    client = ctx.registry._connect()
    old = ctx.registry.get_version("4")
    run_files = Path(client.get_run(old.run_id).info.artifact_uri.removeprefix("file://"))
    assert (run_files / "evaluation.json").is_file()
    assert [v.version for v in retention.removable(ctx, keep_runs=1)] == ["4"]  # v5 newest, v1-v3 served
    assert retention.removable(ctx, keep_runs=0) == []  # 0 keeps every run
    assert [v.version for v in retention.remove(ctx, 1, actor="test", dry_run=True)] == ["4"]
    assert ctx.registry.get_version("4").version == "4"  # a dry run removes nothing

    assert [v.version for v in retention.remove(ctx, 1, actor="test")] == ["4"]
    with pytest.raises(UnknownVersionError):
        ctx.registry.get_version("4")
    assert client.get_run(old.run_id).info.lifecycle_stage == "deleted"
    assert not run_files.exists() or not any(run_files.iterdir())  # reports gone with it
    [event] = ctx.store.events(types=["model.removed"])
    assert event.version == "4" and event.payload["run_id"] == old.run_id and event.payload["decision"] == "REJECT"
    assert [v.version for v in ctx.registry.list_versions()] == ["5", "3", "2", "1"]  # former champions stay
    assert retention.remove(ctx, 1, actor="test") == []  # done once

    assert removal.collect_garbage(ctx.registry) == 0  # below the backlog: waits for company
    assert removal.collect_garbage(ctx.registry, force=True) == 1
    with pytest.raises(MlflowException, match="not found|does not exist|No run"):
        client.get_run(old.run_id)  # collected for good
    new = ctx.registry.log_candidate(model_dir=ctx.models.path("5"), run_name="c6", params={}, metrics={},
                                     tags={}, json_artifacts={})
    assert new.version == "6"  # a removed version's number is never given out again


def test_explain_names_a_removed_version_and_where_its_decision_is(ctx):
    from daemon.cli.explain import explain
    from daemon.errors import VersionRemovedError

    retention.remove(ctx, 1, actor="test")
    with pytest.raises(VersionRemovedError, match="version 4 was removed from MLflow by retention.*keep_runs"):
        explain(ctx, "4")


def test_cltool_prune_removes_old_runs_and_lists_what_went(ctx, tmp_path):
    args = ["--state-dir", str(tmp_path / "state"), "--inbox-dir", str(tmp_path / "inbox"), "prune"]
    refused = CliRunner().invoke(cli, [*args, "--keep", "2", "--keep-runs", "1"])
    assert refused.exit_code == 2 and "--keep-runs 1 would remove versions" in refused.output
    dry = CliRunner().invoke(cli, [*args, "--keep", "1", "--keep-runs", "1", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert [(v["version"], v["what"], v["deleted"]) for v in json.loads(dry.output)] == [("4", "run", False)]
    done = CliRunner().invoke(cli, [*args, "--keep", "1", "--keep-runs", "1"])
    assert done.exit_code == 0 and "deleted the run, reports and registry entry of v4" in done.output
    again = CliRunner().invoke(cli, [*args, "--keep", "1", "--keep-runs", "1"])
    assert again.exit_code == 0 and "and the newest 1 their runs" in again.output


def test_keep_runs_below_keep_versions_is_refused_at_start_up(tmp_path):
    from daemon.errors import ConfigError

    with pytest.raises((ConfigError, ValueError), match="mlflow.keep_runs = 5 would remove versions"):
        load_settings(state_dir=str(tmp_path), mlflow={"keep_versions": 20, "keep_runs": 5})
    assert load_settings(state_dir=str(tmp_path), mlflow={"keep_versions": 0, "keep_runs": 0}).mlflow.keep_runs == 0

