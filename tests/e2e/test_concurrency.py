"""A `cltool promote` racing another alias move, with two real processes: it waits for the lock,
or fails with a clear message when the wait runs out. The holder takes the lock through the same
code path a cycle uses (`ctx.keeper.lock()`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from daemon.config import load_settings
from daemon.context import open_context
from retrain.modeling import build_tiny_model

pytestmark = pytest.mark.integration

CLTOOL = str(Path(sys.executable).parent / "cltool")
HOLDER = textwrap.dedent("""
    import sys, time
    from daemon.config import load_settings
    from daemon.context import open_context
    ctx = open_context(load_settings(state_dir=sys.argv[1], inbox_dir=sys.argv[2]), owner="cycle:holder")
    with ctx.keeper.lock():
        print("locked", flush=True)
        time.sleep(float(sys.argv[3]))
    print("released", time.time(), flush=True)
""")


@pytest.fixture
def state(tmp_path):
    settings = load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"))
    ctx = open_context(settings, owner="test")
    model = build_tiny_model(tmp_path / "m", ["negative", "neutral", "positive"])
    version = ctx.registry.log_candidate(model_dir=model, run_name="v", params={}, metrics={},
                                         tags={"cltool.decision": "PROMOTE"}, json_artifacts={}).version
    return settings, version


def hold(settings, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(settings.state_dir), str(settings.inbox_dir),
                               str(seconds)], stdout=subprocess.PIPE, text=True, env=dict(os.environ))
    assert holder.stdout.readline().strip() == "locked"
    return holder


def promote(settings, version: str, wait: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, CLTOOL_STATE_DIR=str(settings.state_dir), CLTOOL_INBOX_DIR=str(settings.inbox_dir),
               CLTOOL_STORE__LOCK_WAIT_SECONDS=str(wait))
    return subprocess.run([CLTOOL, "promote", version, "--reason", "race"], env=env, capture_output=True,
                          text=True, timeout=300)


def test_promote_fails_clearly_while_a_cycle_holds_the_lock(state):
    settings, version = state
    holder = hold(settings, 60)
    try:
        raced = promote(settings, version, wait=1)
    finally:
        holder.kill()
        holder.wait()
    assert raced.returncode == 3
    assert "lock 'aliases' is held by cycle:holder" in raced.stderr
    assert "moving aliases right now" in raced.stderr
    ctx = open_context(settings, owner="check")
    assert ctx.keeper.alias_version("champion") is None
    assert ctx.store.events(types=["promotion"]) == []  # nothing half-done


def test_promote_waits_for_the_lock_then_succeeds(state):
    settings, version = state
    holder = hold(settings, 4)
    done = promote(settings, version, wait=120)
    holder.wait(timeout=60)
    assert done.returncode == 0, done.stderr
    word, released_at = holder.stdout.read().split()
    ctx = open_context(settings, owner="check")
    assert ctx.keeper.alias_version("champion") == version
    [event] = ctx.store.events(types=["promotion"])
    # Ordering, not speed: the promotion was recorded only after the holder let go.
    assert word == "released" and event.at.timestamp() >= float(released_at)
    assert event.reason == "race"
