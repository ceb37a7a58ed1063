"""Training as a supervised child process: a job folder goes in, a model folder and a result file come out.

The daemon's cycle calls `train()`; by `TrainConfig.launcher` it runs `fine_tune`

- `process` (the default) in one child, `python -m retrain.job JOB_DIR`: CPU or one GPU;
- `accelerate` under `accelerate launch` with `num_processes` children (DDP: NCCL on GPUs, gloo on CPU;
  multi-node through `accelerate_config`). Each process takes `batch_size` rows a step, so the effective
  batch is batch_size x num_processes; only rank 0 writes the model and the result;
- `inline` in the caller's own process (tests and debugging; a crash there is the caller's crash).

The job folder: `job.json` (starting model, labels, settings, max_length), `train.parquet`, `val.parquet`;
the child writes `out/model/`, `result.json` (written whole, then renamed) and, when it fails, `error.json`
with the error's type and message; its stdout and stderr go to `train.log`, whose lines the supervisor
passes on to its own log as they come. The supervisor SIGTERMs the child's process group when
`should_stop()` turns true (the child stops at its next optimisation step, exit 3) and SIGKILLs it
`STOP_GRACE_SECONDS` later; after `timeout_seconds` it kills it. Whatever way a child ends without a
result (an exception, an out-of-memory kill, a SIGKILL, a timeout) is a `TrainingFailed` naming its last
error line, raised in the caller, which stays alive.

Importing this module loads nothing heavy: the child imports torch and transformers, the supervisor does not.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess  # nosec B404 - the children are this package's own module, started without a shell
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from retrain.config import TrainConfig
from retrain.errors import RetrainError

if TYPE_CHECKING:
    import pandas as pd

    from retrain.train import TrainResult

log = logging.getLogger(__name__)

JOB, TRAIN, VAL, RESULT, LOG, OUT = "job.json", "train.parquet", "val.parquet", "result.json", "train.log", "out"
STOPPED_EXIT = 3  # the child stopped early because it was asked to (SIGTERM)
STOP_GRACE_SECONDS = 15.0  # after SIGTERM, before SIGKILL
POLL_SECONDS = 0.5
STARTED_LINE = "cltool-train: started"  # printed once SIGTERM is handled (a stop is then a clean one)
ERROR_PREFIX = "cltool-train: error: "  # the child's last line when it fails on an exception
COLUMNS = ("text", "label", "teacher_probs")  # what training reads of a row


class TrainingFailed(RetrainError, RuntimeError):
    """A training child ended without a model: `last_line` is its last error line (or its last log line)."""

    def __init__(self, how: str, last_line: str, exit_code: int | None) -> None:
        self.how, self.last_line, self.exit_code = how, last_line, exit_code
        super().__init__(f"training {how}: {last_line}" if last_line else f"training {how}")


class TrainingTimedOut(TrainingFailed):
    pass


class TrainingStopped(RetrainError):
    """The caller asked training to stop (a shutdown); the child is gone and left no model."""

    def __init__(self, exit_code: int | None = None) -> None:
        self.exit_code = exit_code  # STOPPED_EXIT: the child stopped itself at a step's end
        super().__init__("training stopped on request; no model was kept")


# -- the caller's side ---------------------------------------------------------------------------
def train(init: str | Path, train_rows: pd.DataFrame, val_rows: pd.DataFrame | None, labels: list[str],
          out_dir: Path, config: TrainConfig, *, max_length: int, should_stop: Callable[[], bool] | None = None,
          python: str = sys.executable) -> TrainResult:
    """Fine-tune as `config.launcher` says (see the module docstring); same result as `fine_tune`."""
    if config.launcher == "inline":
        from retrain.train import fine_tune

        return fine_tune(init, train_rows, val_rows, labels, out_dir, config, max_length=max_length,
                         should_stop=should_stop)
    if config.num_processes > 1 and config.launcher != "accelerate":
        log.warning("train.num_processes %d is used only with train.launcher = 'accelerate': training in one "
                    "process", config.num_processes)
    job_dir = write_job(Path(out_dir) / "job", init, train_rows, val_rows, labels, config, max_length)
    return run_job(job_dir, config, should_stop=should_stop or (lambda: False), python=python)


def write_job(job_dir: Path, init: str | Path, train_rows: pd.DataFrame, val_rows: pd.DataFrame | None,
              labels: list[str], config: TrainConfig, max_length: int) -> Path:
    shutil.rmtree(job_dir, ignore_errors=True)  # an earlier job's result or errors must not be read as this one's
    job_dir.mkdir(parents=True)
    _rows(train_rows).to_parquet(job_dir / TRAIN, index=False)
    if val_rows is not None and len(val_rows):
        _rows(val_rows).to_parquet(job_dir / VAL, index=False)
    spec = {"init": str(init), "labels": list(labels), "config": config.model_dump(mode="json"),
            "max_length": max_length}
    (job_dir / JOB).write_text(json.dumps(spec, indent=1), encoding="utf-8")
    return job_dir


def _rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[[c for c in COLUMNS if c in rows.columns]].reset_index(drop=True)


def command(job_dir: Path, config: TrainConfig, python: str = sys.executable) -> list[str]:
    """The child's command line for `config.launcher` (process or accelerate)."""
    child = ["-m", "retrain.job", str(job_dir)]
    if config.launcher == "process":
        return [python, *child]
    launch = [python, "-m", "accelerate.commands.launch", "--num_processes", str(config.num_processes)]
    if config.accelerate_config:
        launch += ["--config_file", config.accelerate_config]
    else:  # what `accelerate config` would ask for; --multi_gpu is DDP, on gloo where there is no GPU
        launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
        if config.num_processes > 1:
            launch.append("--multi_gpu")
    return [*launch, *child]


SUPERVISOR_ENV = "CLTOOL_TRAIN_SUPERVISOR_PID"
"""The supervising daemon's pid, in the child's environment: a child whose supervisor died (a SIGKILL leaves it
running in its own session) stops at its next step instead of training for nobody beside the next daemon."""


def _supervisor_gone() -> bool:
    """Only for one process: DDP ranks would see it at different steps and hang in the next all-reduce."""
    pid = int(os.environ.get(SUPERVISOR_ENV, "0") or 0)
    if pid <= 0 or int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's (not cltool's case)
        return False
    return False


def run_job(job_dir: Path, config: TrainConfig, *, should_stop: Callable[[], bool],
            python: str = sys.executable) -> TrainResult:
    """Start the child on `job_dir`, pass its log on, stop or kill it when asked or late, read its result."""
    from retrain.train import TrainResult

    cmd = command(job_dir, config, python)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", SUPERVISOR_ENV: str(os.getpid())}
    log_path = job_dir / LOG
    started = time.monotonic()
    with open(log_path, "wb") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,  # nosec B603
                                 env=env, cwd=job_dir, start_new_session=True)
    log.info("training in child pid %d (%s, %s)", child.pid, config.launcher,
             f"{config.num_processes} processes" if config.launcher == "accelerate" else "1 process")
    follow = _Follow(log_path)
    stopped = timed_out = False
    try:
        while child.poll() is None:
            follow.pass_on()
            if should_stop():
                stopped = True
                _stop(child)
                break
            if config.timeout_seconds and time.monotonic() - started > config.timeout_seconds:
                timed_out = True
                _kill(child)
                break
            time.sleep(POLL_SECONDS)
    except BaseException:
        _kill(child)  # the caller is going away: so is its child
        raise
    code = child.wait()
    follow.pass_on()
    if stopped or code == STOPPED_EXIT:
        raise TrainingStopped(code)
    if timed_out:
        raise TrainingTimedOut(f"timed out after train.timeout_seconds {config.timeout_seconds:g}",
                               follow.last_error(), code)
    result = job_dir / RESULT
    if code == 0 and result.exists():
        data = json.loads(result.read_text(encoding="utf-8"))
        return TrainResult(**{**data, "model_dir": Path(data["model_dir"])})
    how = (f"exited {code} without a result" if code >= 0 else
           f"was killed by {_signal_name(-code)}" + (" (what the kernel's out-of-memory killer sends)"
                                                     if -code == signal.SIGKILL else ""))
    raise TrainingFailed(f"child {how}", follow.last_error(job_dir), code)


def _stop(child: subprocess.Popen) -> None:
    """SIGTERM the child's process group; SIGKILL it if it is still there after the grace period."""
    _signal_group(child, signal.SIGTERM)
    try:
        child.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _kill(child)


def _kill(child: subprocess.Popen) -> None:
    _signal_group(child, signal.SIGKILL)
    child.wait()


def _signal_group(child: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(child.pid, sig)  # the child leads its own session: accelerate's workers go too
    except ProcessLookupError:
        pass


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class _Follow:
    """The child's log, passed on to ours a line at a time as it grows; remembers its last lines."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.tail, self._partial = path, 0, [], b""

    def pass_on(self) -> None:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        self.offset += len(chunk)
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                log.info("train: %s", line)
                self.tail = [*self.tail[-49:], line]

    def last_error(self, job_dir: Path | None = None) -> str:
        """The child's error (error.json), else its last line naming an error, else its last line."""
        if job_dir is not None:
            for path in sorted(job_dir.glob("error*.json")):
                try:
                    body = json.loads(path.read_text(encoding="utf-8"))
                    return f"{body['type']}: {body['message']}"
                except (OSError, ValueError, KeyError):
                    continue
        for line in reversed(self.tail):
            if "Error" in line or "error" in line or "Killed" in line:
                return line.removeprefix(ERROR_PREFIX)
        return self.tail[-1] if self.tail else ""


# -- the child's side ----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m retrain.job JOB_DIR", file=sys.stderr)
        return 2
    job_dir = Path(args[0]).resolve()
    rank = int(os.environ.get("RANK", "0"))
    # No time stamp: the supervisor's log line has its own.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format=f"rank{rank} %(levelname)s %(name)s: %(message)s")
    for name in ("datasets", "transformers", "filelock", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # Every checkpoint load lists the layers a tensor-parallel plan did not shard (1.4 kB); none is sharded here.
    logging.getLogger("transformers.distributed.tensor_parallel").setLevel(logging.ERROR)
    asked: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, frame: asked.append(signum))

    def stop_now() -> bool:  # checked at every optimisation step
        if not asked and _supervisor_gone():
            asked.append(0)  # 0: no signal, the supervisor died
        return bool(asked)
    print(f"{STARTED_LINE} (pid {os.getpid()}, rank {rank})", file=sys.stderr, flush=True)  # SIGTERM stops it now
    try:
        import pandas as pd

        from retrain.train import fine_tune

        spec = json.loads((job_dir / JOB).read_text(encoding="utf-8"))
        config = TrainConfig.model_validate({**spec["config"], "launcher": "inline"})
        val_path = job_dir / VAL
        result = fine_tune(spec["init"], pd.read_parquet(job_dir / TRAIN),
                           pd.read_parquet(val_path) if val_path.exists() else None, spec["labels"],
                           job_dir / OUT, config, max_length=spec["max_length"], should_stop=stop_now)
    except Exception as exc:  # noqa: BLE001 - written down for the supervisor, then the traceback
        name = "error.json" if rank == 0 else f"error.rank{rank}.json"
        (job_dir / name).write_text(json.dumps({"type": type(exc).__name__, "message": str(exc), "rank": rank}),
                                    encoding="utf-8")
        logging.getLogger("retrain.job").exception("training failed")
        print(f"{ERROR_PREFIX}{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    if asked:
        if rank == 0:
            shutil.rmtree(result.model_dir, ignore_errors=True)  # interrupted: not a model anyone may use
        why = "SIGTERM" if asked[0] else "its supervisor's death"
        print(f"cltool-train: stopped on {why}; no model kept", file=sys.stderr, flush=True)
        return STOPPED_EXIT
    if rank == 0:
        body = {key: (str(value) if isinstance(value, Path) else value) for key, value in result.__dict__.items()}
        partial = job_dir / f"{RESULT}.partial"
        partial.write_text(json.dumps(body), encoding="utf-8")
        partial.rename(job_dir / RESULT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
