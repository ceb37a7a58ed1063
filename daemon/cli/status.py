"""`cltool status`: what is in production, what waits, what was decided last."""

from __future__ import annotations

from typing import Any

from daemon import events
from daemon.context import Context
from daemon.promotion.aliases import recorded_aliases
from daemon.cycle.timing import REPORTED
from daemon.state import parking
from daemon.state.locks import DAEMON_LOCK, Locks

ALIASES = ("champion", "challenger", "previous_champion")


def collect(ctx: Context, live: bool = False) -> dict[str, Any]:
    """What `cltool status` shows. The aliases as cltool's event log says it last moved them, each version's
    figures from its decision event: no MLflow call, so status answers at once. `live`: ask MLflow instead
    (what `cltool fsck` compares the log with; a version no decision names is read from MLflow either way)."""
    data: dict[str, Any] = {"model_name": ctx.settings.mlflow.model_name,
                            "aliases_from": "mlflow" if live else "event log"}
    holders = ({alias: ctx.keeper.alias_version(alias) for alias in ALIASES} if live
               else recorded_aliases(ctx.store))
    decided = {e.version: e for e in ctx.store.events(types=[events.DECISION]) if e.version in holders.values()}
    for alias in ALIASES:
        version = holders[alias]
        if version is None:
            data[alias] = None
            continue
        decision = decided.get(version)
        if live or decision is None or "run_id" not in decision.payload:  # e.g. registered by an older cltool
            info = ctx.registry.get_version(version)
            data[alias] = {"version": info.version, "run_id": info.run_id, "created_at": info.created_at.isoformat(),
                           "decision": info.tags.get("cltool.decision"), "metrics": info.metrics}
        else:
            data[alias] = {"version": version, "run_id": decision.payload["run_id"],
                           "created_at": decision.payload.get("created_at", decision.at.isoformat()),
                           "decision": decision.payload.get("outcome"), "metrics": decision.payload.get("metrics", {})}
        data[alias]["continual"] = continual_of(data[alias]["metrics"])
    pending = parking.pending(ctx.store)
    data["pending_rows"] = sum(batch.n_train for batch in pending)
    data["pending_batches"] = [batch.batch_id for batch in pending]
    data["parked"] = [{"batch_id": batch_id, "since": event.at.isoformat(), "reason": event.reason}
                      for batch_id, event in sorted(parking.parked(ctx.store).items())]
    data["inbox_waiting"] = len(ctx.inbox.waiting())
    last = ctx.store.last_event(events.DECISION)
    data["last_decision"] = None if last is None else {
        "version": last.version, "outcome": last.payload.get("outcome"), "reasons": last.payload.get("reasons", []),
        "at": last.at.isoformat(),
    }
    holder = Locks(ctx.store).holder(DAEMON_LOCK)
    data["daemon"] = None if holder is None else {"owner": holder.owner, "since": holder.acquired_at.isoformat(),
                                                  "lease_until": holder.expires_at.isoformat()}
    data["cycle"] = running_cycle(ctx)
    finished = ctx.store.last_event(events.CYCLE_FINISHED)
    data["last_cycle"] = None if finished is None else {
        "cycle_id": finished.payload.get("cycle_id"), "outcome": finished.reason, "version": finished.version,
        "at": finished.at.isoformat(), "timing": finished.payload.get("timing", {})}
    return data


def running_cycle(ctx: Context) -> dict[str, Any] | None:
    """The cycle under way (its id, start, phase and since when), or None: a `cycle.started` that no
    finished/failed/aborted event has closed yet. A cycle whose process died stays open until the next
    one starts; its start time says how old it is."""
    started = ctx.store.last_event(events.CYCLE_STARTED)
    if started is None:
        return None
    cycle_id = started.payload.get("cycle_id")
    later = ctx.store.events(types=[*events.CYCLE_ENDS, events.CYCLE_PHASE], after_id=started.id)
    if any(e.type in events.CYCLE_ENDS and e.payload.get("cycle_id") == cycle_id for e in later):
        return None
    phases = [e for e in later if e.type == events.CYCLE_PHASE and e.payload.get("cycle_id") == cycle_id]
    phase = phases[-1] if phases else started
    return {"cycle_id": cycle_id, "since": started.at.isoformat(), "trigger": started.reason,
            "batches": started.payload.get("batches", []),
            "phase": phase.payload.get("phase", "starting"), "phase_since": phase.at.isoformat()}


def continual_of(metrics: dict[str, float]) -> dict[str, float | None]:
    """The version's continual-learning scores (logged by its cycle; None when not measured)."""
    return {"avg_macro_f1": metrics.get("cl_avg_macro_f1"), "forgetting": metrics.get("cl_forgetting"),
            "backward_transfer": metrics.get("cl_backward_transfer"),
            "negative_flip_rate": metrics.get("negative_flip_rate")}


def render(data: dict[str, Any]) -> str:
    lines = [f"model {data['model_name']}" + (" (aliases read from MLflow)" if data.get("aliases_from") == "mlflow"
                                             else "")]
    for alias in ALIASES:
        info = data[alias]
        if info is None:
            lines.append(f"  {alias:<18} —")
            continue
        m = info["metrics"]
        scores = ", ".join(f"{k} {m[k]:.3f}" for k in ("fresh_macro_f1", "regression_macro_f1") if k in m)
        lines.append(f"  {alias:<18} v{info['version']}  {info['decision'] or ''}  {scores}")
        cl = info.get("continual") or {}
        if alias == "champion" and cl.get("avg_macro_f1") is not None:
            parts = [f"avg macro-F1 over batches {cl['avg_macro_f1']:.3f}"]
            parts += [f"{name} {cl[key]:+.3f}" for key, name in (("forgetting", "forgetting"),
                                                                 ("backward_transfer", "BWT")) if cl.get(key) is not None]
            lines.append("  " + " " * 18 + " " + ", ".join(parts))
    lines.append(f"pending: {data['pending_rows']} new train rows in {len(data['pending_batches'])} batches; "
                 f"{data['inbox_waiting']} files in the inbox")
    if data.get("parked"):
        latest = max(data["parked"], key=lambda p: p["since"])
        lines.append(f"parked: {len(data['parked'])} batches ({', '.join(p['batch_id'] for p in data['parked'])}) "
                     f"since {latest['since']}: {latest['reason']}")
    last = data["last_decision"]
    if last:
        version = f"v{last['version']} " if last["version"] else ""
        lines.append(f"last decision: {version}{last['outcome']} at {last['at']}")
        lines += [f"  - {reason}" for reason in last["reasons"]]
    if data.get("last_cycle") and data["last_cycle"]["timing"]:
        lines.append("last cycle: " + timing_line(data["last_cycle"]["timing"]))
    cycle = data.get("cycle")
    if cycle:
        lines.append(f"cycle {cycle['cycle_id']} running since {cycle['since']} ({cycle['trigger']}): "
                     f"{cycle['phase']} since {cycle['phase_since']}, on {len(cycle['batches'])} batches")
    daemon = data["daemon"]
    lines.append(f"daemon: {daemon['owner']} since {daemon['since']}" if daemon else "daemon: not running")
    return "\n".join(lines)


def timing_line(timing: dict[str, float]) -> str:
    """"412 s from the file landing to the decision: waited 3 s, ingest 1 s, ..." (daemon/cycle/timing.py)."""
    parts = [f"{name} {timing[f'timing.{name}_seconds']:.0f} s" for name in REPORTED if f"timing.{name}_seconds" in timing]
    total = timing.get("timing.landed_to_decision_seconds")
    head = f"{total:.0f} s from the file landing to the decision" if total is not None else "phases"
    return f"{head}: {', '.join(parts)}"
