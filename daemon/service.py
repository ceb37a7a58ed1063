"""The long-running daemon: APScheduler 3.x in the foreground, one leader per state.

Jobs: `inbox` (claim and record files), `cycle` (score new batches for drift, then run an update
when the trigger says so), `monitor` (bring the Prometheus metrics up to date with the event log),
`heartbeat` (renew the leader lock) and, for the demo, `feed` (drip the next demo file into the
inbox once the previous one has been learned). /metrics, /healthz and /readyz are served while it
runs. While the cycle job scores and trains, the inbox job leaves files in the inbox, so that no batch
is trained on before it is scored. SIGINT/SIGTERM stop the scheduler; a running cycle stops at its
next safe point and leaves its batches pending.
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
from datetime import datetime, timezone
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.blocking import BlockingScheduler

from daemon import events, memory
from daemon.context import Context
from daemon.fsck import CRASH_REPAIRS, REGISTRY_REPAIRS, fsck
from daemon.cycle.run import CycleAborted, awaiting_data, maybe_run
from daemon.ingest.validate import FORMATS
from daemon.monitoring import probation
from daemon.monitoring.drift_pass import DriftMonitor
from daemon.monitoring.live import LiveMonitor
from daemon.state import parking
from daemon.state.locks import DAEMON_LOCK, Locks
from daemon.telemetry.exporter import Telemetry, make_sink
from daemon.telemetry.outages import STATE_STORE, Outages
from registry.errors import RegistryUnavailable

log = logging.getLogger(__name__)

HINT = ("Only one daemon may lead a state store: stop the other one, give this one its own store, or start it "
        "with --standby to take over when the leader stops.")


class Daemon:
    def __init__(self, ctx: Context, demo_feed: Path | None = None, standby: bool = False) -> None:
        self.ctx = ctx
        self.standby = standby
        self.lease = ctx.settings.store.lease_seconds
        self.locks = Locks(ctx.store)
        self.demo_feed = demo_feed
        self._feed_finished = False
        self.idle = threading.Event()
        self.idle.set()
        self.scheduler: BlockingScheduler | None = None
        self.drift_monitor = DriftMonitor(ctx)
        self.live_monitor = LiveMonitor(ctx)  # served traffic (`cltool serve`), unlabeled
        # Held by the cycle job from drift scoring until its cycle ends: a batch recorded between the
        # scoring and the cycle's choice of batches would be trained on without a drift verdict.
        # The inbox job skips its poll while it is held (files wait in the inbox meanwhile).
        self.intake = threading.Lock()
        self.telemetry: Telemetry | None = None
        self._failures_logged: set[tuple[str, str]] = set()
        self.deferred_repairs: tuple[str, ...] = ()  # crash repairs that wait for MLflow (see start_up)
        self.outages = Outages({STATE_STORE: ctx.store.ping, "mlflow": ctx.registry.ping}, ctx.store.append, ctx.clock)

    # -- start and stop ------------------------------------------------------------------------
    def start_up(self) -> None:
        """Take the leader lock (a standby waits for it), then repair whatever a crash left half done."""
        if self.standby:
            self._wait_for_leadership()
        else:
            self.locks.acquire(DAEMON_LOCK, self.ctx.owner, self.lease, hint=HINT)
        self.ctx.store.upgrade(self.ctx.settings.legacy_rows_dir)  # a no-op at the newest schema
        for line in self.ctx.inbox.recover():
            log.warning("recovered: %s", line)
        self.ctx.keeper.reconcile()
        # What a crash can leave besides: an interrupted cycle, its undecided version, a missing event.
        # MLflow down must not keep the daemon from starting (it takes the inbox meanwhile): the repairs
        # that ask it then wait for the first cycle that finds it back.
        try:
            self.ctx.registry.ping()
        except RegistryUnavailable as exc:
            log.warning("MLflow does not answer at start-up (%s): checking registered versions later", exc)
            self.deferred_repairs = REGISTRY_REPAIRS
        fsck(self.ctx, repair=True, only=tuple(c for c in CRASH_REPAIRS if c not in self.deferred_repairs),
             me=self.ctx.owner)
        shutil.rmtree(self.ctx.settings.work_dir / "tmp", ignore_errors=True)
        self.ctx.store.append(events.DAEMON_STARTED, f"leader {self.ctx.owner}", actor=self.ctx.owner)

    def _wait_for_leadership(self) -> None:
        """`cltool run --standby`: wait, renewing nothing, until the leader's lease lapses (or, on this
        host, its process is gone), then lead. Ctrl-C/SIGTERM while waiting stops the wait."""
        said = None
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while not self.locks.try_acquire(DAEMON_LOCK, self.ctx.owner, self.lease):
                holder = self.locks.holder(DAEMON_LOCK)
                if holder is not None and holder.owner != said:
                    said = holder.owner
                    log.info("standby: %s leads (lease until %s); taking over when it stops renewing it",
                             holder.describe(), holder.expires_at.isoformat(timespec="seconds"))
                if self.ctx.stop.wait(min(2.0, self.lease / 6)):
                    raise StandbyStopped("stopped while waiting to lead")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if said is not None:
            log.warning("standby: took over the lead from %s", said)

    def shut_down(self, why: str) -> None:
        self.ctx.store.append(events.DAEMON_STOPPED, why, actor=self.ctx.owner)
        self.locks.release(DAEMON_LOCK, self.ctx.owner)

    def run_once(self) -> list:
        """`cltool run --once`: take the inbox, run one cycle if triggered or requested, exit."""
        self.start_up()
        sink = make_sink(self.ctx)
        self.drift_monitor.notify = sink.send if sink else None
        try:
            ingested = self.ctx.inbox.take_all()
            self.watch()
            try:
                self.repair_deferred()
            except RegistryUnavailable as exc:
                log.warning("MLflow still does not answer (%s): registered versions not checked", exc)
            self.drift()
            result = maybe_run(self.ctx, before_training=self.drift, notify=sink.send if sink else None)
            return [ingested, result]
        finally:
            if sink is not None:
                sink.close(timeout=self.ctx.settings.observe.webhook_timeout_seconds * 2)
            self.shut_down("run --once finished")

    def run_forever(self) -> None:
        try:
            self.start_up()
        except StandbyStopped:
            log.info("standby: stopped before it led")
            return
        trigger = self.ctx.settings.trigger
        telemetry = self.telemetry = Telemetry(self.ctx, probe=lambda: self.outages.probe(quick=True))
        self.drift_monitor.notify = self.live_monitor.notify = telemetry.notify
        telemetry.refresh()  # counters replayed from the log before the first scrape
        telemetry.start()  # its `observe.listening` event names the URLs
        scheduler = BlockingScheduler(
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": trigger.misfire_grace_seconds},
            timezone="UTC",
        )
        self.scheduler = scheduler
        scheduler.add_listener(self._on_job_problem, EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        scheduler.add_job(self.poll_inbox, "interval", seconds=trigger.poll_seconds, id="inbox", next_run_time=_now())
        scheduler.add_job(self.cycle, "interval", seconds=max(trigger.poll_seconds, 2.0), id="cycle")
        scheduler.add_job(self.heartbeat, "interval", seconds=self.lease / 3, id="heartbeat")
        scheduler.add_job(telemetry.refresh, "interval", seconds=self.ctx.settings.observe.refresh_seconds,
                          id="monitor")
        scheduler.add_job(self.live, "interval", seconds=self.ctx.settings.serve.live_check_seconds, id="live")
        if self.demo_feed is not None:
            scheduler.add_job(self.feed_demo, "interval", seconds=trigger.poll_seconds, id="feed", next_run_time=_now())
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        log.info("daemon running: inbox %s, state %s (Ctrl-C stops)", self.ctx.settings.inbox_dir,
                 self.ctx.settings.state_dir)
        why = "stopped by signal"
        try:
            scheduler.start()  # blocks until a signal handler shuts it down
        except Exception as exc:  # noqa: BLE001 - recorded, then re-raised to the CLI
            why = f"crashed: {exc}"
            raise
        finally:
            self.ctx.stop.set()
            self.idle.wait()  # a cycle in flight reaches its next safe point and returns
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            telemetry.stop()
            self.shut_down(why)

    def _on_signal(self, signum, _frame) -> None:
        log.info("received %s: stopping at the next safe point", signal.Signals(signum).name)
        self.ctx.stop.set()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    # -- jobs ----------------------------------------------------------------------------------
    def poll_inbox(self) -> None:
        if self.ctx.stop.is_set() or not self.intake.acquire(blocking=False):
            return  # stopping, or a cycle is choosing/training on its batches: the files wait
        try:
            self.ctx.inbox.take_all()  # each file's outcome is an event: its log line is written with it
        finally:
            self.intake.release()

    def watch(self) -> None:
        """Probation of a freshly promoted champion; cheap when no batch arrived since the last look."""
        if self.ctx.settings.watch.enabled:
            probation.check(self.ctx)  # a rollback it makes is an event, logged as it is written

    def drift(self) -> None:
        """Score new batches before any cycle trains on them (after training they would be the reference).
        Each verdict is an event, and so already one log line."""
        self.drift_monitor.check()

    def live(self) -> None:
        """Score what `cltool serve` answered lately (nothing when nothing was served); a surge it opens or
        closes is an event and a webhook message."""
        self.live_monitor.check()

    def cycle(self) -> None:
        if self.ctx.stop.is_set():
            return
        self.idle.clear()
        try:
            self.watch()  # before a cycle: a bad champion must not be the parent of the next candidate
            with self.intake:
                self.repair_deferred()
                self.drift()  # first, so that an alert it opens can request this very cycle
                ran = maybe_run(self.ctx, before_training=self.drift,
                                notify=self.telemetry.notify if self.telemetry is not None else None)
            if ran is not None:
                memory.trim()
            self.live_monitor.check_embeddings()  # the champion's pass over served texts, when due
        except CycleAborted:
            pass  # its `cycle.aborted` event is the log line; the batches stay pending
        finally:
            if self.ctx.release_idle_models():  # an idle daemon holds no model (model.keep_loaded_seconds)
                memory.trim()
            self.idle.set()

    def repair_deferred(self) -> None:
        """The start-up repairs MLflow was down for, before any cycle registers a version of its own;
        raises (an outage the job listener explains) while MLflow is still away."""
        if self.deferred_repairs:
            fsck(self.ctx, repair=True, only=self.deferred_repairs, me=self.ctx.owner)
            log.info("MLflow is back: start-up repairs (%s) done", ", ".join(self.deferred_repairs))
            self.deferred_repairs = ()

    def heartbeat(self) -> None:
        """Probe the dependencies (one line when one goes or returns), then renew the leader lock."""
        if self.outages.probe().get(STATE_STORE) != "ok":
            return  # nothing to renew in; if the lease runs out meanwhile, renew() says so once it is back
        if not self.locks.renew(DAEMON_LOCK, self.ctx.owner, self.lease):
            log.error("lost the leader lock (another process took it); stopping")
            self._on_signal(signal.SIGTERM, None)

    def feed_demo(self) -> None:
        """Demo only: copy the next file of the feed into the inbox once nothing is waiting."""
        assert self.demo_feed is not None
        inbox = self.ctx.settings.inbox_dir
        waiting = [p for folder in (inbox, self.ctx.inbox.claimed_dir) for p in folder.iterdir() if p.is_file()]
        if waiting or (parking.pending(self.ctx.store) and not awaiting_data(self.ctx)):
            return  # the last file is not learned yet (a WAIT decision means: feed more)
        # Each file is fed once: its `demo.fed` event is written before the copy, so neither a poll
        # racing this job nor a restart feeds it again.
        fed = {e.payload.get("file") for e in self.ctx.store.events(types=[events.DEMO_FED])}
        for path in sorted(self.demo_feed.iterdir()):
            if path.is_file() and path.suffix.lower() in FORMATS and path.name not in fed:
                self.ctx.store.append(events.DEMO_FED, f"{path.name} from {self.demo_feed}", actor=self.ctx.owner,
                                      payload={"file": path.name})
                staging = inbox / f".{path.name}.tmp"
                shutil.copyfile(path, staging)
                staging.rename(inbox / path.name)
                return
        if not self._feed_finished:  # said once: the demo has shown all it has, the daemon goes on
            self._feed_finished = True
            log.info("demo feed: all %d files fed; the daemon now waits for new files in %s (Ctrl-C stops)",
                     len(fed), inbox)

    def _on_job_problem(self, event: JobExecutionEvent) -> None:
        """One line per problem: a missed run, or a failed job with its traceback (once per job and error
        type); nothing for a failure an outage explains, whose line the outage watch has written."""
        try:
            if event.code == EVENT_JOB_MISSED:
                self.ctx.store.append(events.JOB_MISSED, f"{event.job_id}: late beyond misfire grace (busy, or the "
                                      "host slept)", actor=self.ctx.owner, payload={"job_id": event.job_id})
                return
            if self.outages.explains(event.exception):
                log.debug("job %s failed during an outage: %r", event.job_id, event.exception)
                return
            key = (event.job_id, type(event.exception).__name__)
            first = key not in self._failures_logged
            self._failures_logged.add(key)
            log.error("job %s failed: %r", event.job_id, event.exception, exc_info=event.exception if first else None)
            self.ctx.store.append(events.JOB_FAILED, f"{event.job_id}: {event.exception!r}", actor=self.ctx.owner,
                                  payload={"job_id": event.job_id}, quiet=True)
        except Exception as exc:  # noqa: BLE001 - a listener must never raise into the scheduler
            log.debug("could not record the problem of job %s: %r", event.job_id, exc)


class StandbyStopped(Exception):
    """A standby was told to stop before it became the leader: nothing to shut down."""


def _now() -> datetime:
    return datetime.now(timezone.utc)
