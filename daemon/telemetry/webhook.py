"""Posts daemon events as JSON to a webhook (Slack-compatible `text` plus the structured fields).

`send` only enqueues; one background thread posts, retrying connection errors and 5xx with
exponential backoff. A slow or dead webhook therefore never blocks or breaks a cycle: the queue is
bounded, and when it is full the oldest event is dropped and counted in `dropped`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from typing import Any, Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


def event_text(event: dict[str, Any]) -> str:
    """One human line for chat: the event's own `text`, else `cltool <event>: k=v, ...`."""
    if event.get("text"):
        return str(event["text"])
    name = event.get("event", "event")
    fields = ", ".join(f"{k}={v}" for k, v in event.items() if k != "event")
    return f"cltool {name}: {fields}" if fields else f"cltool {name}"


class WebhookSink:
    """A fire-and-forget webhook. Counters: `sent`, `failed` (gave up after retries), `dropped` (queue full)."""

    def __init__(self, url: str, timeout: float = 5, retries: int = 3, backoff: float = 1.0,
                 sleep: Callable[[float], None] = time.sleep, max_queue: int = 100) -> None:
        self.url, self.timeout, self.retries, self.backoff = url, timeout, retries, backoff
        parts = urlsplit(url)  # a webhook URL's path is its secret (Slack, Teams): never logged
        self.shown = f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/***"
        self._sleep = sleep
        self._queue: deque[dict[str, Any]] = deque()
        self._max_queue = max_queue
        self._cond = threading.Condition()
        self._busy = False  # the worker holds an event it has not finished posting
        self._closing = False
        self._thread: threading.Thread | None = None  # started on the first send: no thread at import or init
        self.sent = self.failed = self.dropped = 0

    def send(self, event: dict[str, Any]) -> None:
        """Queue `event` for posting; returns at once and never raises."""
        try:
            payload = {**event, "text": event_text(event)}
            with self._cond:
                if self._closing:
                    log.warning("webhook closed; event not sent: %s", payload["text"])
                    return
                if len(self._queue) >= self._max_queue:
                    old = self._queue.popleft()
                    self.dropped += 1
                    log.warning("webhook queue full (%d); dropped oldest event: %s", self._max_queue, old["text"])
                self._queue.append(payload)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="cltool-webhook", daemon=True)
                    self._thread.start()
                self._cond.notify_all()
        except Exception:  # a notification must never take the caller down
            log.exception("webhook: could not queue event")

    def close(self, timeout: float = 10) -> bool:
        """Stop taking events, post what is queued, and wait up to `timeout` s. True when all were handled."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._closing = True
            self._cond.notify_all()
            while (self._queue or self._busy) and self._thread is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            drained = not self._queue and not self._busy
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
        if not drained:
            log.warning("webhook closed with %d event(s) not sent", len(self._queue) + int(self._busy))
        return drained

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:  # closing and drained
                    self._cond.notify_all()
                    return
                payload = self._queue.popleft()
                self._busy = True
            try:
                ok = self._post(payload)
            except Exception:
                log.exception("webhook: unexpected error posting event")
                ok = False
            with self._cond:
                self._busy = False
                if ok:
                    self.sent += 1
                else:
                    self.failed += 1
                self._cond.notify_all()

    def _post(self, payload: dict[str, Any]) -> bool:
        body = json.dumps(payload, default=str).encode()
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(self.url, data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                # observe.webhook_url must be http(s) (daemon/config.py): no file: or custom scheme.
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # nosec B310
                    response.read()
                return True
            except urllib.error.HTTPError as exc:
                if exc.code < 500:  # the webhook rejected the payload; sending it again will not help
                    log.error("webhook %s answered %d; event dropped: %s", self.shown, exc.code, payload["text"])
                    return False
                problem = f"HTTP {exc.code}"
            except (urllib.error.URLError, OSError) as exc:  # refused, DNS, timeout, reset
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}"
            if attempt < self.retries:
                delay = self.backoff * 2 ** attempt
                log.warning("webhook %s failed (%s); retry %d/%d in %.1fs", self.shown, problem,
                            attempt + 1, self.retries, delay)
                self._sleep(delay)
        log.error("webhook %s failed after %d attempts (%s); event dropped: %s", self.shown,
                  self.retries + 1, problem, payload["text"])
        return False


def sink_for(observe: Any) -> WebhookSink | None:
    """The sink `[observe]` asks for (a daemon.config.ObserveSection), or None when no webhook is set."""
    if not observe.webhook_url:
        return None
    return WebhookSink(observe.webhook_url, timeout=observe.webhook_timeout_seconds, retries=observe.webhook_retries)
