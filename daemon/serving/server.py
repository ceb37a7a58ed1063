"""`cltool serve`: wire the follower, the batcher, the recorder and the API, and run them under uvicorn.

Why Starlette under uvicorn: both already come with MLflow (its own scoring server uses them), so serving
adds no dependency; Starlette is the small core FastAPI is built on, and this API has five routes and
hand-written validation messages, so FastAPI's schema layer would add weight and little else.

The server reads the registry (where @champion points; the version's files) and writes to the state store
(the traffic sample and its own events), so it runs on any host that has the two URLs, beside or far from
the daemon. Its model files are cached under <state_dir>/serve/models, apart from the daemon's.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
from typing import Any, Callable

from daemon import events
from daemon.context import Context, ModelCache
from daemon.serving.app import Limits, ServeMetrics, build_app
from daemon.serving.batcher import Answer, Batcher
from daemon.serving.follower import Follower, Served
from daemon.serving.recorder import Recorder
from daemon.state import traffic
from daemon.telemetry.webhook import sink_for

log = logging.getLogger(__name__)

ALIAS = "champion"


class Server:
    """Everything `cltool serve` runs; `run()` blocks until SIGINT/SIGTERM, then drains and stops."""

    def __init__(self, ctx: Context, host: str | None = None, port: int | None = None,
                 load: Callable[[str], Any] | None = None) -> None:
        self.ctx = ctx
        s = ctx.settings.serve
        self.host, self.port = host or s.host, s.port if port is None else port
        self.cache = ModelCache(ctx.settings.state_dir / "serve" / "models", ctx.registry)
        self.metrics = ServeMetrics()
        self.sink = sink_for(ctx.settings.observe)
        self.follower = Follower(lambda: ctx.registry.alias_version(ALIAS), load or self._load,
                                 poll_seconds=s.poll_seconds, on_swap=self._swapped, on_failure=self._failed)
        self.batcher = Batcher(lambda: self.follower.current, max_batch=s.max_batch,
                               max_wait=s.batch_wait_ms / 1000, on_batch=self.metrics.batch.observe)
        self.recorder = Recorder(lambda rows: traffic.record(ctx.store, rows), s.sample_rate, clock=ctx.clock)
        self.metrics.recorded.set_function(lambda: self.recorder.recorded)
        self.metrics.record_dropped.set_function(lambda: self.recorder.dropped)
        self.app = build_app(self.follower, self.batcher, self.metrics, token=s.token,
                             limits=Limits(s.max_body_bytes, s.max_texts), record=self._record)
        self.bound: tuple[str, int] | None = None

    # -- model loading ------------------------------------------------------------------------------
    def _load(self, version: str) -> Any:
        from retrain.evaluation import Predictor  # torch: loaded once the server is up and answering probes

        s = self.ctx.settings
        device = None if s.train.device == "auto" else s.train.device
        return Predictor(self.cache.path(version), device="cpu" if s.serve.precision == "int8" else device,
                         max_length=s.model.max_length, int8=s.serve.precision == "int8")

    def _swapped(self, new: Served, old: Served | None) -> None:
        self.metrics.version.set(int(new.version))
        self.metrics.swaps.inc()
        self.metrics.load_failing.set(0)
        self.cache.prune({new.version} | ({old.version} if old else set()))
        self._event(events.SERVE_SWAPPED, f"serving version {new.version}" + (f" (was {old.version})" if old else ""),
                    version=new.version, payload={"from": old.version if old else None, "to": new.version})

    def _failed(self, version: str, exc: BaseException) -> None:
        self.metrics.load_failures.inc()
        self.metrics.load_failing.set(1)
        served = self.follower.current.version if self.follower.current else None
        reason = (f"version {version} (@{ALIAS}) failed to load: {type(exc).__name__}: {exc}; "
                  f"still serving {served or 'nothing'}")
        self._event(events.SERVE_LOAD_FAILED, reason, version=version,
                    payload={"version": version, "serving": served, "error": f"{type(exc).__name__}: {exc}"})
        if self.sink is not None:
            self.sink.send({"event": events.SERVE_LOAD_FAILED, "version": version, "serving": served,
                            "text": f"cltool serve: {reason}"})

    def _event(self, type_: str, reason: str, **fields: Any) -> None:
        try:  # the event log is a record, not a dependency: serving goes on without it
            self.ctx.store.append(type_, reason, actor=self.ctx.owner, **fields)
        except Exception as exc:
            log.warning("serve: could not record %s (%s): %s", type_, exc, reason)

    def _record(self, source: str | None, texts: list[str], answer: Answer) -> None:
        self.recorder.add(answer.version, source, texts, answer.labels, answer.probs)

    # -- running ----------------------------------------------------------------------------------
    def bind(self) -> socket.socket:
        """Listen now (port 0 = any free port), so the address can be printed before the model loads."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose `proto` says TCP, and without it
        # every small answer waits ~40 ms for the client's delayed ACK (Nagle): measured by bench/serve.py.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(2048)
        sock.set_inheritable(True)
        self.bound = sock.getsockname()[:2]
        return sock

    def run(self, sock: socket.socket | None = None) -> None:
        import uvicorn

        sock = sock or self.bind()
        self._event(events.SERVE_STARTED, f"listening on http://{self.bound[0]}:{self.bound[1]}",
                    payload={"host": self.bound[0], "port": self.bound[1], "pid": os.getpid()})
        self.follower.start()
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=10)
        # uvicorn drains in-flight requests on SIGINT/SIGTERM, then raises the signal again under the
        # handlers it found: these make that a clean exit (status 0) after the finally below.
        previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.follower.stop()
            self.batcher.close()
            self.recorder.close()
            if self.sink is not None:
                self.sink.close(timeout=5)
