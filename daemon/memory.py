"""What a long-lived process asks of glibc's allocator, so that its memory stays flat for months.

glibc gives a thread that allocates while another holds the main heap an arena of its own, up to 8
per core. The daemon's scheduler threads (inbox, cycle, monitor, heartbeat, /metrics) each load and
score models in turn, so each grows an arena of its own around the big, short-lived buffers of a
model load; freed memory stays mapped in whichever arena held it, and fragmentation adds up. Two
arenas bound that: on 250 batches through the real daemon, side by side in one run, the RSS grew 66 MiB
per 100 batches over the second half with glibc's default and 5 MiB with two arenas
(`bench.month --batches 250 --batches-per-cycle 10`, with and without MALLOC_ARENA_MAX=2; README,
"Reliability"). Not glibc (macOS, musl): nothing is asked and nothing fails.
"""

from __future__ import annotations

import ctypes
import gc
import logging
import os

log = logging.getLogger(__name__)

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's <malloc.h>


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
