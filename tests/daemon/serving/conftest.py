"""Fakes for the serving tests: a predictor whose answers say which version made them, and a real
uvicorn server on a loopback port for an app."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

LABELS = ["negative", "neutral", "positive"]


class FakePredictor:
    """Version N puts its weight on class N % 3, so an answer names the version that made it."""

    def __init__(self, version: str, delay: float = 0.0) -> None:
        self.version, self.delay, self.labels = version, delay, list(LABELS)
        self.calls: list[int] = []

    def predict(self, texts):
        self.calls.append(len(texts))
        if self.delay:
            time.sleep(self.delay)
        probs = np.full((len(texts), 3), 0.1, dtype=np.float32)
        probs[:, int(self.version) % 3] = 0.8
        return probs.argmax(axis=1), probs


@contextmanager
def uvicorn_running(app) -> Iterator[str]:
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # see daemon/serving/server.py
    sock.bind(("127.0.0.1", 0))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def call(url: str, path: str, body: Any = None, *, raw: bytes | None = None, method: str | None = None,
         headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, Any, dict[str, str]]:
    """(status, parsed JSON or text, headers with lower-case names) of one request; 4xx/5xx are returned, not raised."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(url + path, data=data, method=method or ("POST" if data is not None else "GET"),
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (loopback test URL)
            status, text, head = response.status, response.read().decode(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        status, text, head = exc.code, exc.read().decode(), {k.lower(): v for k, v in exc.headers.items()}
    try:
        return status, json.loads(text), head
    except ValueError:
        return status, text, head
