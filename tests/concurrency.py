"""Code run on several threads at once, for the tests of what must hold under concurrency."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def threads(target: Callable[[], Any], n: int) -> Iterator[list[threading.Thread]]:
    """`n` threads running `target`, started on entry and joined when the block ends (tell them to
    stop inside the block)."""
    started = [threading.Thread(target=target) for _ in range(n)]
    for thread in started:
        thread.start()
    try:
        yield started
    finally:
        for thread in started:
            thread.join()


def at_once(call: Callable[[], Any], n: int) -> tuple[list[Any], list[BaseException]]:
    """`call()` on `n` threads at once: what the calls returned and what they raised."""
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(call())
        except Exception as exc:  # noqa: BLE001 (any failure is the finding)
            errors.append(exc)

    with threads(run, n):
        pass
    return results, errors
