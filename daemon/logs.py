"""Logging set-up for the CLI and the daemon: one line per event, text or JSON."""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone

# Libraries that narrate every step at INFO; the daemon's own lines are what an operator reads.
_QUIET = ("mlflow", "alembic", "urllib3", "filelock", "apscheduler.executors", "datasets", "transformers",
          "httpx", "huggingface_hub", "evaluate")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"at": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
                "level": record.levelname, "logger": record.name, "message": record.getMessage()}
        event = getattr(record, "event", None)
        if event is not None:
            line["event"] = event
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        event = getattr(record, "event", None)
        if event is not None:  # the event-log line, written readably: type, version, reason
            version = f" v{event['version']}" if event.get("version") else ""
            batch = f" [{event['batch_id']}]" if event.get("batch_id") else ""
            record.msg, record.args = f"{event['type']}{version}{batch}: {event['reason']}", ()
        return super().format(record)


class _DropJobTracebacks(logging.Filter):
    """APScheduler logs every failed job with its traceback; the daemon's listener already reports each
    failure in one line (and none while an outage it has reported explains it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "raised an exception" not in record.getMessage()


class _DropBusySkips(logging.Filter):
    """APScheduler warns each time a job is skipped because its previous run is still going. For the
    cycle job that is the design (max_instances=1 while a model trains), not news for the operator; nor
    is its "Adding job tentatively" line for every job added before the scheduler starts."""

    NOISE = ("maximum number of running instances reached", "Adding job tentatively", "Added job ", "Scheduler started")

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in self.NOISE)


def configure(level: str = "INFO", fmt: str = "text") -> None:
    # MLflow installs its own handler and format on import unless told not to: its lines then reach
    # ours through the root logger, in the same format. (Set before mlflow is imported, which is lazy.)
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    # Per-file download, load and save bars (MLflow artifacts, Hub and transformers) at every cycle are
    # noise in a daemon's log: one line per event, training progress in its epoch lines.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    # With a tracking server MLflow writes "View run … at: <url>" to stdout at the end of every run:
    # stdout is for `--json` answers, and the run's link is in the cycle's own events.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    scheduler_log = logging.getLogger("apscheduler.scheduler")
    if not any(isinstance(f, _DropBusySkips) for f in scheduler_log.filters):
        scheduler_log.addFilter(_DropBusySkips())
    executors_log = logging.getLogger("apscheduler.executors.default")
    if not any(isinstance(f, _DropJobTracebacks) for f in executors_log.filters):
        executors_log.addFilter(_DropJobTracebacks())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    # Loading a checkpoint warns, through transformers' own handler, with the whole list of layers a
    # tensor-parallel plan did not shard (1.4 kB a load); cltool never shards, so it is noise.
    logging.getLogger("transformers.distributed.tensor_parallel").setLevel(logging.ERROR)
