"""`cltool drift`: the recent drift state per detector, read from the event log, and a PNG timeline.

Everything comes from the `drift.*` events the monitor wrote, so it answers the same whether the
daemon runs or not, and it loads no model.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from daemon.context import Context
from daemon.drift.suite import DETECTORS
from daemon.errors import CltoolError
from daemon.events import LIVE_EMBEDDING_SCORED, LIVE_SCORED, LIVE_SURGE_CLOSED, LIVE_SURGE_OPENED
from daemon.monitoring.drift_pass import CLOSED, DRIFT_EVENTS, OPENED, SCORED, SKIPPED

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class SinceError(CltoolError, ValueError):
    def __init__(self, value: str) -> None:
        self.value = value
        super().__init__(f"--since {value!r} is not allowed: expected a duration like 30m, 12h, 7d, 2w "
                         "or an ISO date/time like 2024-05-01 or 2024-05-01T12:00")


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """'7d' / '12h' / '30m' / '2w' back from `now`, or an ISO date or time (UTC unless it says otherwise)."""
    if value is None:
        return None
    match = _RELATIVE.match(value.strip().lower())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise SinceError(value) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def collect(ctx: Context, since: datetime | None = None, limit: int = 500) -> dict[str, Any]:
    """Latest result and alert state per detector, recent alert changes, and the per-batch timeline."""
    events = ctx.store.events(types=DRIFT_EVENTS, since=since)
    scored = [e for e in events if e.type == SCORED][-limit:]
    latest: dict[str, dict[str, Any]] = {}
    for event in scored:  # oldest first, so the newest result of each detector wins
        for r in event.payload.get("results", []):
            latest[r["detector"]] = {
                "score": r["score"], "threshold": r["threshold"], "drifted": r["drifted"], "p_value": r["p_value"],
                "severity": r["severity"], "alert": r["alert"], "batch_id": event.batch_id,
                "file": event.payload.get("file"), "at": event.at.isoformat(), "champion_version": event.version,
            }
    timeline = [{"at": e.at.isoformat(), "batch_id": e.batch_id, "file": e.payload.get("file"),
                 "results": {r["detector"]: {k: r[k] for k in ("score", "threshold", "drifted", "alert", "severity")}
                             for r in e.payload.get("results", [])}} for e in scored]
    order = [d for d in DETECTORS if d in latest] + sorted(set(latest) - set(DETECTORS))
    return {
        "since": since.isoformat() if since else None,
        "scored_batches": len(scored),
        "skipped_batches": [{"batch_id": e.batch_id, "at": e.at.isoformat(), "reason": e.reason}
                            for e in events if e.type == SKIPPED][-10:],
        "reference": scored[-1].payload.get("reference") if scored else None,
        "detectors": {d: latest[d] for d in order},
        "open_alerts": [d for d in order if latest[d]["alert"] == "open"],
        "alert_changes": [{"event": e.type, "at": e.at.isoformat(), "batch_id": e.batch_id, "reason": e.reason,
                           **e.payload} for e in events if e.type in (OPENED, CLOSED)][-20:],
        "timeline": timeline,
        "live": _live(ctx, since),
    }


def _live(ctx: Context, since: datetime | None) -> dict[str, Any] | None:
    """The latest reading of served traffic (`cltool serve`, daemon/monitoring/live.py) and its surges."""
    last = ctx.store.last_event(LIVE_SCORED)
    if last is None or (since is not None and last.at < since):
        return None
    changes = ctx.store.events(types=(LIVE_SURGE_OPENED, LIVE_SURGE_CLOSED), since=since)[-20:]
    embedded = ctx.store.last_event(LIVE_EMBEDDING_SCORED)
    p = last.payload
    return {"at": last.at.isoformat(), "summary": last.reason, "window": p["window"], "surge_label": p["surge_label"],
            "sources": p["sources"], "prediction_mix": p.get("prediction_mix"), "confidence": p.get("confidence"),
            "estimate": p.get("estimate"),
            "embeddings": {"at": embedded.at.isoformat(), "reason": embedded.reason, **embedded.payload}
            if embedded and (since is None or embedded.at >= since) else None,
            "open_alerts": [name for name, r in p["sources"].items() if r.get("alert") == "open"],
            "alert_changes": [{"event": e.type, "at": e.at.isoformat(), "reason": e.reason} for e in changes]}


def _render_live(live: dict[str, Any] | None) -> list[str]:
    if live is None:
        return []
    lines = [f"served traffic ({live['at'][:19]}): {live['summary']}",
             f"  {'source':<16}{'texts':>7}{live['surge_label'] + ' share':>17}{'baseline':>10}  {'p':>8}  alert"]
    for name, r in sorted(live["sources"].items(), key=lambda item: (item[0] != "*", item[0])):  # all first
        baseline = f"{r['baseline_share']:>10.1%}" if r.get("scored") else f"{'-':>10}"
        p_value = f"{r['p_value']:>8.2g}" if r.get("scored") else f"{'-':>8}"
        alert = ("OPEN" if r.get("alert") == "open" else "ok") if r.get("scored") else "not scored"
        lines.append(f"  {name:<16}{r['rows']:>7}{r['share']:>17.1%}{baseline}  {p_value}  {alert}")
    mix, estimate = live.get("prediction_mix"), live.get("estimate")
    if mix:
        lines.append(f"  prediction mix: PSI {mix['psi']:.3f} (p={mix['p_value']:.2g}) "
                     f"{'DRIFTED' if mix['drifted'] else 'steady'}")
    if estimate:
        calibrated = f"T={estimate['temperature']:.2f}" if estimate["calibrated"] else "uncalibrated"
        lines.append(f"  estimated macro-F1 of v{estimate['version']} without labels: {estimate['macro_f1']:.3f} "
                     f"[{estimate['low']:.3f}, {estimate['high']:.3f}] on {estimate['rows']} texts ({calibrated})")
    if live.get("embeddings"):
        lines.append(f"  {live['embeddings']['reason']} ({live['embeddings']['at'][:19]})")
    lines += [f"  {c['at'][:19]} {c['reason']}" for c in live["alert_changes"][-5:]]
    return lines


def render(data: dict[str, Any]) -> str:
    live = _render_live(data.get("live"))
    if not data["detectors"]:
        skipped = data["skipped_batches"]
        why = f"; last skip: {skipped[-1]['reason']}" if skipped else ""
        return "\n".join([f"no drift results yet{' since ' + data['since'] if data['since'] else ''}{why}", *live])
    ref = data["reference"] or {}
    lines = [f"drift: {data['scored_batches']} batches scored; reference {ref.get('mode')} "
             f"(champion v{ref.get('champion_version')}, {ref.get('rows')} rows of {ref.get('batches')} batches)",
             f"{'detector':<18}{'score':>10}{'threshold':>11}  {'drifted':<8}{'alert':<7}{'severity':<10}batch"]
    for name, d in data["detectors"].items():
        lines.append(f"{name:<18}{d['score']:>10.4f}{d['threshold']:>11.4f}  {'yes' if d['drifted'] else 'no':<8}"
                     f"{'OPEN' if d['alert'] == 'open' else 'ok':<7}{d['severity']:<10}{d['batch_id']} ({d['file']})")
    lines.append("open alerts: " + (", ".join(data["open_alerts"]) or "none"))
    if data["alert_changes"]:
        lines.append("recent alert changes:")
        lines += [f"  {c['at'][:19]} {c['reason']}"
                  for c in data["alert_changes"][-5:]]
    return "\n".join(lines + live)


def plot(data: dict[str, Any], path: Path) -> Path:
    """One panel per detector: score per batch (red dots where the batch drifted), its threshold
    (dashed) and the batches during which the alert was open (shaded)."""
    import matplotlib

    matplotlib.use("Agg")  # the daemon and CI have no display
    import matplotlib.pyplot as plt

    names = list(data["detectors"])
    timeline = data["timeline"]
    fig, axes = plt.subplots(len(names), 1, figsize=(9, 1.9 * len(names) + 0.6), sharex=True, squeeze=False)
    try:
        for ax, name in zip(axes[:, 0], names):
            points = [(i, t["results"][name]) for i, t in enumerate(timeline) if name in t["results"]]
            xs = [i for i, _ in points]
            ax.plot(xs, [r["score"] for _, r in points], marker="o", markersize=3, color="tab:blue", label="score")
            ax.step(xs, [r["threshold"] for _, r in points], where="mid", linestyle="--", color="grey",
                    label="threshold")
            hot = [(i, r["score"]) for i, r in points if r["drifted"]]
            if hot:
                ax.scatter(*zip(*hot), color="tab:red", zorder=3, s=18, label="drifted")
            for i, r in points:
                if r["alert"] == "open":
                    ax.axvspan(i - 0.5, i + 0.5, color="tab:red", alpha=0.12, linewidth=0)
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
            ax.grid(alpha=0.3)
        axes[0, 0].legend(loc="upper left", fontsize=7, ncol=3)
        axes[0, 0].set_title(f"cltool drift: {len(timeline)} batches (shaded = alert open)", fontsize=10)
        axes[-1, 0].set_xlabel("scored batch (oldest → newest)")
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
    finally:
        plt.close(fig)
    return path
