"""A small HTTP server for Prometheus scrapes and liveness/readiness probes.

/metrics  the registry in Prometheus text format
/healthz  200 "ok" while the process can answer at all (liveness)
/readyz   runs every ready check; 200 {"ready": true, ...} or 503 naming the failing check (readiness)

Stdlib only (`http.server`), one daemon thread, started by `start()` and stopped by `stop()`.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


class HealthServer:
    """Serves /metrics, /healthz and /readyz. A ready check returns None when ready and raises otherwise."""

    # 127.0.0.1 by default: the endpoints are unauthenticated and /readyz echoes internal error
    # messages, so exposing them beyond the host is an explicit choice (host="0.0.0.0" in a container
    # whose port is published only to the Prometheus network).
    def __init__(self, metrics_registry: CollectorRegistry, ready_checks: Mapping[str, Callable[[], None]],
                 host: str = "127.0.0.1", port: int = 9464, probe: Callable[[], dict[str, str]] | None = None) -> None:
        self.registry = metrics_registry
        self.ready_checks = dict(ready_checks)
        self.probe = probe  # runs the same checks and also reports outages (daemon.telemetry.outages)
        self.host = host
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port (the real one when constructed with port=0); the requested one before start()."""
        return self._server.server_address[1] if self._server else self._requested_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "HealthServer":
        if self._server is not None:
            return self
        server = ThreadingHTTPServer((self.host, self._requested_port), _handler_for(self))
        server.daemon_threads = True  # a hung scrape must not keep the process alive at exit
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="cltool-health-http", daemon=True)
        self._thread.start()
        log.debug("health server listening on %s", self.url)
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server, self._thread = None, None

    def __enter__(self) -> "HealthServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # A probe (Kubernetes, a load balancer) gives up after a few seconds: answer within 2 s, naming the
    # check that did not answer, rather than wait on a dead server's TCP or HTTP retries.
    CHECK_DEADLINE_SECONDS = 1.5

    def readiness(self) -> tuple[bool, dict[str, str]]:
        """Run every check at once, each within CHECK_DEADLINE_SECONDS; each maps to "ok" or
        "<ExceptionType>: <message>"."""
        from daemon.telemetry.outages import run_checks

        results = self.probe() if self.probe else run_checks(self.ready_checks, self.CHECK_DEADLINE_SECONDS)
        return all(v == "ok" for v in results.values()), results


def _handler_for(owner: HealthServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, CONTENT_TYPE_LATEST, generate_latest(owner.registry))
            elif path == "/healthz":
                self._reply(200, "text/plain; charset=utf-8", b"ok\n")
            elif path == "/readyz":
                ready, checks = owner.readiness()
                body: dict[str, object] = {"ready": ready, "checks": checks}
                if not ready:
                    body["failing"] = sorted(n for n, v in checks.items() if v != "ok")
                self._reply(200 if ready else 503, "application/json", json.dumps(body).encode())
            else:
                self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n")

        def _reply(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            # Scrapes every 15 s would flood the daemon log; keep them at debug.
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
