"""Named crash points, for crash tests: `CLTOOL_FAILPOINTS=name[,name...]` makes the process die hard there.

`hit(name)` at a point is a no-op unless the variable names it; then the process exits at once with
`EXIT_CODE` through `os._exit`: no `finally`, no atexit, no flushed buffers, as a SIGKILL or a power cut
would leave it. The points sit between the writes whose order the crash-safety argument depends on
(DESIGN.md, "State, and what makes it safe"); `tests/daemon/test_crash_points.py` crashes at each one,
restarts, and checks that `cltool fsck` finds nothing wrong.

A name the variable holds that is not a point below is refused (`UnknownFailpoint`) the first time any
point is passed, so a misspelt name cannot make a crash test pass without crashing.
"""

from __future__ import annotations

import os
import sys

from daemon.errors import CltoolError

ENV = "CLTOOL_FAILPOINTS"
EXIT_CODE = 86

POINTS = {
    # The inbox (daemon/ingest/inbox.py).
    "ingest.after_claim": "a file is in inbox/.claimed; nothing recorded",
    "ingest.after_record": "the batch, its rows and its ingest event are recorded (one transaction); "
                           "the file is still in inbox/.claimed",
    "ingest.after_archive": "the recorded file is in archive/",
    "ingest.before_quarantine_event": "a bad file and its reason are in quarantine/; no event yet",
    # The cycle (daemon/cycle/run.py).
    "cycle.after_training": "the candidate is trained in the work folder; nothing registered",
    "cycle.after_registration": "the candidate is a registered MLflow version; no decision",
    "cycle.after_decision": "decision, alias intent and consumed batches are recorded (one transaction); "
                            "the alias has not moved",
    "cycle.before_finished": "the alias moved and is synced; no cycle.finished yet",
    # Alias moves (daemon/promotion/aliases.py), for cycles, promote and rollback alike.
    "alias.after_move": "MLflow's aliases moved; no alias.synced",
    "promote.after_intent": "`cltool promote`'s promotion event is recorded; no alias moved",
    "rollback.after_intent": "a rollback event (manual or automatic) is recorded; no alias moved",
    # Retention (daemon/promotion/retention.py).
    "retention.after_delete": "a version's weights are deleted; it is not tagged cltool.pruned yet",
    "retention.after_run_removed": "an old version's model.removed event is recorded and its run deleted; "
                                   "the version is still registered",
    # Drift and probation (daemon/monitoring).
    "drift.after_scored": "a batch's drift.scored event is recorded; its alert not yet opened or closed",
    "watch.after_scored": "a probation watch.scored event is recorded; its verdict not acted on",
}


class UnknownFailpoint(CltoolError, ValueError):
    def __init__(self, names: list[str]) -> None:
        super().__init__(f"{ENV} names unknown crash point(s) {names}; known: {sorted(POINTS)}")


def armed() -> set[str]:
    """The points the environment arms now (read each time: a test sets it per process)."""
    names = {name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()}
    unknown = sorted(names - POINTS.keys())
    if unknown:
        raise UnknownFailpoint(unknown)
    return names


def hit(name: str) -> None:
    """Die here, hard, when `name` is armed."""
    if name not in POINTS:
        raise KeyError(f"no crash point {name!r}: add it to daemon.failpoints.POINTS")
    if os.environ.get(ENV) and name in armed():
        sys.stderr.write(f"cltool: crash point {name} reached ({POINTS[name]}): exiting with {EXIT_CODE}\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)
