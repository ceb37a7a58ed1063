from __future__ import annotations

import pytest

from daemon.drift import DriftValueError, Hysteresis


def run(h: Hysteresis, verdicts: list[bool]) -> list[tuple[str, str | None]]:
    return [(h.update(v), h.transition) for v in verdicts]


def test_opens_exactly_after_k_and_closes_exactly_after_k():
    h = Hysteresis(open_after=3, close_after=2)
    steps = run(h, [True, True, True, True, False, True, False, False, False])
    assert steps == [
        ("ok", None), ("ok", None), ("open", "opened"),  # third drifted window opens
        ("open", None),
        ("open", None), ("open", None),  # one clean window, then drift again: streak reset
        ("open", None), ("ok", "closed"),  # two clean windows close
        ("ok", None),
    ]


def test_a_broken_streak_does_not_open():
    h = Hysteresis(open_after=2, close_after=2)
    assert [s for s, _ in run(h, [True, False, True, False, True])] == ["ok"] * 5
    assert h.update(True) == "open" and h.transition == "opened"


def test_k_of_one_follows_every_window():
    h = Hysteresis(open_after=1, close_after=1)
    assert run(h, [True, False]) == [("open", "opened"), ("ok", "closed")]


def test_state_round_trip_continues_the_streak():
    h = Hysteresis(open_after=3, close_after=3)
    run(h, [True, True])
    saved = h.state_dict()
    assert saved == {"state": "ok", "streak": 2}
    restored = Hysteresis(open_after=3, close_after=3)
    restored.load_state_dict(saved)
    assert restored.update(True) == "open" and restored.transition == "opened"
    assert restored.state_dict() == {"state": "open", "streak": 0}


def test_validation_names_the_value():
    with pytest.raises(DriftValueError, match=r"hysteresis: open_after = 0 is not allowed"):
        Hysteresis(open_after=0)
    with pytest.raises(DriftValueError, match=r"state = 'alerting'"):
        Hysteresis().load_state_dict({"state": "alerting", "streak": 0})
    with pytest.raises(DriftValueError, match=r"streak = -1"):
        Hysteresis().load_state_dict({"state": "ok", "streak": -1})
