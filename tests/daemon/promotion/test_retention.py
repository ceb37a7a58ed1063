"""Retention: old rejected versions lose their weights; champions, alias holders and the newest keep them."""

from __future__ import annotations

import json

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
    refused = CliRunner().invoke(cli, [*args[:4], "promote", "4", "--reason", "x", "--force"])
    assert refused.exit_code == 1 and "weights were deleted" in refused.output


def test_the_daemon_prunes_after_each_cycle(tmp_path, tiny_base):
    from daemon.cycle.run import maybe_run
    from tests.daemon.conftest import write_csv
    from tests.daemon.cycle.test_cycle import cycle_settings, toy_rows

    settings = cycle_settings(tmp_path, tiny_base, mlflow={"keep_versions": 1})
    ctx = open_context(settings, owner="test")
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(200)))
    assert maybe_run(ctx).version == "1"
    stale = ctx.registry.log_candidate(model_dir=tiny_base, run_name="old reject", params={}, metrics={},
                                       tags={"cltool.decision": "REJECT"}, json_artifacts={}).version
    ctx.inbox.ingest_copy(write_csv(tmp_path / "b.csv", toy_rows(200, start=1000)))
    assert maybe_run(ctx).version == "3"
    # v1 is the champion or a former one, v3 the newest: only the stale v2 lost its weights.
    assert [v.version for v in ctx.registry.list_versions() if "cltool.pruned" in v.tags] == [stale]
    assert ctx.store.last_event("model.pruned").actor == "daemon"
