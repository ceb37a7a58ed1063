"""What a long-lived process asks of glibc's allocator, so that fragmentation does not pile up.

glibc gives each thread that allocates an arena of its own, up to 8 per core. The daemon's scheduler
threads (inbox, cycle, monitor, heartbeat, /metrics) load and score models in turn, so each grows an
arena around the big, short-lived buffers of a model load, and freed memory stays mapped in whichever
arena held it. Two arenas cut most of that growth, though not all of it (figures and commands:
bench/results/month/arenas/README.md). Not glibc (macOS, musl): nothing is asked and nothing fails.
"""

from __future__ import annotations

import ctypes
import functools
import gc
import logging
import os

log = logging.getLogger(__name__)

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's <malloc.h>


@functools.cache
def _libc():
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


def limit_arenas(arenas: int = ARENAS) -> int | None:
    """Cap glibc's malloc arenas at `arenas` for the rest of this process, unless the MALLOC_ARENA_MAX
    environment variable already says how many (glibc reads it at start; an operator's choice wins).
    Call it before the process starts its threads: arenas that exist stay. Returns the cap set, or None."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return None
    libc = _libc()
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None or mallopt(_M_ARENA_MAX, arenas) != 1:
        return None
    log.debug("malloc arenas capped at %d", arenas)
    return arenas


def trim() -> None:
    """Hand the heap a cycle freed back to the OS: glibc keeps freed memory mapped, so an idle daemon
    would go on holding the peak of its last evaluation (the candidate's and the champion's scoring)."""
    gc.collect()
    malloc_trim = getattr(_libc(), "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)
