"""The cycle in-process on a tiny model with a real MLflow (SQLite in tmp_path)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from daemon.config import load_settings
from daemon.context import open_context
from daemon.cycle.run import CycleAborted, maybe_run, run_cycle
from retrain.modeling import build_tiny_model
from tests.daemon.conftest import write_csv

LABELS = ["negative", "neutral", "positive"]


def toy_rows(n: int, start: int = 0) -> list[tuple[str, str]]:
    words = {"negative": "plunge loss", "neutral": "meeting held", "positive": "soar profit"}
    return [(f"{words[LABELS[i % 3]]} item {i}", LABELS[i % 3]) for i in range(start, start + n)]


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory):
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base", LABELS)


def cycle_settings(tmp_path, tiny_base, **sections):
    """Settings under which the tiny model learns toy_rows in a few seconds; `sections` replace whole sections."""
    defaults = dict(
        model={"base": str(tiny_base), "max_length": 16},
        train={"epochs": 10, "batch_size": 16, "learning_rate": 0.002, "early_stopping_patience": 0},
        trigger={"min_new_rows": 50}, gate={"first_model_min_macro_f1": 0.0, "min_fresh_rows": 10},
    )
    return load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"),
                         **{**defaults, **sections})


@pytest.fixture
def ctx(tmp_path, tiny_base):
    return open_context(cycle_settings(tmp_path, tiny_base), owner="test")


def test_bootstrap_then_candidate_against_champion(ctx, tmp_path):
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(200)))
    first = maybe_run(ctx)
    assert (first.outcome, first.version) == ("PROMOTE", "1")
    assert ctx.registry.get_alias("champion").version == "1"
    assert ctx.store.list_batches(pending=True) == []
    assert maybe_run(ctx) is None  # nothing new: no cycle

    ctx.inbox.ingest_copy(write_csv(tmp_path / "b.csv", toy_rows(200, start=1000)))
    from daemon.monitoring.drift_pass import DriftMonitor

    DriftMonitor(ctx).check()  # as the daemon does before each cycle: batch b gets its drift verdict
    second = maybe_run(ctx)
    assert second.version == "2" and second.outcome in {"PROMOTE", "REJECT", "WAIT"}
    info = ctx.registry.get_version("2")
    assert info.tags["cltool.decision"] == second.outcome and info.tags["cltool.parent_version"] == "1"
    assert "regression_macro_f1" in info.metrics and "champion_fresh_macro_f1" in info.metrics
    # The softmax temperature fitted on the validation rows, for the live monitor's label-free estimate.
    assert 0.05 <= info.metrics["calibration.temperature"] <= 20
    assert "candidate" in info.description and "Reasons" in info.description
    decision = ctx.store.last_event("decision")
    assert decision.version == "2" and decision.payload["outcome"] == second.outcome
    alias = "champion" if second.outcome == "PROMOTE" else "challenger"
    assert ctx.registry.get_alias(alias).version == "2"
    # WAIT keeps the batch pending for the next cycle; PROMOTE and REJECT consume it.
    assert len(ctx.store.list_batches(pending=True)) == (1 if second.outcome == "WAIT" else 0)
    synced = ctx.store.last_event("alias.synced")
    assert synced.version == "2"

    # The run carries what a reviewer needs: config as params, report, lineage, plots, data inputs.
    import json

    import mlflow

    client = mlflow.MlflowClient(ctx.settings.tracking_uri)
    run = client.get_run(info.run_id)
    assert run.data.params["train.learning_rate"] == "0.002" and "gate.max_forgetting" in run.data.params
    names = {a.path for a in client.list_artifacts(info.run_id)}
    assert {"eval_report.json", "lineage.json", "config.json", "confusion_candidate.png",
            "confusion_champion.png", "class_recall.png", "accuracy_matrix.png", "drift_report.json"} <= names
    drift = json.loads(open(client.download_artifacts(info.run_id, "drift_report.json", str(tmp_path))).read())
    assert [b["batch_id"] for b in drift["batches"]] == [b.batch_id for b in ctx.store.list_batches()][1:]
    contexts = {d.tags[0].value for d in run.inputs.dataset_inputs}
    assert {"training", "replay", "fresh_test"} <= contexts
    assert info.tags["cltool.batch_checksums"] and info.tags["validation_status"] in {"passed", "failed", "pending"}
    lineage = json.loads(open(client.download_artifacts(info.run_id, "lineage.json", str(tmp_path))).read())
    assert [b["file"] for b in lineage["batches"]] == ["b.csv"]
    assert lineage["replay_rows"] == len(lineage["replay_row_hashes"]) > 0
    assert info.tags["cltool.rows_replay"] == str(lineage["replay_rows"])
    assert lineage["replay_policy"]["policy"] == "class_balanced"

    # Continual-learning metrics: the champion line's accuracy matrix plus this candidate's row.
    assert "cl_accuracy_matrix.png" in names
    cl = json.loads(open(client.download_artifacts(info.run_id, "cl_metrics.json", str(tmp_path))).read())
    assert len(cl["rows"]) == 2 and len(cl["columns"]) == 2  # v1's row, then the candidate's; batches a and b
    assert cl["cells"][0][1] is None and None not in cl["cells"][1]  # v1 never saw batch b
    assert cl["forgetting"] == pytest.approx(cl["cells"][0][0] - cl["cells"][1][0])
    assert info.metrics["cl_avg_macro_f1"] == pytest.approx(sum(cl["cells"][1]) / 2)
    assert info.metrics["cl_forgetting"] == pytest.approx(cl["forgetting"])

    # `cltool explain` replays the stored decision from the artifacts alone.
    from daemon.cli.explain import explain

    replay = explain(ctx, "2")
    assert replay["reproduced"] and replay["outcome"] == second.outcome and replay["parent_version"] == "1"


def test_requested_cycle_with_too_few_test_rows_waits_and_keeps_rows_pending(ctx, tmp_path):
    ctx.inbox.ingest_copy(write_csv(tmp_path / "small.csv", toy_rows(20)))
    ctx.store.append("retrain.requested", "now please", actor="alice")
    result = maybe_run(ctx)
    assert result.outcome == "WAIT" and "min_fresh_rows" in result.reasons[0]
    assert len(ctx.store.list_batches(pending=True)) == 1
    assert ctx.registry.get_alias("champion") is None
    assert maybe_run(ctx) is None  # the request was answered; no retry loop


def test_stop_request_aborts_before_registering_and_keeps_rows_pending(ctx, tmp_path):
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(200)))
    ctx.stop.set()
    with pytest.raises(CycleAborted):
        run_cycle(ctx, "test")
    assert ctx.registry.list_versions() == []
    assert len(ctx.store.list_batches(pending=True)) == 1
    assert ctx.store.last_event("cycle.aborted") is not None


def test_a_failing_cycle_is_recorded_and_leaves_batches_pending(ctx, tmp_path, monkeypatch):
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(200)))

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr("daemon.cycle.run.train", broken)
    with pytest.raises(RuntimeError):
        run_cycle(ctx, "test")
    failed = ctx.store.last_event("cycle.failed")
    assert "disk full" in failed.reason
    assert len(ctx.store.list_batches(pending=True)) == 1
    assert not any((ctx.settings.work_dir).glob("c*"))  # the half-trained candidate is gone
    # Retried with backoff (trigger.retry_backoff_seconds, 30 s by default), not at every poll.
    monkeypatch.undo()
    assert maybe_run(ctx) is None
    later = ctx.clock() + timedelta(seconds=31)
    ctx.clock = lambda: later
    assert maybe_run(ctx).outcome == "PROMOTE" and ctx.store.list_batches(pending=True) == []


def test_reservoir_state_travels_with_each_version_and_distillation_runs(tmp_path, tiny_base):
    settings = load_settings(
        state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"),
        model={"base": str(tiny_base), "max_length": 16},
        train={"epochs": 2, "batch_size": 16, "learning_rate": 0.002, "early_stopping_patience": 0,
               "distill_alpha": 1.0},
        replay={"policy": "reservoir", "reservoir_capacity": 40, "ratio": 0.5},
        trigger={"min_new_rows": 50}, gate={"first_model_min_macro_f1": 0.0, "min_fresh_rows": 10},
    )
    ctx = open_context(settings, owner="test")
    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(120)))
    first = maybe_run(ctx)
    lineage = ctx.registry.read_json_artifact(first.version, "lineage")
    n_first = lineage["new_train_rows"]
    assert lineage["replay_policy"]["seen"] == n_first and len(lineage["replay_policy"]["buffer"]) == 40
    assert first.outcome == "PROMOTE"

    ctx.inbox.ingest_copy(write_csv(tmp_path / "b.csv", toy_rows(120, start=1000)))
    second = run_cycle(ctx, "test")
    lineage = ctx.registry.read_json_artifact(second.version, "lineage")
    # Restored from v1's state, then shown the new rows: every train row so far, 40 kept.
    assert lineage["replay_policy"]["seen"] == n_first + lineage["new_train_rows"]
    assert len(lineage["replay_policy"]["buffer"]) == 40
    assert lineage["replay_rows"] == min(40, round(0.5 * lineage["new_train_rows"]))  # the buffer bounds it
    assert set(lineage["replay_row_hashes"]) <= {row["row_hash"] for row in
                                                 ctx.registry.read_json_artifact("1", "lineage")["replay_policy"]["buffer"]}


def test_after_a_wait_the_next_cycle_continues_from_the_waiting_challenger(ctx, tmp_path, monkeypatch):
    from registry import gate
    from registry.gate import Check, Decision

    ctx.inbox.ingest_copy(write_csv(tmp_path / "a.csv", toy_rows(150)))
    assert maybe_run(ctx).outcome == "PROMOTE"  # v1, the champion
    real_decide = gate.decide

    def inconclusive(candidate, champion, policy):  # the gate's verdict on thin evidence, forced
        return Decision("WAIT", (Check("fresh_gain", False, "gain within noise: wait", wait=True),))

    monkeypatch.setattr("daemon.cycle.run.decide", inconclusive)
    ctx.inbox.ingest_copy(write_csv(tmp_path / "b.csv", toy_rows(150, start=1000)))
    waited = maybe_run(ctx)
    assert (waited.outcome, waited.version) == ("WAIT", "2")
    b_train = ctx.registry.read_json_artifact("2", "lineage")["new_train_rows"]

    monkeypatch.setattr("daemon.cycle.run.decide", real_decide)
    ctx.inbox.ingest_copy(write_csv(tmp_path / "c.csv", toy_rows(150, start=2000)))
    third = maybe_run(ctx)
    lineage = ctx.registry.read_json_artifact(third.version, "lineage")
    # Trained from the challenger on batch c alone, judged against the champion on b's and c's fresh rows.
    assert lineage["init_from"] == "v2" and lineage["continued_from_wait"] is True
    assert [b["file"] for b in lineage["batches"]] == ["b.csv", "c.csv"]
    assert 0 < lineage["new_train_rows"] < b_train + lineage["new_train_rows"]
    c_train = next(b["n_train"] for b in lineage["batches"] if b["file"] == "c.csv")
    assert lineage["new_train_rows"] == c_train
    assert ctx.registry.get_version(third.version).tags["cltool.parent_version"] == "1"  # judged against v1
    assert third.outcome in {"PROMOTE", "REJECT"}
