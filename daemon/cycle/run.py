"""One update: champion + new rows + replay -> candidate -> same-evidence evaluation -> gate -> registry.

The decision, its alias intent and the "these batches are consumed" mark are written in one state
store transaction after the candidate is registered; the alias then moves under the shared lock.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from daemon import events, failpoints
from daemon.context import Context
from daemon.cycle import continual, evidence
from daemon.cycle.timing import Timings, landing
from daemon.cycle.report import describe, metrics_of
from daemon.cycle.review import build_review
from daemon.cycle.trigger import failures_in_a_row, open_request, retry_wait, should_run
from daemon.errors import CltoolError
from daemon.monitoring.drift_pass import drift_report
from daemon.promotion import retention
from daemon.scores import CachedPredictor
from daemon.state import parking
from registry.evidence import EvaluationReport, PartReport
from registry.gate import Decision, GatePolicy, decide
from retrain.calibration import fit_temperature
from retrain.evaluation import Predictor
from retrain.job import TrainingStopped, train
from retrain.modeling import resolve_base, store_weights_as
from retrain.update import Teacher, prepare_update

log = logging.getLogger(__name__)


class CycleAborted(CltoolError):
    def __init__(self, cycle_id: str, step: str) -> None:
        super().__init__(f"cycle {cycle_id} stopped before {step} (shutdown requested); its batches stay pending")


class TrainingPhaseError(CltoolError):
    """Training itself failed (the child crashed, was killed or timed out, or raised): counted towards
    parking the batches (`train.max_failures`), which an outage of MLflow or the store never is."""

    def __init__(self, cause: BaseException) -> None:
        self.cause = cause
        super().__init__(f"{type(cause).__name__}: {cause}")


@dataclass
class CycleResult:
    cycle_id: str
    outcome: str  # PROMOTE | REJECT | WAIT
    reasons: list[str]
    version: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def requested_by(ctx: Context) -> str | None:
    return open_request(ctx.store)


def awaiting_data(ctx: Context) -> bool:
    """The last decision was WAIT and no batch has been accepted since: retraining now would only
    repeat it, so the pending rows wait for company."""
    decided = ctx.store.last_event(events.DECISION)
    return (decided is not None and decided.payload.get("outcome") == "WAIT"
            and not ctx.store.events(types=[events.INGEST_ACCEPTED], after_id=decided.id))


def maybe_run(ctx: Context, before_training: Callable[[], object] | None = None,
              notify: Callable[[dict[str, Any]], None] | None = None) -> CycleResult | None:
    """The scheduler's cycle job: run when the trigger policy says so (`before_training`, `notify`: see run_cycle)."""
    pending = parking.pending(ctx.store)
    last = ctx.store.last_event(events.CYCLE_FINISHED)
    requester = requested_by(ctx)
    if requester is None and awaiting_data(ctx):
        log.debug("no cycle: the last one said WAIT and no batch has arrived since")
        return None
    verdict = should_run(pending, requested_by=requester, last_cycle_at=last.at if last else None,
                         now=ctx.clock(), policy=ctx.settings.trigger, min_fresh_rows=ctx.settings.gate.min_fresh_rows)
    if not verdict.run:
        log.debug("no cycle: %s", verdict.reason)
        return None
    failures, last_failed_at = failures_in_a_row(ctx.store)
    wait = retry_wait(failures, last_failed_at, ctx.clock(), ctx.settings.trigger)
    if requester is None and wait > 0:
        log.debug("no cycle: %d failed in a row, retrying in %.0f s", failures, wait)
        return None
    return run_cycle(ctx, verdict.reason, before_training, notify)


def run_cycle(ctx: Context, trigger: str, before_training: Callable[[], object] | None = None,
              notify: Callable[[dict[str, Any]], None] | None = None) -> CycleResult:
    """One cycle over the pending batches (parked ones left out). `before_training` runs once they are
    chosen: the daemon scores drift there, so a batch recorded (say by `cltool ingest`) after its last
    drift pass is still scored before it is learned. `notify` sends the alert when batches get parked."""
    s, store = ctx.settings, ctx.store
    pending = parking.pending(store)
    timings = Timings()
    if before_training is not None:
        timings.enter("drift")
        before_training()
        timings.stop()
    cycle_id = f"c{ctx.clock().strftime('%Y%m%dT%H%M%S%f')}"
    store.append(events.CYCLE_STARTED, trigger, payload={"cycle_id": cycle_id, "batches": [b.batch_id for b in pending]})
    timings.enter("prepare")
    new = evidence.load_rows(store, pending)
    history = evidence.History(store, tuple(store.list_batches(pending=False)))  # read in bounded samples
    fresh = evidence.split(new, "test")
    if len(fresh) < s.gate.min_fresh_rows or evidence.split(new, "train").empty:
        return _wait(ctx, cycle_id, f"{len(fresh)} fresh test rows < gate.min_fresh_rows {s.gate.min_fresh_rows}"
                     if len(fresh) < s.gate.min_fresh_rows else "no new train rows", timings)
    work = s.work_dir / cycle_id
    try:
        return _train_and_decide(ctx, cycle_id, trigger, pending, new, history, fresh, work, timings)
    except CycleAborted as exc:
        store.append(events.CYCLE_ABORTED, str(exc), payload={"cycle_id": cycle_id})
        raise
    except TrainingPhaseError as exc:
        store.append(events.CYCLE_FAILED, str(exc), payload={
            "cycle_id": cycle_id, "phase": "training", "batches": [b.batch_id for b in pending]})
        parking.after_training_failure(store, pending, str(exc), s.train.max_failures, notify)
        raise exc.cause from None
    except Exception as exc:
        store.append(events.CYCLE_FAILED, f"{type(exc).__name__}: {exc}", payload={"cycle_id": cycle_id})
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
        ctx.scores.drop(_candidate_key(cycle_id))  # a cycle that did not register its candidate


def _candidate_key(cycle_id: str) -> str:
    return f"candidate:{cycle_id}"


def _temperature(candidate: Predictor, val_rows: pd.DataFrame, labels: list[str]) -> float:
    """The candidate's softmax temperature fitted on the validation rows: what `cltool serve`'s traffic
    is recalibrated with before the live monitor estimates macro-F1 without labels."""
    if val_rows.empty:
        return 1.0
    _, probs = candidate.predict(val_rows["text"].tolist())
    return fit_temperature(probs, np.array([labels.index(label) for label in val_rows["label"]]))


def _train_and_decide(ctx, cycle_id, trigger, pending, new, history, fresh, work, timings: Timings) -> CycleResult:
    s = ctx.settings
    champion = ctx.registry.get_alias("champion")
    incumbent = ctx.predictor(champion.version) if champion else None
    # After a WAIT the challenger already learned the batches it was judged on: continue from it on the
    # batches that arrived since, so waiting costs one batch of training per cycle, not all pending
    # again. It is still judged against the champion on every pending batch's fresh rows.
    resume = _waiting_challenger(ctx, champion.version if champion else None, pending)
    if resume and evidence.split(new[~new["batch_id"].isin(resume[1])], "train").empty:
        resume = None  # what arrived since has no train rows: nothing to continue with
    learned = set(resume[1]) if resume else set()
    to_learn = new[~new["batch_id"].isin(learned)]
    seen = history.with_learned([b for b in pending if b.batch_id in learned])
    start = resume[0] if resume else champion.version if champion else None
    init = ctx.models.path(start) if start else resolve_base(s.model.base)
    teacher_model = ctx.predictor(start) if start and s.train.distill_alpha > 0 else None
    teacher = Teacher(lambda texts: teacher_model.predict(texts)[1], teacher_model.labels) if teacher_model else None
    state = _replay_state(ctx, start)
    past = seen.update_rows(to_learn, s.replay, state, s.labels, s.train.seed)
    update = prepare_update(to_learn, past, s.labels, s.replay, state, s.train.seed, teacher)
    new_train, replay = update.new_train, update.replay
    origin = (f"waiting challenger v{start}" if resume else f"champion v{start}") if start else s.model.base
    log.info("cycle %s: training from %s on %d new + %d replay rows (%d val)", cycle_id, origin, len(new_train),
             len(replay), len(update.val_rows))
    _enter(ctx, cycle_id, "training")
    timings.enter("train")
    try:
        result = train(init, update.train_rows, update.val_rows, s.labels, work, s.train,
                       max_length=s.model.max_length, should_stop=ctx.stop.is_set)
    except TrainingStopped:
        raise CycleAborted(cycle_id, "the end of training") from None
    except Exception as exc:
        raise TrainingPhaseError(exc) from exc
    failpoints.hit("cycle.after_training")
    _enter(ctx, cycle_id, "evaluation")
    timings.enter("evaluate")
    store_weights_as(result.model_dir, s.mlflow.weights_dtype)  # judged as it will be stored and served
    regression = history.regression(s.gate.regression_max_rows)
    # Its scores are kept under the cycle's id, then filed under its version once registered (daemon/scores.py).
    candidate = CachedPredictor(Predictor(result.model_dir, device=s.train.device, max_length=s.model.max_length),
                                _candidate_key(cycle_id), ctx.scores)
    on_fresh = evidence.score_pair(fresh, s.labels, candidate, incumbent)
    on_regression = evidence.score_pair(regression, s.labels, candidate, incumbent) if len(regression) else None
    summaries = _summaries(on_fresh, on_regression, result.train_loss)
    decision = decide(summaries["candidate"], summaries["champion"], _gate_policy(s))
    cl_report = _continual_report(ctx, champion.version if champion else None, cycle_id, fresh, regression,
                                  on_fresh, on_regression)
    metrics = {**metrics_of(summaries, on_fresh, on_regression, result, s.labels), **continual.flat_metrics(cl_report)}
    metrics["calibration.temperature"] = _temperature(candidate, update.val_rows, s.labels)
    timings.stop()
    _enter(ctx, cycle_id, "registration")
    timings.enter("register")
    arrived = landing(ctx.store, pending)
    metrics.update(timings.metrics(arrived))
    lineage = {
        "cycle_id": cycle_id, "trigger": trigger, "init_from": f"v{start}" if start else str(init),
        "continued_from_wait": bool(resume),
        "batches": [{"batch_id": b.batch_id, "file": b.file_name, "checksum": b.checksum,
                     "rows_accepted": b.rows_accepted, "n_train": b.n_train} for b in pending],
        "new_train_rows": len(new_train), "val_rows": len(update.val_rows), "fresh_rows": len(fresh),
        "regression_rows": len(regression), "replay_rows": len(replay),
        "replay_policy": update.replay_state, "replay_row_hashes": replay["row_hash"].tolist(),
    }
    review = build_review(work=work, labels=s.labels, decision=decision, on_fresh=on_fresh,
                          on_regression=on_regression, fresh=fresh, regression=regression, new_train=new_train,
                          replay=replay, pending=pending, champion_version=champion.version if champion else None,
                          cycle_id=cycle_id, trigger=trigger, rows_source=f"cltool-state:{ctx.store.display_url}#rows",
                          continual=cl_report)
    stored = {side: report and report.to_dict() for side, report in summaries.items()}
    json_artifacts = {"eval_report": {**stored, "negative_flip_rate": metrics.get("negative_flip_rate"),
                                      "decision": decision.to_dict()},
                      "lineage": lineage, "config": s.public_dump(), "cl_metrics": cl_report}
    # The drift verdicts of the batches this run learned (the reason for it, when drift asked for it).
    drift = drift_report(ctx, [b.batch_id for b in pending])
    if drift is not None:
        json_artifacts["drift_report"] = {"trigger": trigger, **drift}
    registered = ctx.registry.log_candidate(
        model_dir=result.model_dir, run_name=cycle_id, params=s.public_dump(), metrics=metrics,
        tags=review.tags,
        json_artifacts=json_artifacts,
        files=review.files, description=describe(decision, summaries, champion.version if champion else None, lineage),
        input_example=fresh["text"].head(2).tolist(), datasets=review.datasets,
    )
    version = registered.version
    ctx.scores.rename(_candidate_key(cycle_id), version)
    failpoints.hit("cycle.after_registration")  # an undecided version: the restart removes it (daemon/repair.py)
    timings.enter("alias")
    result = _record(ctx, cycle_id, pending, decision, version, champion.version if champion else None, metrics,
                     registered={"run_id": registered.run_id, "created_at": registered.created_at.isoformat()})
    timings.stop()
    _finish(ctx, cycle_id, result, timings.metrics(arrived, finished=True))
    return result


def _finish(ctx: Context, cycle_id: str, result: CycleResult, timing: dict[str, float]) -> None:
    """The cycle's end in the event log (with where its time went), the timings the MLflow run could not
    have before the alias moved, then the clean-up: old cached models, old versions' weights and runs."""
    ctx.store.append(events.CYCLE_FINISHED, result.outcome, version=result.version,
                     payload={"cycle_id": cycle_id, "timing": timing})
    late = {key: value for key, value in timing.items() if key not in result.metrics}  # not known at registration
    result.metrics.update(timing)
    try:
        ctx.registry.log_metrics(result.version, late)
    except Exception as exc:  # the decision is recorded: a late metric must not fail the cycle
        log.warning("cycle %s: could not log its timings to MLflow (%s: %s)", cycle_id, type(exc).__name__, exc)
    keeper = ctx.keeper
    keep = {v for v in (keeper.alias_version("champion"), keeper.alias_version("previous_champion")) if v}
    ctx.models.prune(keep)
    try:
        retention.apply(ctx, actor="daemon")
    except Exception:  # retention must never fail a cycle whose decision is already recorded; it retries next time
        log.exception("retention: pruning old versions failed")


def _record(ctx, cycle_id, pending, decision: Decision, version, judged_against, metrics,
            registered: dict[str, str]) -> CycleResult:
    """Decision + consumed batches in one transaction, then the alias move, all under the alias lock.
    `registered`: the version's run id and registration time, so `cltool status` needs no MLflow call."""
    keeper, outcome, reasons = ctx.keeper, decision.outcome, decision.reasons
    with keeper.lock():
        keeper.reconcile(locked=True)
        now_champion = keeper.alias_version("champion")
        if outcome == "PROMOTE" and now_champion != judged_against:
            # Someone moved the champion while we trained: our evidence compares against the wrong model.
            outcome = "REJECT"
            reasons = [*reasons, f"stale: champion changed from {judged_against} to {now_champion} during the cycle"]
            ctx.registry.set_tags(version, {"cltool.decision": outcome, "cltool.reasons": " | ".join(reasons),
                                            "validation_status": "failed"})
        op = "promote" if outcome == "PROMOTE" else "challenger"
        entries = [
            {"type": events.DECISION, "version": version, "reason": f"{outcome}: " + "; ".join(reasons),
             "payload": {"outcome": outcome, "reasons": reasons, "cycle_id": cycle_id, "metrics": metrics,
                         "batches": [b.batch_id for b in pending], "champion": judged_against, **registered}},
            {"type": events.PROMOTION if op == "promote" else events.CHALLENGER, "version": version,
             "reason": "gate: " + outcome, "payload": {"op": op, "to": version, "from": now_champion,
                                                        "forced": False, "gate_decision": outcome}},
        ]
        # WAIT: the evidence was inconclusive. The candidate stays reviewable as challenger, but its
        # batches stay pending, so the next cycle retrains on them plus whatever arrives next.
        batch_ids = [b.batch_id for b in pending] if outcome != "WAIT" else []
        _decision, intent = ctx.store.append_with_consume(entries, batch_ids, cycle_id)
        failpoints.hit("cycle.after_decision")  # an open alias intent: reconcile() finishes it
        keeper.apply(intent)
    failpoints.hit("cycle.before_finished")
    return CycleResult(cycle_id, outcome, reasons, version, dict(metrics))


def _wait(ctx: Context, cycle_id: str, why: str, timings: Timings) -> CycleResult:
    ctx.store.append(events.DECISION, f"WAIT: {why}", payload={"outcome": "WAIT", "reasons": [why], "cycle_id": cycle_id})
    timings.stop()
    ctx.store.append(events.CYCLE_FINISHED, "WAIT", payload={"cycle_id": cycle_id, "timing": timings.metrics({})})
    return CycleResult(cycle_id, "WAIT", [why])


def _summaries(on_fresh, on_regression, train_loss: float) -> dict[str, EvaluationReport | None]:
    """Gate input. Each report carries its per-row evidence (y_true, y_pred), so the gate can run a
    paired test and `cltool explain` can replay the decision from the stored report alone."""

    def report(scores, side: str) -> PartReport | None:
        if scores is None or getattr(scores, side) is None:
            return None
        return PartReport.from_dict({**getattr(scores, side), "y_true": scores.truth,
                                     "y_pred": getattr(scores, f"{side}_pred")})

    return {
        "candidate": EvaluationReport(report(on_fresh, "candidate"), report(on_regression, "candidate"), train_loss),
        "champion": None if on_fresh.champion is None else EvaluationReport(
            report(on_fresh, "champion"), report(on_regression, "champion"), train_loss=None),
    }


def _waiting_challenger(ctx: Context, champion_version: str | None, pending) -> tuple[str, list[str]] | None:
    """(version, the batches it learned) of the challenger the last decision WAITed on, when the champion
    it was judged against still is champion and more batches wait now than it learned; else None."""
    decided = ctx.store.last_event(events.DECISION)
    if decided is None or decided.version is None or decided.payload.get("outcome") != "WAIT":
        return None
    learned = decided.payload.get("batches") or []
    if decided.payload.get("champion") != champion_version or not set(learned) < {b.batch_id for b in pending}:
        return None
    return decided.version, learned


def _replay_state(ctx: Context, champion_version: str | None) -> dict[str, Any] | None:
    """The replay state saved with the version a cycle starts from (so a rollback brings its matching state back)."""
    if champion_version is None:
        return None
    return ctx.registry.read_json_artifact(champion_version, "lineage")["replay_policy"]


def _continual_report(ctx: Context, champion_version, cycle_id, fresh, regression, on_fresh, on_regression):
    """The candidate's accuracy-matrix row appended to the champion's (see daemon/continual.py)."""
    parent = ctx.registry.read_json_artifact(champion_version, "cl_metrics") if champion_version is not None else None
    rows = pd.concat([fresh, regression], ignore_index=True) if on_regression else fresh
    truth = on_fresh.truth + (on_regression.truth if on_regression else [])
    predicted = on_fresh.candidate_pred + (on_regression.candidate_pred if on_regression else [])
    scores = continual.candidate_row(rows, truth, predicted, ctx.settings.labels)
    return continual.build(parent, cycle_id, scores)


def _enter(ctx: Context, cycle_id: str, phase: str) -> None:
    """Start `phase` of the cycle, unless a shutdown was asked for: then stop before it. The phase goes
    in the event log so `cltool status` can say what a running cycle is doing."""
    if ctx.stop.is_set():
        raise CycleAborted(cycle_id, phase)
    ctx.store.append(events.CYCLE_PHASE, phase, payload={"cycle_id": cycle_id, "phase": phase})


def gate_policy(gate: dict[str, Any]) -> GatePolicy:
    """The gate's policy from a `[gate]` config section (current settings, or a version's stored config).
    Keys the policy does not know are left out: the daemon's own `regression_max_rows`, and settings a
    stored config from an older version may still carry."""
    return GatePolicy.model_validate({key: value for key, value in gate.items() if key in GatePolicy.model_fields})


def _gate_policy(s) -> GatePolicy:
    return gate_policy(s.gate.model_dump())
