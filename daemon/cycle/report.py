"""What a cycle writes for people: flat MLflow metrics and the version's Markdown description."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from registry.evidence import EvaluationReport
from registry.gate import Decision

Summaries = Mapping[str, EvaluationReport | None]  # {"candidate": report, "champion": report or None}


def metrics_of(summaries: Summaries, on_fresh, on_regression, result, labels: list[str]) -> dict[str, float]:
    """Flat numeric metrics for the MLflow run (None and NaN left out: MLflow wants finite numbers)."""
    cand, champ = summaries["candidate"], summaries["champion"]
    metrics: dict[str, Any] = {
        "fresh_macro_f1": cand.fresh.macro_f1, "fresh_accuracy": cand.fresh.accuracy,
        "fresh_rows": cand.fresh.n, "train_loss": result.train_loss, "train_samples": result.samples_seen,
        "train_seconds": result.seconds, "epochs_run": result.epochs_run,
        "negative_flip_rate": on_fresh.negative_flip_rate,
    }
    for label in labels:
        metrics[f"fresh_recall_{label}"] = cand.fresh.recall.get(label)
    if cand.regression:
        metrics.update(regression_macro_f1=cand.regression.macro_f1,
                       regression_accuracy=cand.regression.accuracy, regression_rows=cand.regression.n)
    if champ:
        metrics["champion_fresh_macro_f1"] = champ.fresh.macro_f1
        if champ.regression:
            metrics["champion_regression_macro_f1"] = champ.regression.macro_f1
        if on_regression is not None and on_regression.negative_flip_rate is not None:
            metrics["regression_negative_flip_rate"] = on_regression.negative_flip_rate
    return {k: float(v) for k, v in metrics.items() if v is not None and math.isfinite(float(v))}


def describe(decision: Decision, summaries: Summaries, champion_version: str | None,
             lineage: dict[str, Any]) -> str:
    """Markdown for the registered version: candidate vs champion on every metric, then the decision."""
    cand, champ = summaries["candidate"], summaries["champion"]
    against = f"champion v{champion_version}" if champion_version else "no champion (first model)"
    lines = [f"**Decision: {decision.outcome}** (against {against})", "",
             "| metric | candidate | champion | delta |", "|---|---|---|---|"]
    for suite in ("fresh", "regression"):
        report = cand.scored(suite)
        if report is None:
            continue
        other = champ.scored(suite) if champ else None
        rows = [(f"{suite} macro-F1", report.macro_f1, other.macro_f1 if other else None),
                (f"{suite} accuracy", report.accuracy, other.accuracy if other else None)]
        rows += [(f"{suite} recall {label}", value, other.recall.get(label) if other else None)
                 for label, value in report.recall.items()]
        for name, mine, theirs in rows:
            delta = f"{mine - theirs:+.3f}" if mine is not None and theirs is not None else "—"
            lines.append(f"| {name} (n={report.n}) | {_fmt(mine)} | {_fmt(theirs)} | {delta} |")
    lines += ["", "**Reasons**", ""] + [f"- {reason}" for reason in decision.reasons]
    batches = ", ".join(f"`{b['batch_id']}` ({b['file']}, {b['rows_accepted']} rows)" for b in lineage["batches"])
    lines += ["", "**Data**", "",
              f"- trained from {lineage['init_from']} on {lineage['new_train_rows']} new + "
              f"{lineage['replay_rows']} replay rows; early-stopped on {lineage['val_rows']} val rows",
              f"- batches: {batches}",
              f"- evaluated on {lineage['fresh_rows']} fresh test rows and {lineage['regression_rows']} "
              "regression rows (test rows of earlier batches)"]
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"
