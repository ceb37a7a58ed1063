"""`cltool fsck`: the promises of crash safety, checked across the state store, MLflow and the folders.

Each check returns problems; a problem says what is wrong and, when the event log can decide how to put
it right, what `--repair` does. Every repair is recorded as an `fsck.repaired` event. The daemon runs
the repairs a crash can make necessary (`CRASH_REPAIRS`) at every start, after it holds the leader lock;
putting back an alias moved outside cltool is left to `cltool fsck --repair`, which a person runs.

While a live daemon holds the leader lease, the cycle it is running is not judged (a version registered a
moment ago has no decision yet) and `--repair` is refused.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from daemon import events
from daemon.context import Context
from daemon.errors import CltoolError
from daemon.ingest.validate import file_checksum
from daemon.promotion.aliases import recorded_aliases
from daemon.state.locks import DAEMON_LOCK, Locks
from registry.models import ModelRegistry

log = logging.getLogger(__name__)

FSCK_ACTOR = "fsck"
RECORDED_OUTCOMES = ("PROMOTE", "REJECT")  # decisions that consume their batches (WAIT keeps them pending)


@dataclass(frozen=True)
class Problem:
    check: str
    subject: str
    detail: str
    repair: str | None = None  # what --repair does; None: a person must look
    fix: Callable[[], None] | None = None  # how (not shown)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("fix")
        return data

    def line(self) -> str:
        then = f" -> repair: {self.repair}" if self.repair else " -> needs a person"
        return f"[{self.check}] {self.subject}: {self.detail}{then}"


class RepairRefused(CltoolError, RuntimeError):
    def __init__(self, holder: str) -> None:
        super().__init__(f"a daemon leads this state ({holder}): stop it before `cltool fsck --repair`, or restart "
                         "it (it repairs what a crash left at start-up)")


@dataclass
class Findings:
    problems: list[Problem]
    repaired: list[Problem]
    checked: list[str]

    @property
    def clean(self) -> bool:
        return not [p for p in self.problems if p not in self.repaired]

    def to_dict(self) -> dict[str, Any]:
        return {"clean": self.clean, "checked": self.checked, "problems": [p.to_dict() for p in self.problems],
                "repaired": [p.to_dict() for p in self.repaired]}


class Checker:
    """The invariants over one context; `live_cycle` is the cycle a live daemon runs now (not judged)."""

    def __init__(self, ctx: Context, live_cycle: str | None = None) -> None:
        self.ctx, self.store, self.registry = ctx, ctx.store, ctx.registry
        self.live_cycle = live_cycle
        self._events = None

    @property
    def events(self):
        if self._events is None:
            self._events = self.store.events()
        return self._events

    def of(self, *types: str):
        return [e for e in self.events if e.type in types]

    # -- the inbox's files --------------------------------------------------------------------
    def files(self) -> list[Problem]:
        problems = []
        batches = self.store.list_batches()
        for checksum, n in Counter(b.checksum for b in batches).items():
            if n > 1:
                problems.append(Problem("files", checksum[:12], f"recorded {n} times in the ledger"))
        recorded = {b.checksum: b for b in batches}
        inbox = self.ctx.inbox
        # A claimed file is in the ledger or goes back to the inbox (Inbox.recover); a file in the inbox
        # itself that is already recorded is simply a duplicate the next pass archives.
        for path in sorted(inbox.claimed_dir.iterdir()):
            if path.name.startswith(".") or path.is_symlink() or not path.is_file():
                continue
            batch = recorded.get(file_checksum(path))
            detail = (f"claimed, and already recorded as batch {batch.batch_id}" if batch else
                      "claimed but not recorded (the inbox pass that took it died)")
            problems.append(Problem("files", str(path), detail, "archive it" if batch else "return it to the inbox",
                                    inbox.recover))
        quarantined = {e.payload.get("path") for e in self.of(events.INGEST_QUARANTINED)}
        for path in sorted(self.ctx.settings.quarantine_dir.iterdir()):
            if path.name.endswith(".reason.json") or ".dropped" in path.name or path.name.startswith("."):
                continue
            reason = Path(f"{path}.reason.json")
            if not reason.exists():
                problems.append(Problem("files", str(path), "quarantined without its reason file"))
            elif str(path) not in quarantined:
                problems.append(Problem("files", str(path), "quarantined without an ingest.quarantined event",
                                        "record the event from its reason file",
                                        lambda path=path, reason=reason: self._record_quarantine(path, reason)))
        return problems

    def _record_quarantine(self, path: Path, reason: Path) -> None:
        import json

        body = json.loads(reason.read_text(encoding="utf-8"))
        self.store.append(events.INGEST_QUARANTINED, body.get("reason", ""), actor=FSCK_ACTOR,
                          payload={"file": body.get("file"), "checksum": body.get("checksum"), "path": str(path)})

    # -- ledger and rows ----------------------------------------------------------------------
    def rows(self) -> list[Problem]:
        problems = []
        counts = self.store.row_counts()
        for batch in self.store.list_batches():
            stored = counts.pop(batch.batch_id, {})
            expected = {"train": batch.n_train, "val": batch.n_val, "test": batch.n_test}
            got = {split: stored.get(split, 0) for split in expected}
            if got != expected or sum(stored.values()) != batch.rows_accepted:
                problems.append(Problem("rows", batch.batch_id, f"the ledger says {batch.rows_accepted} rows "
                                        f"{expected}, the store holds {sum(stored.values())} {got}"))
        for batch_id, stored in counts.items():
            problems.append(Problem("rows", batch_id, f"{sum(stored.values())} stored rows of a batch the ledger "
                                    "does not have", "delete them",
                                    lambda batch_id=batch_id: self.store.delete_rows(batch_id)))
        return problems

    # -- batches and decisions ----------------------------------------------------------------
    def decisions(self) -> list[Problem]:
        problems = []
        deciding: dict[str, list] = {}
        for event in self.of(events.DECISION):
            if event.payload.get("outcome") in RECORDED_OUTCOMES:
                for batch_id in event.payload.get("batches") or []:
                    deciding.setdefault(batch_id, []).append(event)
        for batch in self.store.list_batches():
            found = deciding.get(batch.batch_id, [])
            if len(found) > 1:
                problems.append(Problem("decisions", batch.batch_id, "consumed by "
                                        f"{len(found)} decisions: " + ", ".join(f"v{e.version}" for e in found)))
            elif batch.cycle_id is not None and not found:
                problems.append(Problem("decisions", batch.batch_id,
                                        f"consumed by cycle {batch.cycle_id}, but no decision names it"))
            elif batch.cycle_id is None and found:
                cycle_id = found[0].payload.get("cycle_id")
                problems.append(Problem("decisions", batch.batch_id, f"pending, yet decision v{found[0].version} "
                                        f"({found[0].payload.get('outcome')}) consumed it", f"mark it consumed "
                                        f"by {cycle_id}", lambda b=batch.batch_id, c=cycle_id:
                                        self.store.mark_consumed([b], c)))
        return problems

    def cycles(self) -> list[Problem]:
        """Every cycle.started has an end; one left open was interrupted (a crash or a kill)."""
        ended = {e.payload.get("cycle_id") for e in self.of(*events.CYCLE_ENDS)}
        decided = {e.payload.get("cycle_id"): e for e in self.of(events.DECISION)}
        problems = []
        for started in self.of(events.CYCLE_STARTED):
            cycle_id = started.payload.get("cycle_id")
            if cycle_id in ended or cycle_id == self.live_cycle:
                continue
            decision = decided.get(cycle_id)
            if decision is not None:
                outcome = decision.payload.get("outcome")
                problems.append(Problem("cycles", cycle_id, f"interrupted after its decision ({outcome})",
                                        "record cycle.finished", lambda c=cycle_id, d=decision: self.store.append(
                                            events.CYCLE_FINISHED, d.payload.get("outcome"), version=d.version,
                                            actor=FSCK_ACTOR, payload={"cycle_id": c, "interrupted": True})))
            else:
                problems.append(Problem("cycles", cycle_id, "interrupted before its decision (its batches stay "
                                        "pending)", "record cycle.aborted", lambda c=cycle_id: self.store.append(
                                            events.CYCLE_ABORTED, f"cycle {c} was interrupted (the daemon died "
                                            "during it); its batches stay pending", actor=FSCK_ACTOR,
                                            payload={"cycle_id": c, "interrupted": True})))
        return problems

    # -- MLflow versions and aliases ----------------------------------------------------------
    def versions(self) -> list[Problem]:
        """Every registered version is named by a decision; one that is not is an orphan of a cycle that
        died between registering it and deciding."""
        decided = {e.version for e in self.of(events.DECISION) if e.version}
        problems = []
        for info in self.registry.list_versions(with_metrics=False):
            if info.version in decided or info.tags.get("cltool.cycle_id") == self.live_cycle:
                continue
            if info.aliases:
                problems.append(Problem("versions", f"v{info.version}", "no decision names it, yet it holds "
                                        f"{', '.join(info.aliases)}"))
                continue
            problems.append(Problem("versions", f"v{info.version}", "registered by cycle "
                                    f"{info.tags.get('cltool.cycle_id', '?')} but no decision names it (the cycle "
                                    "died before deciding)", "delete the registered version (its run stays)",
                                    lambda v=info.version: self.registry.delete_version(v)))
        return problems

    def intents(self) -> list[Problem]:
        synced = {e.payload.get("intent_id") for e in self.of(events.ALIAS_SYNCED)}
        open_ = [e for e in self.of(*events.ALIAS_MOVES) if e.id not in synced]
        return [Problem("intents", f"event {e.id}", f"{e.type} of v{e.version} without its alias.synced",
                        "finish the move (as at start-up)", self.ctx.keeper.reconcile) for e in open_]

    def aliases(self) -> list[Problem]:
        problems = []
        recorded = recorded_aliases(self.ctx.store)
        expected = {alias: recorded[alias] for alias in ("champion", "previous_champion")}
        for alias, want in expected.items():
            got = self.ctx.keeper.alias_version(alias)
            if got != want:
                problems.append(Problem("aliases", alias, f"MLflow says v{got}, cltool's last move left v{want} "
                                        "(moved outside cltool?)", f"put {alias} back on v{want}" if want else
                                        f"remove {alias}", lambda a=alias, w=want: self._set_alias(a, w)))
        champion = expected["champion"]
        served = {e.payload.get("to") for e in self.of(events.PROMOTION, events.ROLLBACK)}
        if champion is not None and champion not in served:
            problems.append(Problem("aliases", "champion", f"v{champion} was never promoted (no promotion or "
                                    "rollback names it)"))
        return problems

    def _set_alias(self, alias: str, version: str | None) -> None:
        with self.ctx.keeper.lock():
            if version is None:
                self.registry.clear_alias(alias)
            else:
                self.registry.set_alias(alias, version)

    def weights(self) -> list[Problem]:
        problems = []
        for alias in ModelRegistry.ALIASES:
            version = self.ctx.keeper.alias_version(alias)
            if version is not None and not self.registry.has_weights(version):
                problems.append(Problem("weights", f"v{version}", f"holds {alias} but its weights are gone"))
        return problems


CHECKS = ("files", "rows", "decisions", "cycles", "versions", "intents", "aliases", "weights")
# What a crash can leave behind, repaired by the daemon at every start (aliases: only by a person's fsck).
CRASH_REPAIRS = ("files", "decisions", "cycles", "versions", "intents")
# The crash repairs that ask MLflow: a daemon started while MLflow is down runs them once it answers.
REGISTRY_REPAIRS = ("versions",)


def live_cycle(ctx: Context, me: str | None = None) -> tuple[str | None, str | None]:
    """(the live leader other than `me`, the cycle it is running) — (None, None) when none is."""
    locks = Locks(ctx.store)
    holder = locks.holder(DAEMON_LOCK)
    if holder is None or holder.owner == me or not locks.is_live(holder):
        return None, None
    started = ctx.store.last_event(events.CYCLE_STARTED)
    cycle = started.payload.get("cycle_id") if started else None
    return holder.describe(), cycle


def fsck(ctx: Context, *, repair: bool = False, only: tuple[str, ...] = CHECKS, me: str | None = None) -> Findings:
    """Run the checks `only`; with `repair`, apply each repairable problem's fix and record it."""
    leader, cycle = live_cycle(ctx, me)
    if repair and leader is not None:
        raise RepairRefused(leader)
    checker = Checker(ctx, cycle)
    problems: list[Problem] = []
    repaired: list[Problem] = []
    for name in only:
        found = getattr(checker, name)()
        problems.extend(found)
        if not repair:
            continue
        for problem in found:
            if problem.fix is None:
                continue
            problem.fix()
            repaired.append(problem)
            ctx.store.append(events.FSCK_REPAIRED, f"{problem.check}: {problem.subject}: {problem.repair}",
                             actor=me or FSCK_ACTOR, payload={"check": problem.check, "subject": problem.subject,
                                                              "detail": problem.detail, "repair": problem.repair})
        checker._events = None  # later checks see what the repairs wrote
    return Findings(problems, repaired, list(only))
