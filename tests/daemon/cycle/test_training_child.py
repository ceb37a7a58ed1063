"""The daemon's cycle trains in a supervised child: a SIGKILLed child is a `cycle.failed` naming it, the daemon
lives on and the retry decides; SIGTERM stops the daemon and its child; batches that fail training
`train.max_failures` times are parked (status, gauge, alert) until `cltool retrain`; 2 processes under
`accelerate launch` train a candidate that is registered and promoted."""

from __future__ import annotations

import os
import shutil
import subprocess

import psutil
import pytest
from click.testing import CliRunner

from daemon import events
from daemon.cli.main import cli
from daemon.cli.status import collect, render
from daemon.cycle.run import run_cycle
from daemon.state import parking
from daemon.telemetry.exporter import Telemetry
from retrain.job import STARTED_LINE, TrainingFailed
from tests.daemon.test_crash_points import CLTOOL, State, tiny_base  # noqa: F401 (fixture)
from tests.retrain.test_job import training_children, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _in_a_child(monkeypatch):
    monkeypatch.delenv("CLTOOL_TRAIN__LAUNCHER", raising=False)  # the default launcher, `process`


def start_daemon(state: State) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CLTOOL_TRAIN__LAUNCHER"}
    log = open(state.root / "daemon.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([CLTOOL, "--config", str(state.config), "run"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def events_of(state: State, *types: str):
    return state.ctx().store.events(types=list(types))


def test_a_sigkilled_training_child_fails_the_cycle_and_the_daemon_retries(tmp_path, tiny_base):  # noqa: F811
    state = State(tmp_path, tiny_base, trigger={"min_new_rows": 50, "poll_seconds": 0.5,
                                                "retry_backoff_seconds": 1})
    daemon = start_daemon(state)
    try:
        state.drop()
        victim = wait_for(lambda: training_children(psutil.Process(daemon.pid)), 120, "the training child")[0]
        victim.kill()  # what the kernel's out-of-memory killer does
        [failed] = wait_for(lambda: events_of(state, events.CYCLE_FAILED), 60, "cycle.failed")
        assert "killed by SIGKILL" in failed.reason and failed.payload["phase"] == "training"
        assert daemon.poll() is None  # the daemon is alive
        assert state.ctx().store.list_batches(pending=True)  # and the batch still pending
        # The next trigger (after the 1 s backoff) retries the same batch, and this time it is decided.
        [decision] = wait_for(lambda: events_of(state, events.DECISION), 180, "the retry's decision")
        assert decision.payload["outcome"] == "PROMOTE" and len(events_of(state, events.CYCLE_FAILED)) == 1
    finally:
        daemon.terminate()
        daemon.wait(60)
    assert daemon.returncode == 0


def training_under_way(tmp_path, tiny_base, ready: str):  # noqa: F811
    """A daemon training in its child for a minute or more, once `ready` is in the child's log."""
    state = State(tmp_path, tiny_base, train={"epochs": 100})
    daemon = start_daemon(state)
    state.drop()
    [child] = wait_for(lambda: training_children(psutil.Process(daemon.pid)), 120, "the training child")
    log = wait_for(lambda: next(iter(state.settings.work_dir.glob("c*/job/train.log")), None), 60, "its log")
    wait_for(lambda: ready in log.read_text(), 120, f"{ready!r} in the child's log")
    return state, daemon, child, log


def test_sigterm_stops_the_daemon_and_its_training_child(tmp_path, tiny_base):  # noqa: F811
    state, daemon, child, _ = training_under_way(tmp_path, tiny_base, STARTED_LINE)  # it handles SIGTERM now
    daemon.terminate()
    assert daemon.wait(60) == 0
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    [aborted] = events_of(state, events.CYCLE_ABORTED)
    assert "stopped before the end of training" in aborted.reason
    assert state.ctx().store.list_batches(pending=True) and not events_of(state, events.DECISION)


def test_a_sigkilled_daemon_leaves_no_training_child_behind(tmp_path, tiny_base):  # noqa: F811
    # The child has its own session, so a SIGKILL of the daemon does not reach it: it must notice by itself,
    # or it trains on for nobody beside the restarted daemon's own child.
    _, daemon, child, log = training_under_way(tmp_path, tiny_base, "epoch")  # steps are being taken
    daemon.kill()
    daemon.wait(60)
    wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, 60, "the orphan to stop")
    assert "stopped on its supervisor's death; no model kept" in log.read_text()
    assert not list(log.parent.glob("out/model/*.safetensors"))


def test_batches_failing_training_max_failures_times_are_parked_until_retrain(tmp_path, tiny_base):  # noqa: F811
    broken = tmp_path / "broken-base"
    shutil.copytree(tiny_base, broken)
    (broken / "config.json").write_text("{ not json")  # every child fails while loading it
    state = State(tmp_path, tiny_base, model={"base": str(broken), "max_length": 16}, train={"max_failures": 2})
    state.drop()
    ctx = state.ctx()
    ctx.inbox.take_all()
    telemetry = Telemetry(ctx)
    sent = []
    for attempt in (1, 2):
        with pytest.raises(TrainingFailed, match="exited 1 without a result") as info:
            run_cycle(ctx, "test", notify=sent.append)
        assert "Error" in info.value.last_line  # the child's own error line, not just its exit code
        assert bool(events_of(state, events.BATCHES_PARKED)) == (attempt == 2)
    [parked] = events_of(state, events.BATCHES_PARKED)
    [batch] = ctx.store.list_batches()
    assert parked.payload["batches"] == [batch.batch_id] and parked.payload["failures"] == 2
    assert "train.max_failures 2" in parked.reason and "cltool retrain" in parked.reason
    assert [m["event"] for m in sent] == [events.BATCHES_PARKED] and "parked 1 batch" in sent[0]["text"]
    assert parking.pending(ctx.store) == []  # the cycle job no longer picks it
    status = collect(ctx)
    assert status["pending_batches"] == [] and status["parked"][0]["batch_id"] == batch.batch_id
    assert f"parked: 1 batches ({batch.batch_id})" in render(status) and "cltool retrain" in render(status)
    telemetry.refresh()
    assert telemetry.metrics.registry.get_sample_value("cltool_parked_batches") == 1.0

    result = CliRunner().invoke(cli, ["--config", str(state.config), "retrain", "--reason", "base fixed"])
    assert result.exit_code == 0 and f"unparked 1 batch(es): {batch.batch_id}" in result.output
    assert [b.batch_id for b in parking.pending(ctx.store)] == [batch.batch_id]
    assert collect(ctx)["parked"] == []
    telemetry.refresh()
    assert telemetry.metrics.registry.get_sample_value("cltool_parked_batches") == 0.0
    # Unparking starts the count again: one more failure does not park it at once.
    with pytest.raises(TrainingFailed):
        run_cycle(ctx, "test")
    assert len(events_of(state, events.BATCHES_PARKED)) == 1


def test_two_accelerate_processes_train_a_registered_champion(tmp_path, tiny_base):  # noqa: F811
    state = State(tmp_path, tiny_base, train={"launcher": "accelerate", "num_processes": 2})
    state.drop()
    [_, result] = state.daemon_pass()
    assert result.outcome == "PROMOTE" and result.version == "1"
    ctx = state.ctx()
    assert ctx.keeper.alias_version("champion") == "1"
    train = ctx.registry.read_json_artifact("1", "config")["train"]
    assert (train["launcher"], train["num_processes"]) == ("accelerate", 2)
