"""Hysteresis: turn a stream of per-window verdicts into alerts that do not flap.

One drifted window is often noise (a single odd batch); an alert that opens and closes
every other window trains people to ignore it. The alert opens after `open_after`
consecutive drifted windows and closes after `close_after` consecutive clean ones.
"""

from __future__ import annotations

from typing import Any

from daemon.drift.base import DriftValueError, check_positive_int

STATES = ("ok", "open")


class Hysteresis:
    """State machine "ok" ⇄ "open". `update()` returns the state after the window;
    `transition` says what that window changed ("opened", "closed" or None), so the caller
    sends exactly one alert per change.
    """

    def __init__(self, open_after: int = 3, close_after: int = 3) -> None:
        self.open_after = check_positive_int("hysteresis", "open_after", open_after)
        self.close_after = check_positive_int("hysteresis", "close_after", close_after)
        self.state = "ok"
        # Consecutive windows that disagree with the current state; any agreeing window
        # resets it, which is what makes the streak "consecutive".
        self.streak = 0
        self.transition: str | None = None

    def update(self, drifted: bool) -> str:
        self.transition = None
        disagrees = bool(drifted) if self.state == "ok" else not drifted
        self.streak = self.streak + 1 if disagrees else 0
        if self.state == "ok" and self.streak >= self.open_after:
            self.state, self.streak, self.transition = "open", 0, "opened"
        elif self.state == "open" and self.streak >= self.close_after:
            self.state, self.streak, self.transition = "ok", 0, "closed"
        return self.state

    def state_dict(self) -> dict[str, Any]:
        # Only the position, not the settings: a restart with new K values should use them.
        return {"state": self.state, "streak": self.streak}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("state") not in STATES:
            raise DriftValueError("hysteresis", "state", state.get("state"), f"one of {STATES}")
        streak = state.get("streak")
        if isinstance(streak, bool) or not isinstance(streak, int) or streak < 0:
            raise DriftValueError("hysteresis", "streak", streak, "an integer ≥ 0")
        self.state, self.streak, self.transition = state["state"], streak, None
