"""Dynamic batching: the texts of concurrent requests go through the model together.

One worker thread owns the model (torch inference is not shared between threads). It takes the first
waiting request, lets others join for up to `max_wait` seconds or until `max_batch` texts are in, runs
one forward pass on the version served at that moment, and hands each request its slice. A request
therefore always gets one version for all its texts, and a swap between two batches is invisible.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from daemon.serving.follower import Served

log = logging.getLogger(__name__)


class NotReadyError(RuntimeError):
    """No version is loaded yet (no champion, or it has not finished loading)."""

    def __init__(self) -> None:
        super().__init__("no model is loaded yet: the registry has no champion, or it is still loading")


@dataclass(frozen=True)
class Answer:
    version: str
    labels: list[str]
    probs: np.ndarray  # (texts, classes), in the order of the request's texts


@dataclass
class _Request:
    texts: list[str]
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(self, served: Callable[[], Served | None], max_batch: int = 32, max_wait: float = 0.002,
                 on_batch: Callable[[int], None] = lambda rows: None) -> None:
        """`served`: the version to predict with now (read once per batch); `on_batch(rows)`: after each
        forward pass (metrics)."""
        self.served, self.max_batch, self.max_wait, self.on_batch = served, max_batch, max_wait, on_batch
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="cltool-serve-batcher", daemon=True)
        self._thread.start()

    def submit(self, texts: list[str]) -> Future:
        """A future of the Answer for `texts` (or of the error that stopped their batch)."""
        request = _Request(list(texts))
        self._queue.put(request)
        return request.future

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """The batch that starts with `first`, and whether close() was asked meanwhile."""
        batch, rows = [first], len(first.texts)
        deadline = time.monotonic() + self.max_wait
        while rows < self.max_batch:
            left = deadline - time.monotonic()
            try:
                request = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if request is None:
                return batch, True
            batch.append(request)
            rows += len(request.texts)
        return batch, False

    def _run(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is None:
                break
            batch, closing = self._gather(first)
            self._answer(batch)
        while True:  # what was queued before close() is still answered
            try:
                request = self._queue.get_nowait()
            except queue.Empty:
                return
            if request is not None:
                self._answer([request])

    def _answer(self, batch: list[_Request]) -> None:
        served = self.served()  # one version for the whole batch
        if served is None:
            for request in batch:
                request.future.set_exception(NotReadyError())
            return
        texts = [text for request in batch for text in request.texts]
        try:
            _, probs = served.predictor.predict(texts)
        except Exception as exc:  # answered as a 500 by the app; the worker carries on
            log.exception("serve: prediction failed on version %s", served.version)
            for request in batch:
                request.future.set_exception(exc)
            return
        self.on_batch(len(texts))
        start = 0
        for request in batch:
            stop = start + len(request.texts)
            request.future.set_result(Answer(served.version, served.predictor.labels, probs[start:stop]))
            start = stop
