"""Probation after a promotion: the automatic rollback.

Every batch accepted after a promotion is labeled data neither model trained on. Each is scored by
the new champion and by the previous one; the pooled rows since the promotion are compared with
the gate's paired bootstrap on macro-F1. A check whose whole interval lies below zero is a strike;
`watch.strikes` consecutive strikes roll the champion back (hysteresis: one unlucky batch does not),
and a clean check resets the count. Probation ends after `watch.max_rows` rows without a rollback.
Everything it sees and decides is in the event log (`watch.scored`, `watch.passed`, `rollback`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from daemon import events, failpoints
from daemon.context import Context
from daemon.cycle import evidence
from daemon.promotion.aliases import AUTO_ROLLBACK_ACTOR
from daemon.state.store import Event
from registry.bootstrap import paired_gain

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class WatchVerdict:
    champion: str
    previous: str
    rows: int
    gain: float | None
    low: float | None
    high: float | None
    strikes: int
    action: str  # "collecting" | "clean" | "strike" | "rolled_back" | "passed"

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def _opened(ctx: Context) -> Event | None:
    """The promotion that opened a probation still running, read from the event log alone."""
    promotion = ctx.store.last_event(events.PROMOTION, events.ROLLBACK)
    if promotion is None or promotion.type != events.PROMOTION or not promotion.payload.get("from"):
        return None
    closed = ctx.store.events(types=[events.WATCH_PASSED], after_id=promotion.id)
    return None if closed else promotion


def probation(ctx: Context) -> Event | None:
    """The promotion that opened the current probation, if the champion is still on it."""
    opened = _opened(ctx)
    if opened is None or ctx.keeper.alias_version("champion") != opened.version:
        return None
    return opened


def check(ctx: Context) -> WatchVerdict | None:
    """Score batches accepted since the promotion that are not scored yet; roll back if warranted.

    Runs every few seconds from the cycle job, so it answers from the state store and asks MLflow
    nothing until there is a new batch to score."""
    opened = _opened(ctx)
    if opened is None:
        return None
    scored = ctx.store.events(types=[events.WATCH_SCORED], after_id=opened.id)
    seen = {e.batch_id for e in scored}
    accepted = [e.batch_id for e in ctx.store.events(types=[events.INGEST_ACCEPTED], after_id=opened.id)]
    new = [ctx.store.batch(batch_id) for batch_id in accepted if batch_id not in seen]
    watch = ctx.settings.watch
    # A verdict recorded as a rollback whose rollback did not happen (the process died in between).
    unfinished = bool(scored) and scored[-1].payload["strikes"] >= watch.strikes
    if not (new or unfinished) or ctx.keeper.alias_version("champion") != opened.version:
        return None  # nothing new, or the champion was moved outside cltool: no probation to judge
    if unfinished and not new:
        return _roll_back(ctx, WatchVerdict(**{k: scored[-1].payload[k] for k in WatchVerdict.__dataclass_fields__}))
    champion, previous = opened.version, opened.payload["from"]
    s = ctx.settings
    rows = evidence.load_rows(ctx.store, new)
    pair = evidence.score_pair(rows, s.labels, ctx.predictor(champion), ctx.predictor(previous))

    # Pool this batch's rows with every earlier scored batch of this probation.
    truth = [t for e in scored for t in e.payload["y_true"]] + pair.truth
    new_pred = [p for e in scored for p in e.payload["champion_pred"]] + pair.candidate_pred
    old_pred = [p for e in scored for p in e.payload["previous_pred"]] + pair.champion_pred
    strikes = scored[-1].payload["strikes"] if scored else 0
    gain = low = high = None
    if len(truth) < watch.min_rows:
        action = "collecting"
    else:
        paired = paired_gain(truth, new_pred, old_pred, s.labels, samples=s.gate.bootstrap_samples,
                             confidence=s.gate.confidence, seed=s.gate.seed)
        gain, low, high = paired.gain, paired.low, paired.high
        strikes = strikes + 1 if high < 0 else 0
        action = "strike" if high < 0 else "clean"
    verdict = WatchVerdict(champion, previous, len(truth), gain, low, high, strikes, action)
    for batch in new:  # one row per batch scored; the evidence rides along for the next check
        part = rows["batch_id"] == batch.batch_id
        idx = [i for i, keep in enumerate(part) if keep]
        ctx.store.append(events.WATCH_SCORED, _describe(verdict), version=champion, batch_id=batch.batch_id,
                         payload={**verdict.to_dict(), "y_true": [pair.truth[i] for i in idx],
                                  "champion_pred": [pair.candidate_pred[i] for i in idx],
                                  "previous_pred": [pair.champion_pred[i] for i in idx]})
    failpoints.hit("watch.after_scored")  # a rollback verdict is acted on at the next check
    if strikes >= watch.strikes:
        return _roll_back(ctx, verdict)
    if len(truth) >= watch.max_rows:
        ctx.store.append(events.WATCH_PASSED, f"v{champion} held up on {len(truth)} rows since its promotion",
                         version=champion)
        return WatchVerdict(champion, previous, len(truth), gain, low, high, strikes, "passed")
    return verdict


def _roll_back(ctx: Context, verdict: WatchVerdict) -> WatchVerdict:
    v = verdict
    reason = (f"automatic rollback: v{v.champion} scored significantly worse than v{v.previous} on {v.rows} rows "
              f"labeled since its promotion, {v.strikes} checks in a row ({_describe(v)})")
    ctx.keeper.rollback(reason, actor=AUTO_ROLLBACK_ACTOR, to=v.previous)
    ctx.registry.set_tags(v.champion, {"cltool.auto_rolled_back": "true"})
    return replace(v, action="rolled_back")


def _describe(v: WatchVerdict) -> str:
    if v.gain is None:
        return f"v{v.champion} vs v{v.previous}: {v.rows} rows so far, collecting"
    return (f"v{v.champion} vs v{v.previous} macro-F1 {v.gain:+.3f} (CI {v.low:+.3f}..{v.high:+.3f}) on "
            f"{v.rows} rows: {v.action}, strikes {v.strikes}")
