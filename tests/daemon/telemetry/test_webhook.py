"""WebhookSink against real stdlib HTTP servers on loopback."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from daemon.telemetry import WebhookSink


class Receiver:
    """A loopback webhook that records each POSTed JSON body and answers from a script of statuses."""

    def __init__(self, statuses: list[int] | None = None) -> None:
        self.bodies: list[dict] = []
        self.statuses = list(statuses or [])
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                owner.bodies.append(json.loads(body))
                self.send_response(owner.statuses.pop(0) if owner.statuses else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def __enter__(self) -> "Receiver":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def dead_url() -> str:
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


def test_posts_slack_text_and_structured_fields():
    with Receiver() as hook:
        sink = WebhookSink(hook.url, sleep=lambda s: None)
        sink.send({"event": "promoted", "version": 4, "actor_kind": "gate"})
        sink.send({"event": "drift", "text": "drift on psi", "detector": "psi"})
        assert sink.close(timeout=5)
    assert hook.bodies == [
        {"event": "promoted", "version": 4, "actor_kind": "gate",
         "text": "cltool promoted: version=4, actor_kind=gate"},
        {"event": "drift", "text": "drift on psi", "detector": "psi"},
    ]
    assert (sink.sent, sink.failed, sink.dropped) == (2, 0, 0)


def test_retries_5xx_with_exponential_backoff():
    delays: list[float] = []
    with Receiver(statuses=[500, 503]) as hook:
        sink = WebhookSink(hook.url, retries=3, backoff=1.0, sleep=delays.append)
        sink.send({"event": "cycle_finished", "outcome": "REJECT"})
        assert sink.close(timeout=5)
    assert len(hook.bodies) == 3
    assert delays == [1.0, 2.0]
    assert (sink.sent, sink.failed) == (1, 0)


def test_4xx_is_not_retried():
    with Receiver(statuses=[400]) as hook:
        sink = WebhookSink(hook.url, sleep=lambda s: None)
        sink.send({"event": "x"})
        assert sink.close(timeout=5)
    assert len(hook.bodies) == 1
    assert (sink.sent, sink.failed) == (0, 1)


def test_dead_url_never_raises_and_gives_up_after_retries():
    delays: list[float] = []
    sink = WebhookSink(dead_url(), timeout=1, retries=2, backoff=0.5, sleep=delays.append)
    sink.send({"event": "promoted", "version": 1})
    assert sink.close(timeout=5)
    assert delays == [0.5, 1.0]
    assert (sink.sent, sink.failed, sink.dropped) == (0, 1, 0)


def test_full_queue_drops_the_oldest_and_counts_it():
    entered, release = threading.Event(), threading.Event()

    def blocking_sleep(seconds: float) -> None:
        entered.set()
        release.wait(5)

    sink = WebhookSink(dead_url(), timeout=1, retries=1, sleep=blocking_sleep, max_queue=2)
    sink.send({"event": "first"})
    assert entered.wait(5)  # the worker holds "first" and is stuck in backoff: a slow webhook
    for n in range(5):
        sink.send({"event": "queued", "n": n})  # returns at once even though the worker is stuck
    assert sink.dropped == 3
    assert [e["n"] for e in sink._queue] == [3, 4]  # the newest two were kept
    release.set()
    assert sink.close(timeout=10)
    assert (sink.sent, sink.failed, sink.dropped) == (0, 3, 3)


def test_close_with_nothing_sent_starts_no_thread():
    sink = WebhookSink("http://127.0.0.1:9/hook")
    assert sink.close(timeout=1)
    assert sink._thread is None
    sink.send({"event": "late"})  # after close: logged and ignored, never raised
    assert sink._thread is None
