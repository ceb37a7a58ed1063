"""daemon/memory.py: the malloc arena cap takes effect in a real process (glibc's own count of its
arenas, from malloc_info), an operator's MALLOC_ARENA_MAX wins, and `cltool run` sets the cap at start."""

from __future__ import annotations

import ctypes.util
import os
import subprocess
import sys
import textwrap

import pytest

from daemon import memory

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") != "libc.so.6",
                           reason="glibc only")

# Six threads each allocate from C; glibc's malloc_info then lists one <heap> per arena.
ARENAS_AFTER_SIX_THREADS = textwrap.dedent("""
    import ctypes, os, sys, tempfile, threading
    from daemon import memory
    print(memory.limit_arenas() if sys.argv[1] == "cap" else None)
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.fopen.restype = ctypes.c_void_p
    held, ready = [], threading.Barrier(6)
    def allocate():
        ready.wait()  # all six alive at once, so none can inherit another's arena
        held.append(libc.malloc(200_000))
        ready.wait()
    threads = [threading.Thread(target=allocate) for _ in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    handle, path = tempfile.mkstemp()
    os.close(handle)
    fp = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, ctypes.c_void_p(fp))
    libc.fclose(ctypes.c_void_p(fp))
    print(open(path).read().count("<heap nr="))
    os.unlink(path)
""")


def _arenas(mode: str, **env: str) -> tuple[str, int]:
    environ = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | env
    out = subprocess.run([sys.executable, "-c", ARENAS_AFTER_SIX_THREADS, mode], env=environ,
                         capture_output=True, text=True, check=True).stdout.split()
    return out[0], int(out[1])


@glibc
def test_the_cap_keeps_six_allocating_threads_to_two_arenas():
    capped, arenas = _arenas("cap")
    assert capped == "2" and arenas <= 2
    _, uncapped = _arenas("none")
    assert uncapped > 2  # glibc's default: an arena per thread (up to 8 per core), which the cap prevents


@glibc
def test_an_operators_malloc_arena_max_wins():
    capped, arenas = _arenas("cap", MALLOC_ARENA_MAX="4")
    assert capped == "None" and 2 < arenas <= 4


def test_cltool_run_caps_the_arenas_before_it_starts(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from daemon.cli.main import cli

    calls = []
    monkeypatch.setattr(memory, "limit_arenas", lambda: calls.append("capped"))
    runner = CliRunner()
    result = runner.invoke(cli, ["--state-dir", str(tmp_path / "state"), "--inbox-dir", str(tmp_path / "inbox"),
                                 "run", "--once", "--json"])
    assert result.exit_code == 0, result.output
    assert calls == ["capped"]
