"""Live monitoring: what `cltool serve` answered, watched without labels.

Every `serve.live_check_seconds` the daemon compares the last `serve.live_window_minutes` of recorded
traffic (daemon/state/traffic.py) with the `serve.live_baseline_hours` before it:
- **a surge of negative news per source**: the share of `drift.surge_label` among a source's predictions
  against that source's own baseline (the labeled batches' `NegativeSurgeDetector`: one-sided
  two-proportion z-test at `drift.alpha` and a lift of at least `drift.surge_min_lift`), one `Hysteresis`
  per source (`drift.open_after` / `drift.close_after` checks), each change a `live.surge_opened` /
  `live.surge_closed` event and a webhook message; `*` is all sources together (a market-wide surge),
  the only series when no caller names a source;
- **the prediction mix** over all sources (chi-square + PSI, the `LabelMixDetector`);
- **confidence**: mean top probability and mean entropy, window against baseline;
- **a label-free macro-F1** of the champion on the window: its served probabilities recalibrated with
  the temperature fitted on its validation rows (metric `calibration.temperature` of its run) and turned
  into an expected macro-F1 with an interval (retrain/calibration.py).
One `live.scored` event holds the reading (and the hysteresis positions, so a restart resumes them); the
exporter turns it into gauges. Old traffic goes after `serve.retention_days`.

**Embedding drift** needs the champion's forward pass over served texts, so it does not run in the
`live` job: `check_embeddings` runs in the cycle job (where the daemon's models are used, one job at a
time), at most once per `serve.live_check_seconds`. It embeds up to `drift.mmd_max_rows` texts of the
window and of the baseline with the champion and runs the suite's MMD test (`live.embedding_scored`).
"""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Callable

import numpy as np

from daemon import events
from daemon.context import Context
from daemon.drift import Hysteresis
from daemon.drift.embedding import EmbeddingMMDDetector
from daemon.drift.labels import LabelMixDetector, NegativeSurgeDetector
from daemon.state import traffic
from daemon.state.store import Event
from retrain.calibration import expected_macro_f1, scaled

log = logging.getLogger(__name__)

ALL = "*"  # every source together
NO_SOURCE = "(none)"  # texts served without a source
LIVE_ACTOR = "daemon:live"


def _by_source(counts: Counter[tuple[str | None, str]]) -> dict[str, Counter[str]]:
    groups: dict[str, Counter[str]] = {ALL: Counter()}
    for (source, label), n in counts.items():
        groups.setdefault(source or NO_SOURCE, Counter())[label] += n
        groups[ALL][label] += n
    if set(groups) == {ALL, NO_SOURCE}:  # no caller names a source: one series, not two identical ones
        del groups[NO_SOURCE]
    return groups


class LiveMonitor:
    def __init__(self, ctx: Context, notify: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.ctx, self.notify = ctx, notify
        self._alerts: dict[str, Hysteresis] | None = None
        self._embedded_at: datetime | None = None

    def _load_alerts(self) -> None:
        """Resume each source's alert where the last reading left it (once per monitor): a reading
        saves every source's position, scored this time or not, so a restart never forgets an open one."""
        if self._alerts is not None:
            return
        self._alerts = {}
        last = self.ctx.store.last_event(events.LIVE_SCORED)
        for name, position in ((last.payload.get("hysteresis") or {}) if last else {}).items():
            self._alerts[name] = self._new()
            try:
                self._alerts[name].load_state_dict(position)
            except ValueError:
                log.warning("live: ignoring a bad saved alert state for source %r", name)
                self._alerts[name] = self._new()

    def _hysteresis(self, source: str) -> Hysteresis:
        return self._alerts.setdefault(source, self._new())

    def _new(self) -> Hysteresis:
        d = self.ctx.settings.drift
        return Hysteresis(d.open_after, d.close_after)

    def _windows(self, now: datetime) -> tuple[datetime, datetime]:
        """(window start, baseline start): the window is [start, now), its baseline [baseline start, start)."""
        s = self.ctx.settings.serve
        start = now - timedelta(minutes=s.live_window_minutes)
        return start, start - timedelta(hours=s.live_baseline_hours)

    def check(self, now: datetime | None = None) -> Event | None:
        """Score the live window; None when nothing was served in it."""
        ctx, s, d = self.ctx, self.ctx.settings.serve, self.ctx.settings.drift
        now = now or ctx.clock()
        start, base_start = self._windows(now)
        self._load_alerts()
        traffic.prune(ctx.store, now - timedelta(days=s.retention_days))
        window = _by_source(traffic.label_counts(ctx.store, start, now))
        if not window[ALL]:
            return None
        baseline = _by_source(traffic.label_counts(ctx.store, base_start, start))
        sources, changes = {}, []
        for source in sorted(window, key=lambda name: (name != ALL, name)):
            reading = self._surge(source, window[source], baseline.get(source, Counter()))
            sources[source] = reading
            if reading.get("transition"):
                changes.append((source, reading))
        payload: dict[str, Any] = {
            "window": {"start": start.isoformat(), "end": now.isoformat()},
            "baseline": {"start": base_start.isoformat(), "end": start.isoformat()},
            "surge_label": d.surge_label, "sources": sources,
            "prediction_mix": self._mix(window[ALL], baseline[ALL]),
            **self._confidence_and_estimate(start, now, base_start),
            "hysteresis": {name: h.state_dict() for name, h in self._alerts.items()},
        }
        surging = [name for name, r in sources.items() if r.get("alert") == "open"]
        summary = (f"{sum(window[ALL].values())} texts served in the last {s.live_window_minutes:g} min; "
                   + (f"surge of {d.surge_label} open for {', '.join(surging)}" if surging else "no surge open"))
        event = ctx.store.append(events.LIVE_SCORED, summary, actor=LIVE_ACTOR, payload=payload)
        for source, reading in changes:
            self._alert(source, reading)
        return event

    def check_embeddings(self, now: datetime | None = None) -> Event | None:
        """MMD of the champion's embeddings of the window's served texts against the baseline's; None when
        it is not due, there is no champion, or either side has fewer than `serve.live_min_rows` texts."""
        ctx, s, d = self.ctx, self.ctx.settings.serve, self.ctx.settings.drift
        now = now or ctx.clock()
        if self._embedded_at is None:
            last = ctx.store.last_event(events.LIVE_EMBEDDING_SCORED)
            self._embedded_at = last.at if last else datetime.min.replace(tzinfo=now.tzinfo)
        if (now - self._embedded_at).total_seconds() < s.live_check_seconds:
            return None
        self._embedded_at = now  # also when skipped below: the next look is one period away
        start, base_start = self._windows(now)
        window = traffic.texts(ctx.store, start, now, d.mmd_max_rows)
        baseline = traffic.texts(ctx.store, base_start, start, d.mmd_max_rows)
        if min(len(window), len(baseline)) < s.live_min_rows:
            return None
        champion = ctx.registry.get_alias("champion")
        if champion is None:
            return None
        predictor = ctx.predictor(champion.version)
        _, _, reference = predictor.predict_and_embed(baseline)
        _, _, current = predictor.predict_and_embed(window)
        result = EmbeddingMMDDetector(d.alpha, d.mmd_permutations, d.mmd_max_rows, d.seed,
                                      name="live_embedding_mmd").fit(reference).score(current)
        payload = {"window": {"start": start.isoformat(), "end": now.isoformat(), "rows": len(window)},
                   "baseline": {"start": base_start.isoformat(), "end": start.isoformat(), "rows": len(baseline)},
                   "score": result.score, "threshold": result.threshold, "p_value": result.p_value,
                   "drifted": result.drifted}
        reason = (f"served texts' embeddings (champion v{champion.version}): MMD² {result.score:.4f}, "
                  f"p={result.p_value:.3g}: {'DRIFTED' if result.drifted else 'steady'}")
        return ctx.store.append(events.LIVE_EMBEDDING_SCORED, reason, version=champion.version, actor=LIVE_ACTOR,
                                payload=payload)

    def _surge(self, source: str, window: Counter[str], baseline: Counter[str]) -> dict[str, Any]:
        s, d = self.ctx.settings.serve, self.ctx.settings.drift
        n, n0 = sum(window.values()), sum(baseline.values())
        reading: dict[str, Any] = {"rows": n, "baseline_rows": n0, "share": window[d.surge_label] / n}
        if n < s.live_min_rows or n0 < s.live_min_rows:
            reading.update(scored=False, why=f"fewer than {s.live_min_rows} rows in the window or its baseline")
            if source in self._alerts:
                reading["alert"] = self._alerts[source].state
            return reading
        result = NegativeSurgeDetector(d.surge_label, d.alpha, d.surge_min_lift).fit(
            baseline.elements()).score(window.elements())
        alert = self._hysteresis(source)
        alert.update(result.drifted)
        reading.update(scored=True, surging=result.drifted, baseline_share=result.details["reference_share"],
                       lift=result.score, p_value=result.p_value, alert=alert.state, transition=alert.transition)
        return reading

    def _mix(self, window: Counter[str], baseline: Counter[str]) -> dict[str, Any] | None:
        s, d = self.ctx.settings.serve, self.ctx.settings.drift
        if sum(window.values()) < s.live_min_rows or sum(baseline.values()) < s.live_min_rows:
            return None
        result = LabelMixDetector(d.alpha, d.label_psi, name="live_prediction_mix").fit(
            baseline.elements()).score(window.elements())
        return {"psi": result.score, "p_value": result.p_value, "drifted": result.drifted,
                "window_share": result.details["window_share"], "baseline_share": result.details["reference_share"]}

    def _confidence_and_estimate(self, start: datetime, end: datetime, base_start: datetime) -> dict[str, Any]:
        """Mean confidence and entropy, window against baseline, and the champion's expected macro-F1 on the
        window's texts that it answered: one read of each side's probabilities."""
        def summary(rows: list[dict[str, float]]) -> dict[str, float] | None:
            if not rows:
                return None
            p = np.clip(np.array([list(r.values()) for r in rows]), 1e-12, 1.0)
            return {"rows": len(rows), "mean_confidence": float(p.max(axis=1).mean()),
                    "mean_entropy": float(-(p * np.log(p)).sum(axis=1).mean())}

        window = traffic.scores(self.ctx.store, start, end)
        baseline = traffic.scores(self.ctx.store, base_start, start)
        return {"confidence": {"window": summary([p for _, p in window]), "baseline": summary([p for _, p in baseline])},
                "estimate": self._estimate(window)}

    def _estimate(self, window: list[tuple[str, dict[str, float]]]) -> dict[str, Any] | None:
        try:
            champion = self.ctx.registry.get_alias("champion")
        except Exception as exc:  # noqa: BLE001 - the registry being away costs this reading only
            log.warning("live: no label-free estimate (registry: %s)", exc)
            return None
        if champion is None:
            return None
        rows = [p for version, p in window if version == champion.version]
        if len(rows) < self.ctx.settings.serve.live_min_rows:
            return None
        labels = self.ctx.settings.labels
        probs = np.array([[row.get(label, 0.0) for label in labels] for row in rows])
        temperature = champion.metrics.get("calibration.temperature")
        estimate = expected_macro_f1(scaled(probs, temperature or 1.0), seed=self.ctx.settings.drift.seed)
        return {"version": champion.version, "temperature": temperature, "calibrated": temperature is not None,
                "reference_macro_f1": champion.metrics.get("fresh.macro_f1"), **estimate.to_dict()}

    def _alert(self, source: str, reading: dict[str, Any]) -> None:
        d = self.ctx.settings.drift
        opened = reading["transition"] == "opened"
        text = (f"{'surge' if opened else 'surge over'}: {d.surge_label} news from {source} at "
                f"{reading['share']:.0%} of {reading['rows']} served texts (baseline {reading['baseline_share']:.0%} "
                f"of {reading['baseline_rows']}, p={reading['p_value']:.2g})")
        self.ctx.store.append(events.LIVE_SURGE_OPENED if opened else events.LIVE_SURGE_CLOSED, text,
                              actor=LIVE_ACTOR, payload={"source": source, **reading})
        if self.notify is not None:
            self.notify({"event": events.LIVE_SURGE_OPENED if opened else events.LIVE_SURGE_CLOSED,
                         "source": source, "share": round(reading["share"], 4),
                         "baseline_share": round(reading["baseline_share"], 4), "rows": reading["rows"],
                         "text": f"cltool live {text}"})
