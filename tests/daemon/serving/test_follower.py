"""The follower swaps in the version the alias points at, only once it has loaded, and keeps serving
the old one through a failed load or a registry outage."""

from __future__ import annotations

import pytest

from daemon.serving.follower import Follower
from tests.daemon.serving.conftest import FakePredictor


class Registry:
    def __init__(self, version=None):
        self.version, self.down = version, False

    def alias_version(self):
        if self.down:
            raise ConnectionError("registry unreachable")
        return self.version


@pytest.fixture
def world():
    registry, now, broken = Registry(), [0.0], set()
    swaps, failures = [], []

    def load(version):
        if version in broken:
            raise OSError(f"model files of v{version} are missing")
        return FakePredictor(version)

    follower = Follower(registry.alias_version, load, on_swap=lambda new, old: swaps.append(
        (old.version if old else None, new.version)), on_failure=lambda v, exc: failures.append((v, str(exc))),
        clock=lambda: now[0])
    return registry, follower, now, broken, swaps, failures


def test_it_loads_the_champion_and_swaps_when_the_alias_moves(world):
    registry, follower, _, _, swaps, _ = world
    assert not follower.check() and not follower.ready  # no champion yet: nothing to serve
    registry.version = "1"
    assert follower.check() and follower.current.version == "1"
    assert not follower.check()  # unchanged alias: nothing reloaded
    registry.version = "2"
    assert follower.check() and follower.current.version == "2"
    assert swaps == [(None, "1"), ("1", "2")]
    assert follower.current.predictor.calls == [1]  # warmed up before it was swapped in


def test_a_version_that_fails_to_load_is_not_swapped_in_and_is_retried_later(world):
    registry, follower, now, broken, swaps, failures = world
    registry.version = "1"
    follower.check()
    registry.version, broken = "2", broken | {"2"}
    world[3].add("2")
    assert not follower.check()
    assert follower.current.version == "1"  # the old one keeps serving
    assert failures == [("2", "model files of v2 are missing")] and "2" in follower.failing
    now[0] += 5
    assert not follower.check()  # within the retry wait: not tried again on every poll
    now[0] += Follower.RETRY_FIRST_SECONDS
    assert not follower.check() and len(failures) == 1  # tried again, failed again: reported once
    world[3].discard("2")
    now[0] += 2 * Follower.RETRY_FIRST_SECONDS
    assert follower.check() and follower.current.version == "2" and not follower.failing
    assert swaps == [(None, "1"), ("1", "2")]


def test_a_registry_outage_keeps_the_served_version(world):
    registry, follower, _, _, _, _ = world
    registry.version = "3"
    follower.check()
    registry.down = True
    assert not follower.check()
    assert follower.current.version == "3" and "unreachable" in follower.registry_error
    registry.down, registry.version = False, "4"
    assert follower.check() and follower.current.version == "4" and follower.registry_error is None
