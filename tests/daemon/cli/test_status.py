"""`cltool status` reads the aliases from cltool's event log and each version's figures from its decision, so
it needs no MLflow call; it must say what MLflow says (`--live`) after every kind of alias move."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from daemon.cli.status import collect
from daemon.context import open_context
from tests.daemon.conftest import write_csv
from tests.daemon.cycle.test_cycle import cycle_settings, tiny_base, toy_rows  # noqa: F401 (fixture)

pytestmark = pytest.mark.integration

ALIASES = ("champion", "challenger", "previous_champion")


def same_as_mlflow(ctx) -> dict:
    quick, live = collect(ctx), collect(ctx, live=True)
    assert (quick["aliases_from"], live["aliases_from"]) == ("event log", "mlflow")
    for alias in ALIASES:
        mine, theirs = quick[alias], live[alias]
        assert (mine or {}).get("version") == (theirs or {}).get("version"), (alias, mine, theirs)
        if mine is not None:
            assert (mine["run_id"], mine["created_at"], mine["decision"]) == (
                theirs["run_id"], theirs["created_at"], theirs["decision"]), alias
            for key, value in mine["metrics"].items():  # the decision's figures are the run's
                assert theirs["metrics"][key] == pytest.approx(value), (alias, key)
    return quick


def test_the_event_log_says_what_mlflow_says_after_every_move(tmp_path, tiny_base):
    from daemon.cycle.run import maybe_run

    ctx = open_context(cycle_settings(tmp_path, tiny_base, gate={"first_model_min_macro_f1": 0.0,
                                                                 "min_fresh_rows": 10, "min_fresh_gain": 1.0}),
                       owner="test")
    assert same_as_mlflow(ctx)["champion"] is None
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(200)))
    assert maybe_run(ctx).outcome == "PROMOTE"
    assert same_as_mlflow(ctx)["champion"]["version"] == "1"
    ctx.inbox.ingest_copy(write_csv(tmp_path / "b.csv", toy_rows(200, start=1000)))
    assert maybe_run(ctx).outcome in ("REJECT", "WAIT")  # no gain can reach 1.0: v2 is the challenger
    quick = same_as_mlflow(ctx)
    assert (quick["champion"]["version"], quick["challenger"]["version"]) == ("1", "2")
    ctx.keeper.promote("2", "by hand", actor="test", force=True)  # takes the challenger: MLflow clears it
    quick = same_as_mlflow(ctx)
    assert (quick["champion"]["version"], quick["previous_champion"]["version"], quick["challenger"]) == ("2", "1", None)
    ctx.keeper.rollback("back", actor="test")
    assert same_as_mlflow(ctx)["champion"]["version"] == "1"

    # The real command, in a process of its own: it answers without loading MLflow, torch or pandas.
    code = (
        "import json, sys\n"
        "from daemon.cli.main import cli\n"
        "from click.testing import CliRunner\n"
        f"out = CliRunner().invoke(cli, ['--state-dir', {str(tmp_path / 'state')!r}, '--inbox-dir', "
        f"{str(tmp_path / 'inbox')!r}, 'status', '--json'])\n"
        "print(json.dumps({'output': out.output, 'loaded': sorted(m for m in ('mlflow', 'torch', 'transformers', "
        "'pandas', 'alembic') if m in sys.modules)}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["loaded"] == [], answer["loaded"]
    assert json.loads(answer["output"])["champion"]["version"] == "1"
