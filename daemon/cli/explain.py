"""`cltool explain VERSION`: replay a stored decision from the version's own artifacts.

The eval report holds both models' per-row predictions and the config holds the gate policy the
decision was made under, so running the pure gate again must give the same outcome and reasons.
A mismatch means the gate's code changed since, and is reported as such.
"""

from __future__ import annotations

from typing import Any

from daemon import events
from daemon.context import Context
from daemon.cycle.run import gate_policy
from daemon.errors import VersionRemovedError
from registry.errors import UnknownVersionError
from registry.evidence import EvaluationReport
from registry.gate import Decision, decide


def explain(ctx: Context, version: str) -> dict[str, Any]:
    try:
        info = ctx.registry.get_version(version)
    except UnknownVersionError:
        removed = [e for e in ctx.store.events(types=[events.MODEL_REMOVED]) if e.version == str(version)]
        if removed:
            raise VersionRemovedError(str(version), removed[-1].reason) from None
        raise
    report = ctx.registry.read_json_artifact(version, "eval_report")
    config = ctx.registry.read_json_artifact(version, "config")
    stored = Decision.from_dict(report["decision"])
    candidate = EvaluationReport.from_dict(report["candidate"], "candidate")
    champion = None if report["champion"] is None else EvaluationReport.from_dict(report["champion"], "champion")
    replayed = decide(candidate, champion, gate_policy(config.get("gate", {})))
    return {
        "version": info.version, "aliases": list(info.aliases), "parent_version": info.tags.get("cltool.parent_version"),
        "outcome": stored.outcome, "reasons": stored.reasons,
        "replayed_outcome": replayed.outcome, "replayed_reasons": replayed.reasons,
        "reproduced": replayed.outcome == stored.outcome and replayed.reasons == stored.reasons,
        "current_tag": info.tags.get("cltool.decision"),
    }


def render(data: dict[str, Any]) -> str:
    aliases = f" ({', '.join(data['aliases'])})" if data["aliases"] else ""
    lines = [f"version {data['version']}{aliases}: {data['outcome']} against v{data['parent_version']}"]
    lines += [f"  - {reason}" for reason in data["reasons"]]
    if data["reproduced"]:
        lines.append("replayed from the stored eval report and config: same decision, same reasons")
    else:
        lines.append(f"replayed decision DIFFERS: {data['replayed_outcome']} (the gate's code changed since?)")
        lines += [f"  - {reason}" for reason in data["replayed_reasons"]]
    if data["current_tag"] and data["current_tag"] != data["outcome"]:
        lines.append(f"note: the version's tag now says {data['current_tag']} (changed after the decision)")
    return "\n".join(lines)
