"""The daemon's Prometheus metrics, behind verb-named methods so callers never touch metric objects.

Every metric lives in the registry passed in (a fresh one by default, never the process-global
REGISTRY), so tests and a second `Metrics` in the same process see exact, independent numbers.
"""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge

from daemon.errors import CltoolError

CYCLE_OUTCOMES = ("PROMOTE", "REJECT", "WAIT", "failed", "aborted")
# A cycle that ran to a decision counts as successful, whatever the decision was; the
# "no successful cycle" alert is about the daemon being stuck, not about models being rejected.
SUCCESSFUL_OUTCOMES = ("PROMOTE", "REJECT", "WAIT")
ACTOR_KINDS = ("manual", "gate")
ROLLBACK_KINDS = ("manual", "automatic")


class UnknownLabelError(CltoolError, ValueError):
    """A metric method got a label value outside its fixed set (keeps label cardinality bounded)."""

    def __init__(self, label: str, value: object, allowed: Iterable[str]) -> None:
        self.label, self.value = label, value
        super().__init__(f"metrics: {label} = {value!r} is not allowed: expected one of {', '.join(allowed)}")


def _check(label: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UnknownLabelError(label, value, allowed)
    return value


def _seconds(at: float | datetime) -> float:
    """Unix seconds from a float or an aware datetime (callers pass their injected clock's value)."""
    return at.timestamp() if isinstance(at, datetime) else float(at)


class Metrics:
    """All `cltool_*` metrics. One instance per daemon; pass it to whatever records events."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self._drift_score = Gauge("cltool_drift_score", "Latest drift score per detector.",
                                  ["detector"], registry=r)
        self._drift_state = Gauge("cltool_drift_state", "1 while the detector reports drift, else 0.",
                                  ["detector"], registry=r)
        self._drift_threshold = Gauge("cltool_drift_threshold", "Threshold the latest drift score is compared with.",
                                      ["detector"], registry=r)
        self._drift_window = Gauge("cltool_drift_window_drifted",
                                   "1 when the latest scored batch alone drifted (before hysteresis), else 0.",
                                   ["detector"], registry=r)
        # The champion's live readings exist only once a champion has scored a batch: a 0 before that
        # would read as a broken model (and fire `cltool_live_macro_f1 < 0.80`), so they start absent.
        self._live: dict[str, Gauge] = {}
        self._served: dict[str, Gauge] | None = None  # likewise, once the daemon has read served traffic
        self._champion = Gauge("cltool_champion_info", "1 for the model version that is champion now.",
                               ["version"], registry=r)
        self._cycles = Counter("cltool_cycles", "Retrain cycles finished, by outcome.", ["outcome"], registry=r)
        self._promotions = Counter("cltool_promotions", "Promotions, by who decided.", ["actor_kind"], registry=r)
        self._rollbacks = Counter("cltool_rollbacks", "Rollbacks, by kind.", ["kind"], registry=r)
        self._last_success = Gauge("cltool_last_successful_cycle_timestamp_seconds",
                                   "Unix time the last cycle reached a decision (PROMOTE/REJECT/WAIT).",
                                   registry=r)
        self._backlog = Gauge("cltool_inbox_backlog_files", "Files waiting in the inbox.", registry=r)
        # `job_id`, not `job`: Prometheus attaches its own `job` target label and would rename ours
        # to `exported_job`, which rules and dashboards then have to know about.
        self._job_errors = Counter("cltool_scheduler_job_errors", "Scheduler jobs that raised.", ["job_id"],
                                   registry=r)
        self._job_misfires = Counter("cltool_scheduler_job_misfires", "Scheduler jobs skipped as too late.",
                                     ["job_id"], registry=r)
        self._quarantined = Counter("cltool_quarantined_files", "Inbox files moved to quarantine.", registry=r)
        self._parked = Gauge("cltool_parked_batches", "Batches set aside after train.max_failures training "
                             "failures in a row (`cltool retrain` unparks them).", registry=r)
        # Pre-create the fixed label sets so every series exists at 0 from the first scrape;
        # otherwise rate()/increase() miss the first increment.
        for outcome in CYCLE_OUTCOMES:
            self._cycles.labels(outcome=outcome)
        for kind in ACTOR_KINDS:
            self._promotions.labels(actor_kind=kind)
        for kind in ROLLBACK_KINDS:
            self._rollbacks.labels(kind=kind)

    # -- events --------------------------------------------------------------------------------
    def cycle_finished(self, outcome: str, at: float | datetime) -> None:
        """A cycle ended with `outcome`; a decision (not failed/aborted) also stamps the last-success time."""
        self._cycles.labels(outcome=_check("outcome", outcome, CYCLE_OUTCOMES)).inc()
        if outcome in SUCCESSFUL_OUTCOMES:
            self._last_success.set(_seconds(at))

    def promoted(self, actor_kind: str, version: str | int) -> None:
        self._promotions.labels(actor_kind=_check("actor_kind", actor_kind, ACTOR_KINDS)).inc()
        self.champion(version)

    def rolled_back(self, kind: str, version: str | int) -> None:
        """A rollback happened; `version` is the champion after it."""
        self._rollbacks.labels(kind=_check("kind", kind, ROLLBACK_KINDS)).inc()
        self.champion(version)

    def champion(self, version: str | int) -> None:
        """Mark `version` as the champion; only one version series exists at a time."""
        self._champion.clear()
        self._champion.labels(version=str(version)).set(1)

    def drift(self, detector: str, score: float, drifted: bool) -> None:
        self._drift_score.labels(detector=detector).set(score)
        self._drift_state.labels(detector=detector).set(1 if drifted else 0)

    def drift_window(self, detector: str, score: float, threshold: float, drifted: bool, alert_open: bool) -> None:
        """One detector's latest batch: its score and threshold, that batch's own verdict, and the alert
        state after hysteresis (`cltool_drift_state`, what alert rules watch)."""
        self.drift(detector, score, alert_open)
        self._drift_threshold.labels(detector=detector).set(threshold)
        self._drift_window.labels(detector=detector).set(1 if drifted else 0)

    def live_macro_f1(self, value: float) -> None:
        self._set_live("cltool_live_macro_f1", "Macro-F1 of the champion on recent labelled live data.", value)

    def live_accuracy(self, value: float) -> None:
        self._set_live("cltool_live_accuracy", "Accuracy of the champion on the latest labelled batch.", value)

    def mean_confidence(self, value: float) -> None:
        self._set_live("cltool_prediction_mean_confidence",
                       "Mean top-class probability of the champion on the latest batch.", value)

    def _set_live(self, name: str, documentation: str, value: float) -> None:
        if name not in self._live:
            self._live[name] = Gauge(name, documentation, registry=self.registry)
        self._live[name].set(value)

    def served_traffic(self, payload: dict) -> None:
        """The latest `live.scored` reading of what `cltool serve` answered (daemon/monitoring/live.py)."""
        if self._served is None:
            r = self.registry
            self._served = {
                "rows": Gauge("cltool_served_window_texts", "Texts served in the live window, by source "
                              "(* = all).", ["source"], registry=r),
                "share": Gauge("cltool_served_surge_share", "Share of the surge class (negative) among the "
                               "window's predictions, by source.", ["source"], registry=r),
                "baseline": Gauge("cltool_served_surge_baseline_share", "The same share in the baseline "
                                  "before the window, by source.", ["source"], registry=r),
                "open": Gauge("cltool_served_surge_open", "1 while a surge alert is open for the source.",
                              ["source"], registry=r),
            }
        for source, reading in payload.get("sources", {}).items():
            self._served["rows"].labels(source=source).set(reading["rows"])
            self._served["share"].labels(source=source).set(reading["share"])
            if reading.get("scored"):
                self._served["baseline"].labels(source=source).set(reading["baseline_share"])
            self._served["open"].labels(source=source).set(1 if reading.get("alert") == "open" else 0)
        estimate = payload.get("estimate")
        if estimate:
            self._set_live("cltool_served_estimated_macro_f1", "Label-free macro-F1 estimate of the champion on "
                           "served traffic (calibrated confidence).", estimate["macro_f1"])
            self._set_live("cltool_served_estimated_macro_f1_low", "Lower bound of that estimate's interval.",
                           estimate["low"])
        window = (payload.get("confidence") or {}).get("window")
        if window:
            self._set_live("cltool_served_mean_confidence", "Mean top-class probability on served traffic.",
                           window["mean_confidence"])
        mix = payload.get("prediction_mix")
        if mix:
            self._set_live("cltool_served_prediction_mix_psi", "PSI of the served prediction mix against its "
                           "baseline.", mix["psi"])

    def served_embeddings(self, payload: dict) -> None:
        """The latest `live.embedding_scored`: MMD of served texts' embeddings against the baseline."""
        self._set_live("cltool_served_embedding_mmd", "MMD² of the champion's embeddings of served texts "
                       "against the baseline window.", payload["score"])
        self._set_live("cltool_served_embedding_drifted", "1 when that MMD test found drift (drift.alpha).",
                       1 if payload["drifted"] else 0)

    def inbox_backlog(self, files: int) -> None:
        self._backlog.set(files)

    def parked_batches(self, batches: int) -> None:
        self._parked.set(batches)

    def job_error(self, job: str) -> None:
        self._job_errors.labels(job_id=job).inc()

    def job_misfire(self, job: str) -> None:
        self._job_misfires.labels(job_id=job).inc()

    def quarantined(self, files: int = 1) -> None:
        self._quarantined.inc(files)
