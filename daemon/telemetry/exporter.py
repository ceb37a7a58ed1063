"""The daemon's outward signals: Prometheus metrics kept in step with the event log, the HTTP
endpoints that serve them, and the webhook that carries alerts to people.

Counters are derived from the event log rather than bumped where things happen: whichever path
wrote an event (the daemon, `cltool promote`, `cltool run --once`) it is counted, and after a
restart the first refresh replays the whole log, so the numbers are right from the first scrape.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from daemon import events
from daemon.context import Context
from daemon.monitoring.drift_pass import SCORED
from daemon.promotion.aliases import AUTO_ROLLBACK_ACTOR
from daemon.state import parking
from daemon.state.store import Event
from daemon.telemetry import HealthServer, Metrics, WebhookSink
from daemon.telemetry.metrics import SUCCESSFUL_OUTCOMES
from daemon.telemetry.webhook import sink_for

log = logging.getLogger(__name__)

COUNTED = (events.CYCLE_FINISHED, events.CYCLE_FAILED, events.CYCLE_ABORTED, events.PROMOTION, events.ROLLBACK,
           events.ALIAS_SYNCED, events.JOB_FAILED, events.JOB_MISSED, events.INGEST_QUARANTINED, events.DRIFT_SCORED,
           events.LIVE_SCORED, events.LIVE_EMBEDDING_SCORED)


def make_sink(ctx: Context) -> WebhookSink | None:
    return sink_for(ctx.settings.observe)


class Telemetry:
    """One per daemon: `refresh()` on a schedule, `start()`/`stop()` around the scheduler."""

    def __init__(self, ctx: Context, metrics: Metrics | None = None,
                 probe: Callable[[], dict[str, str]] | None = None) -> None:
        """`probe`: the daemon's outage watch, so that a /readyz that finds a dependency gone or back
        is also the moment its line is written; without it /readyz runs the checks itself."""
        self.ctx = ctx
        self.probe = probe
        self.metrics = metrics or Metrics()
        self.sink = make_sink(ctx)
        self.server: HealthServer | None = None
        self._after_id = 0
        self._lock = threading.Lock()  # the monitor job and start-up may refresh at the same moment

    # -- metrics -------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Apply every counted event since the last refresh, then the gauges that are read live."""
        with self._lock:
            for event in self.ctx.store.events(types=COUNTED, after_id=self._after_id):
                self._apply(event)
                self._after_id = event.id
            self.metrics.inbox_backlog(len(self.ctx.inbox.waiting()))
            self.metrics.parked_batches(len(parking.parked(self.ctx.store)))

    def _apply(self, e: Event) -> None:
        m = self.metrics
        if e.type == events.CYCLE_FINISHED:
            m.cycle_finished(e.reason if e.reason in SUCCESSFUL_OUTCOMES else "failed", e.at)
        elif e.type in (events.CYCLE_FAILED, events.CYCLE_ABORTED):
            m.cycle_finished(e.type.removeprefix("cycle."), e.at)
        elif e.type == events.PROMOTION:
            m.promoted("gate" if e.actor == "daemon" else "manual", e.version or "")
        elif e.type == events.ROLLBACK:
            m.rolled_back("automatic" if e.actor == AUTO_ROLLBACK_ACTOR else "manual", e.version or "")
        elif e.type == events.ALIAS_SYNCED:  # the alias as it really is after a move
            champion = e.payload.get("champion")
            if champion:
                m.champion(champion)
        elif e.type == events.JOB_FAILED:
            m.job_error(e.payload.get("job_id") or e.reason.split(":", 1)[0])
        elif e.type == events.JOB_MISSED:
            m.job_misfire(e.payload.get("job_id") or e.reason.split(":", 1)[0])
        elif e.type == events.INGEST_QUARANTINED:
            m.quarantined()
        elif e.type == SCORED:
            self._drift(e.payload)
        elif e.type == events.LIVE_SCORED:
            self.metrics.served_traffic(e.payload)
        elif e.type == events.LIVE_EMBEDDING_SCORED:
            self.metrics.served_embeddings(e.payload)

    def _drift(self, payload: dict[str, Any]) -> None:
        for result in payload.get("results", []):
            self.metrics.drift_window(result["detector"], result["score"], result["threshold"], result["drifted"],
                                      result.get("alert") == "open")
            if result["detector"] == "live_performance":
                self.metrics.live_macro_f1(result["details"]["live_macro_f1"])
                self.metrics.live_accuracy(result["details"]["live_accuracy"])
        if payload.get("mean_confidence") is not None:
            self.metrics.mean_confidence(payload["mean_confidence"])

    # -- alerts --------------------------------------------------------------------------------
    def notify(self, message: dict[str, Any]) -> None:
        if self.sink is not None:
            self.sink.send(message)

    # -- the HTTP endpoints --------------------------------------------------------------------
    def start(self) -> str | None:
        """Serve /metrics, /healthz, /readyz; the bound URL goes in the log and in an
        `observe.listening` event (how a script finds an ephemeral port). A port in use is logged and
        recorded, not fatal: learning goes on, and Prometheus's CltoolDown alert reports the gap."""
        o = self.ctx.settings.observe
        if not o.enabled:
            return None
        checks = {"state_store": self.ctx.store.ping, "mlflow": self.ctx.registry.ping}
        server = HealthServer(self.metrics.registry, checks, host=o.host, port=o.port, probe=self.probe)
        try:
            server.start()
        except OSError as exc:
            log.error("metrics endpoint not started: cannot listen on %s:%d (%s); set observe.port to a free "
                      "port, or 0 for any", o.host, o.port, exc)
            self.ctx.store.append(events.OBSERVE_FAILED, f"cannot listen on {o.host}:{o.port}: {exc}",
                                  actor=self.ctx.owner, payload={"host": o.host, "port": o.port})
            return None
        self.server = server
        self.ctx.store.append(events.OBSERVE_LISTENING,
                              f"metrics at {server.url}/metrics, probes at {server.url}/healthz and /readyz",
                              actor=self.ctx.owner, payload={"url": server.url, "host": o.host, "port": server.port})
        return server.url

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        if self.sink is not None:
            self.sink.close(timeout=self.ctx.settings.observe.webhook_timeout_seconds * 2)
