"""Training in a supervised child (`retrain.job`): the real child process trains and hands back its model;
an exception, a SIGKILL (what the out-of-memory killer sends), a timeout and a stop request each end it
without a model, the caller alive and told why; `accelerate launch` trains with 2 processes on CPU (gloo)."""

from __future__ import annotations

import json
import threading
import time

import psutil
import pytest

from retrain.config import TrainConfig
from retrain.evaluation import Predictor
from retrain.job import (
    STARTED_LINE,
    STOPPED_EXIT,
    TrainingFailed,
    TrainingStopped,
    TrainingTimedOut,
    command,
    train,
)
from tests.retrain.conftest import TOY_CONFIG

pytestmark = pytest.mark.integration

QUICK = {**TOY_CONFIG, "epochs": 2}


def training_children(root: psutil.Process | None = None) -> list[psutil.Process]:
    """The training children (and their workers) of `root` (this test process) still alive."""
    found = []
    for p in (root or psutil.Process()).children(recursive=True):
        try:
            if "retrain.job" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


def in_background(fn):
    """Run fn() on a thread; returns a dict that gets `result` or `error` when it ends, and the thread."""
    out: dict = {}

    def target():
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return out, thread


def wait_for(predicate, timeout: float = 120.0, what: str = "it"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_the_child_trains_and_hands_back_a_model(tiny_model_dir, train_rows, val_rows, labels, tmp_path):
    result = train(tiny_model_dir, train_rows, val_rows, labels, tmp_path, TrainConfig(**QUICK), max_length=16)
    assert result.model_dir == tmp_path / "job" / "out" / "model" and (result.model_dir / "config.json").exists()
    assert result.epochs_run == 2 and result.samples_seen == 2 * len(train_rows) and result.train_loss > 0
    assert result.best_val_macro_f1 is not None
    body = json.loads((tmp_path / "job" / "job.json").read_text())
    assert body["labels"] == labels and body["max_length"] == 16 and body["config"]["epochs"] == 2
    predictor = Predictor(result.model_dir, device="cpu", max_length=16)
    assert predictor.labels == labels and len(predictor.predict(["a text"])[0]) == 1
    assert training_children() == []


def test_an_exception_in_the_child_is_raised_with_its_message(tiny_model_dir, train_rows, labels, tmp_path):
    bad = train_rows.assign(label="no such label")
    with pytest.raises(TrainingFailed, match=r"exited 1 without a result: UnknownLabelError: .*no such label") as info:
        train(tiny_model_dir, bad, None, labels, tmp_path, TrainConfig(**QUICK), max_length=16)
    assert info.value.exit_code == 1 and "UnknownLabelError" in info.value.last_line
    assert "Traceback" in (tmp_path / "job" / "train.log").read_text()  # the full story stays in its log


def test_a_sigkilled_child_is_a_failure_naming_the_signal(tiny_model_dir, train_rows, labels, tmp_path):
    config = TrainConfig(**{**TOY_CONFIG, "epochs": 100})  # long enough to be killed while it trains
    out, thread = in_background(lambda: train(tiny_model_dir, train_rows, None, labels, tmp_path, config,
                                              max_length=16))
    victim = wait_for(lambda: training_children())[0]
    wait_for(lambda: STARTED_LINE in (tmp_path / "job" / "train.log").read_text())
    victim.kill()
    thread.join(60)
    error = out["error"]
    assert isinstance(error, TrainingFailed) and error.exit_code == -9
    assert "killed by SIGKILL (what the kernel's out-of-memory killer sends)" in str(error)
    assert training_children() == []


def test_a_child_past_its_timeout_is_killed(tiny_model_dir, train_rows, labels, tmp_path):
    config = TrainConfig(**{**TOY_CONFIG, "epochs": 100, "timeout_seconds": 0.5})
    with pytest.raises(TrainingTimedOut, match="timed out after train.timeout_seconds 0.5"):
        train(tiny_model_dir, train_rows, None, labels, tmp_path, config, max_length=16)
    assert training_children() == []


def test_a_stop_request_ends_training_at_a_step_without_a_model(tiny_model_dir, train_rows, labels, tmp_path):
    config = TrainConfig(**{**TOY_CONFIG, "epochs": 100})
    stop = threading.Event()
    out, thread = in_background(lambda: train(tiny_model_dir, train_rows, None, labels, tmp_path, config,
                                              max_length=16, should_stop=stop.is_set))
    wait_for(lambda: (tmp_path / "job" / "train.log").exists() and
             STARTED_LINE in (tmp_path / "job" / "train.log").read_text())
    stop.set()
    thread.join(60)
    error = out["error"]
    # Exit 3: the child's SIGTERM handler stopped it at a step's end (a SIGKILL after the grace would be -9).
    assert isinstance(error, TrainingStopped) and error.exit_code == STOPPED_EXIT
    assert not (tmp_path / "job" / "result.json").exists() and not (tmp_path / "job" / "out" / "model").exists()
    assert training_children() == []


def test_the_accelerate_command_line():
    assert command("/j", TrainConfig(launcher="process"), python="py") == ["py", "-m", "retrain.job", "/j"]
    two = command("/j", TrainConfig(launcher="accelerate", num_processes=2), python="py")
    assert two[:5] == ["py", "-m", "accelerate.commands.launch", "--num_processes", "2"]
    assert "--multi_gpu" in two and two[-3:] == ["-m", "retrain.job", "/j"]
    configured = command("/j", TrainConfig(launcher="accelerate", num_processes=4, accelerate_config="/c.yaml"),
                         python="py")
    assert "--config_file" in configured and "/c.yaml" in configured and "--multi_gpu" not in configured


def test_two_processes_on_cpu_train_over_gloo_and_rank_0_writes(tiny_model_dir, train_rows, val_rows, labels,
                                                                   tmp_path):
    config = TrainConfig(**{**QUICK, "launcher": "accelerate", "num_processes": 2})
    result = train(tiny_model_dir, train_rows, val_rows, labels, tmp_path, config, max_length=16)
    log = (tmp_path / "job" / "train.log").read_text()
    assert f"{STARTED_LINE} " in log and "rank 0)" in log and "rank 1)" in log  # two processes ran
    assert list((tmp_path / "job").glob("error*.json")) == []
    assert Predictor(result.model_dir, device="cpu", max_length=16).labels == labels
    assert result.epochs_run == 2 and training_children() == []
