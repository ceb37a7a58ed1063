"""Drift monitoring: every accepted batch is scored once, before any cycle trains on it.

The daemon is the only thing that sees every labeled batch before training, so it is where a
changing world shows first. For each new batch (`DriftMonitor.check`, run by the cycle job just
before the trigger is asked):
- the reference is the champion's data (`drift.reference = "champion"`: rows of the batches it was
  trained on) or the batches just before this one (`"rolling"`);
- the six monitors of `daemon.drift.suite` score the batch; each result, its severity and the
  alert state go in the event log as one `drift.scored` event carrying the batch id (a batch that
  cannot be scored gets a `drift.skipped` with the reason), which is also how a batch is known to
  be done: scoring is idempotent and survives restarts;
- a `Hysteresis` per detector, its position saved in that event, opens an alert after
  `drift.open_after` drifted batches and closes it after `drift.close_after` clean ones; each
  change is a `drift.alert_opened` / `drift.alert_closed` event and a webhook message, and an
  opening can ask for a retrain (`retrain.requested` by `daemon:drift`) — never a promotion.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from daemon import events, failpoints
from daemon.context import Context
from daemon.cycle.trigger import open_request
from daemon.drift import Hysteresis, severity
from daemon.drift.suite import DriftSuite, Outputs, model_outputs
from daemon.state.store import ROW_COLUMNS, Batch, Event

log = logging.getLogger(__name__)

SCORED, SKIPPED = events.DRIFT_SCORED, events.DRIFT_SKIPPED
OPENED, CLOSED = events.DRIFT_ALERT_OPENED, events.DRIFT_ALERT_CLOSED
DRIFT_EVENTS = events.DRIFT_EVENTS
DRIFT_ACTOR = "daemon:drift"


@dataclass
class _Reference:
    key: str
    suite: DriftSuite
    info: dict[str, Any]


class DriftMonitor:
    """Scores new batches for one daemon (or one `run --once`). Keeps the fitted reference and the
    champion's Predictor (the context's, shared with the watch) between batches; the reference is rebuilt
    when the champion or its data change."""

    def __init__(self, ctx: Context, notify: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.ctx = ctx
        self.notify = notify
        self._reference: _Reference | None = None

    # -- which batches ---------------------------------------------------------------------------
    def unscored(self) -> list[Batch]:
        """Pending batches without a drift verdict: answered from the state store alone, so the cycle
        job can ask every few seconds without touching MLflow or Parquet."""
        pending = self.ctx.store.list_batches(pending=True)
        if not pending:
            return []
        since = min(b.received_at for b in pending)
        done = {e.batch_id for e in self.ctx.store.events(types=[SCORED, SKIPPED], since=since)}
        return [b for b in pending if b.batch_id not in done]

    def check(self) -> list[Event]:
        """Score every unscored pending batch, oldest first; returns the verdict events."""
        if not self.ctx.settings.drift.enabled:
            return []
        made = []
        for batch in self.unscored():
            if self.ctx.stop.is_set():
                break
            made.append(self.score_batch(batch))
        return made

    # -- one batch ---------------------------------------------------------------------------------
    def score_batch(self, batch: Batch) -> Event:
        from daemon.cycle import (
            evidence,  # it imports torch: only once there is a batch to score (`cltool drift` does not)
        )

        started = time.monotonic()
        s, store = self.ctx.settings, self.ctx.store
        champion = self.ctx.registry.get_alias("champion")
        if champion is None and s.drift.reference == "champion":
            return self._skip(batch, "no champion yet: its training data is the reference (drift.reference = "
                                     "\"champion\")")
        rows = evidence.load_rows(store, [batch])
        if rows.empty:
            return self._skip(batch, "the batch has no rows")
        try:
            reference = self.reference(batch, champion)
            if reference is None:
                return self._skip(batch, f"fewer than drift.min_reference_rows = {s.drift.min_reference_rows} "
                                         "reference rows (no history yet)")
            rows = _sample(rows, s.drift.max_rows, s.drift.seed)
            outputs = None
            if champion is not None:
                outputs = model_outputs(self.ctx.predictor(champion.version), rows["text"].tolist())
            results, skipped = reference.suite.score(rows["text"].tolist(), rows["label"].tolist(), outputs)
        except Exception as exc:  # monitoring must never stop learning; the skip says why
            log.exception("drift scoring of batch %s failed", batch.batch_id)
            return self._skip(batch, f"scoring failed: {type(exc).__name__}: {exc}")

        previous = store.last_event(SCORED)
        saved = (previous.payload.get("hysteresis") or {}) if previous else {}
        entries, states, transitions = [], {}, []
        for result in results:
            gate = Hysteresis(s.drift.open_after, s.drift.close_after)
            if result.detector in saved:
                gate.load_state_dict(saved[result.detector])
            gate.update(result.drifted)
            states[result.detector] = gate.state_dict()
            entry = {**result.to_dict(), "severity": severity(result), "alert": gate.state,
                     "transition": gate.transition}
            entries.append(entry)
            if gate.transition:
                transitions.append(entry)
        for name, state in saved.items():  # a detector skipped this time keeps its alert as it was
            states.setdefault(name, state)
        version = champion.version if champion else None
        payload = {"file": batch.file_name, "rows": len(rows), "reference": reference.info, "results": entries,
                   "skipped": skipped, "hysteresis": states, "seconds": round(time.monotonic() - started, 3)}
        if outputs is not None:
            payload["mean_confidence"] = float(outputs.confidence.mean())
        # The verdict, the alerts it opens or closes and the retrain it asks for are one transaction: a
        # crash cannot leave a batch scored (so never scored again) with its alert transition unwritten.
        scored = {"type": SCORED, "reason": _summary(entries), "version": version, "batch_id": batch.batch_id,
                  "payload": payload}
        event, *alerts = store.append_all([scored, *self._alerts(batch, version, transitions)])
        failpoints.hit("drift.after_scored")  # the webhook is told after the commit: at most once
        for alert in alerts:
            if alert.type in (OPENED, CLOSED) and self.notify is not None:
                self._notify(alert)
        return event

    def _alerts(self, batch: Batch, version: str | None, transitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The alert events (and the retrain request) of this batch's transitions, to be written with its verdict."""
        s = self.ctx.settings
        entries, opened = [], []
        for entry in transitions:
            kind = OPENED if entry["transition"] == "opened" else CLOSED
            k = s.drift.open_after if kind == OPENED else s.drift.close_after
            verb = "drifted" if kind == OPENED else "clean"
            reason = (f"{entry['detector']} {'opened' if kind == OPENED else 'closed'} after {k} {verb} batch(es): "
                      f"score {entry['score']:.4g} vs threshold {entry['threshold']:.4g} on {batch.file_name}")
            fields = {"detector": entry["detector"], "severity": entry["severity"] if kind == OPENED else "resolved",
                      "score": entry["score"], "threshold": entry["threshold"], "p_value": entry["p_value"],
                      "file": batch.file_name}
            entries.append({"type": kind, "reason": reason, "version": version, "batch_id": batch.batch_id,
                            "payload": fields})
            if kind == OPENED:
                opened.append(entry["detector"])
        if opened and s.drift.trigger_retrain and open_request(self.ctx.store) is None:
            entries.append({"type": events.RETRAIN_REQUESTED, "batch_id": batch.batch_id, "actor": DRIFT_ACTOR,
                            "reason": f"drift alert opened: {', '.join(opened)} on batch {batch.batch_id}"})
        return entries

    def _notify(self, alert: Event) -> None:
        fields, opened = alert.payload, alert.type == OPENED
        icon = ":rotating_light:" if opened else ":white_check_mark:"
        self.notify({"event": alert.type, **fields, "batch_id": alert.batch_id, "champion_version": alert.version,
                     "at": alert.at.isoformat(),
                     "text": f"{icon} cltool drift alert {'OPENED' if opened else 'closed'} "
                             f"[{fields['severity']}]: {alert.reason}. Details: `cltool drift`."})

    def _history(self, split: str, n: int) -> pd.DataFrame:
        """`n` rows of one split of the consumed batches: the same uniform sample while history stays the same."""
        return pd.DataFrame(self.ctx.store.history_rows(split, n), columns=ROW_COLUMNS)

    def _skip(self, batch: Batch, why: str) -> Event:
        return self.ctx.store.append(SKIPPED, why, batch_id=batch.batch_id, payload={"file": batch.file_name})

    # -- the reference and the model ---------------------------------------------------------------
    def reference(self, batch: Batch, champion) -> _Reference | None:
        """The suite fitted on `batch`'s reference (cached while the champion and its data stay the
        same), or None when the reference has fewer than `drift.min_reference_rows` rows."""
        from daemon.cycle import evidence

        s = self.ctx.settings
        d = s.drift
        if d.reference == "champion":
            source = self.ctx.store.list_batches(pending=False)
        else:
            earlier = [b for b in self.ctx.store.list_batches() if b.seq < batch.seq]
            source = earlier[-d.window_batches:]
        version = champion.version if champion else None
        ids = ",".join(b.batch_id for b in source)
        key = hashlib.sha1(f"{d.reference}|{version}|{ids}".encode(), usedforsecurity=False).hexdigest()[:12]
        if self._reference is not None and self._reference.key == key:
            return self._reference
        if d.reference == "champion":
            # Labels and texts: what the champion learned from. Its outputs: rows it did not train on
            # (val/test of the same batches), unless there are too few of those. Read as bounded samples
            # of the history (StateStore.history_rows), sized from the ledger's counts.
            if sum(b.n_train for b in source) < d.min_reference_rows:
                return None
            learned = self._history("train", d.reference_max_rows * 4)  # labels and text stats are cheap
            n_val, n_test = sum(b.n_val for b in source), sum(b.n_test for b in source)
            if n_val + n_test >= d.min_reference_rows:
                share = min(n_val + n_test, d.reference_max_rows)
                k_val = round(share * n_val / (n_val + n_test))
                model_rows = pd.concat([self._history("val", k_val), self._history("test", share - k_val)],
                                       ignore_index=True)
            else:
                model_rows = self._history("train", d.reference_max_rows)
        else:
            learned = model_rows = evidence.load_rows(self.ctx.store, source)
            if len(learned) < d.min_reference_rows:
                return None
            learned = _sample(learned, d.reference_max_rows * 4, d.seed)
            model_rows = _sample(model_rows, d.reference_max_rows, d.seed)
        outputs: Outputs | None = None
        vocabulary = None
        baseline, baseline_source = None, None
        if champion is not None:
            model = self.ctx.predictor(champion.version)
            outputs = model_outputs(model, model_rows["text"].tolist())
            vocabulary = _vocabulary(model)
            for name in ("regression_macro_f1", "fresh_macro_f1"):
                if champion.metrics.get(name) is not None:
                    baseline, baseline_source = float(champion.metrics[name]), name
                    break
        suite = DriftSuite(d, s.labels, vocabulary=vocabulary)
        suite.fit(learned["text"].tolist(), learned["label"].tolist(), outputs, baseline)
        info = {"mode": d.reference, "key": key, "champion_version": version, "batches": len(source),
                "rows": len(learned), "model_rows": len(model_rows) if outputs is not None else 0,
                "baseline_macro_f1": baseline, "baseline_source": baseline_source}
        self._reference = _Reference(key, suite, info)
        return self._reference


def drift_report(ctx: Context, batch_ids: list[str]) -> dict[str, Any] | None:
    """The stored drift verdicts and alert changes of these batches (for a run's MLflow artifact), or
    None when none of them was looked at."""
    wanted = set(batch_ids)
    found = [e for e in ctx.store.events(types=DRIFT_EVENTS) if e.batch_id in wanted]
    if not found:
        return None
    return {
        "batches": [{"batch_id": e.batch_id, "at": e.at.isoformat(), "status": e.type.removeprefix("drift."),
                     "reason": e.reason, "champion_version": e.version, **e.payload}
                    for e in found if e.type in (SCORED, SKIPPED)],
        "alerts": [{"event": e.type, "batch_id": e.batch_id, "at": e.at.isoformat(), "reason": e.reason, **e.payload}
                   for e in found if e.type in (OPENED, CLOSED)],
    }


def _sample(rows: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    if len(rows) <= n:
        return rows.reset_index(drop=True)
    return rows.sample(n=n, random_state=seed).sort_index().reset_index(drop=True)


def _vocabulary(model) -> list[str] | None:
    """Whole words the champion's tokenizer knows (word pieces and [SPECIAL] tokens left out)."""
    tokenizer = getattr(model, "tokenizer", None)
    if tokenizer is None:
        return None
    return [t for t in tokenizer.get_vocab() if not t.startswith("##") and not t.startswith("[")]


def _summary(entries: list[dict[str, Any]]) -> str:
    drifted = [e for e in entries if e["drifted"]]
    opened = [e["detector"] for e in entries if e["alert"] == "open"]
    head = (f"{len(drifted)} of {len(entries)} detectors drifted: " + ", ".join(
        f"{e['detector']} {e['score']:.3g}≥{e['threshold']:.3g} ({e['severity']})" for e in drifted)
        if drifted else f"no drift on {len(entries)} detectors")
    return head + (f"; alerts open: {', '.join(opened)}" if opened else "")
