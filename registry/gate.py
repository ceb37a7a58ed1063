"""The promotion gate: a pure function from two evaluation summaries to PROMOTE, REJECT or WAIT.

Candidate and champion were scored in the same process on the same rows, so their numbers can
be compared directly. Each rule is a small function returning one `Check`; `decide` runs them in
stages (enough rows? → sane? → better than the champion?) so a new rule (a paired bootstrap, a
flip-rate limit) is one function appended to a list. No MLflow, no clock, no I/O here.

A summary is `{"fresh": report, "regression": report | None, "train_loss": float | None}` and a
report is `{"n": int, "macro_f1": float | None, "recall": {label: float}, "pred_share": {label: float}, ...}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from registry.errors import InvalidDecisionError, InvalidPolicyError, InvalidSummaryError

PROMOTE, REJECT, WAIT = "PROMOTE", "REJECT", "WAIT"
OUTCOMES = (PROMOTE, REJECT, WAIT)

# Scores are averages of counts, so 0.80 - 0.79 comes out as 0.010000000000000009; a limit that
# reads "at most 0.01" must let that through.
_EPS = 1e-9
# A model predicting one class for ≥99% of rows has collapsed, whatever its F1 looks like; below
# 20 rows one class can honestly take that share, so the check needs at least that many.
COLLAPSED_SHARE = 0.99
COLLAPSE_MIN_ROWS = 20

Summary = Mapping[str, Any]


@dataclass(frozen=True)
class GatePolicy:
    """How much better a candidate must be, and how much worse it may be, to replace the champion."""

    max_forgetting: float = 0.01
    """Regression-suite macro-F1 may drop at most this much (absolute) against the champion."""
    min_fresh_gain: float = 0.0
    """Candidate fresh macro-F1 must be at least the champion's plus this (may be negative)."""
    max_class_drop: float = 0.25
    """No single class recall may drop more than this against the champion ("collapse")."""
    first_model_min_macro_f1: float = 0.4
    """Absolute fresh macro-F1 floor for the very first champion, when there is none to beat."""
    min_fresh_rows: int = 20
    """With fewer fresh test rows than this the evidence is too thin: WAIT for more data."""

    def __post_init__(self) -> None:
        # (field, lowest, highest): ranges wide enough for any sane policy, narrow enough to
        # catch a percentage typed as 5 instead of 0.05.
        for name, low, high in (
            ("max_forgetting", 0.0, 1.0),
            ("min_fresh_gain", -1.0, 1.0),
            ("max_class_drop", 0.0, 1.0),
            ("first_model_min_macro_f1", 0.0, 1.0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidPolicyError(name, value, f"a number in [{low}, {high}]")
            if not low <= value <= high:  # also false for NaN
                raise InvalidPolicyError(name, value, f"a number in [{low}, {high}]")
        rows = self.min_fresh_rows
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 1:
            raise InvalidPolicyError("min_fresh_rows", rows, "an integer >= 1")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class Check:
    """One rule's verdict; `message` is the full human-readable line, numbers included."""

    rule: str
    passed: bool
    message: str


@dataclass(frozen=True)
class Decision:
    outcome: str
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        return [check.message for check in self.checks]

    @property
    def failed(self) -> list[Check]:
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "checks": [{"rule": c.rule, "passed": c.passed, "message": c.message} for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        try:
            outcome = data["outcome"]
            checks = tuple(Check(str(c["rule"]), bool(c["passed"]), str(c["message"])) for c in data["checks"])
        except (KeyError, TypeError) as exc:
            raise InvalidDecisionError(data, f"missing or malformed field {exc}") from exc
        if outcome not in OUTCOMES:
            raise InvalidDecisionError(data, f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        return cls(outcome, checks)


Rule = Callable[[Summary, Summary | None, GatePolicy], Check]


def _verdict(passed: bool) -> str:
    return "pass" if passed else "fail"


def _report(summary: Summary | None, part: str) -> Mapping[str, Any] | None:
    """The report for `part`, or None when absent or empty (no rows scored)."""
    report = (summary or {}).get(part)
    return report if report and report.get("n") else None


# ---- stage 1: is there enough evidence to decide at all? --------------------------------------


def enough_fresh_rows(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    n = int(candidate["fresh"].get("n") or 0)
    ok = n >= policy.min_fresh_rows
    verdict = "pass" if ok else "wait for more data"
    return Check("fresh_rows", ok, f"fresh test rows {n} ({'>=' if ok else '<'} {policy.min_fresh_rows} required): {verdict}")


# ---- stage 2: is the candidate sane on its own? -------------------------------------------------


def train_loss_finite(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    loss = candidate.get("train_loss")
    if loss is None:
        return Check("train_loss", True, "train loss not reported: pass")
    ok = math.isfinite(float(loss))
    return Check("train_loss", ok, f"train loss {float(loss):.4f} {'is' if ok else 'is not'} finite: {_verdict(ok)}")


def predictions_not_collapsed(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    parts = []
    ok = True
    for part in ("fresh", "regression"):
        report = _report(candidate, part)
        if report is None or report["n"] < COLLAPSE_MIN_ROWS or not report.get("pred_share"):
            continue
        label, share = max(report["pred_share"].items(), key=lambda item: item[1])
        part_ok = share < COLLAPSED_SHARE
        ok &= part_ok
        parts.append(f"{part} {share:.1%} '{label}'")
    if not parts:
        return Check("prediction_mix", True, f"prediction mix: fewer than {COLLAPSE_MIN_ROWS} rows to judge: pass")
    return Check(
        "prediction_mix",
        ok,
        f"largest predicted-class share {'; '.join(parts)} (must be < {COLLAPSED_SHARE:.0%}): {_verdict(ok)}",
    )


# ---- stage 3a: the very first model only has an absolute floor ----------------------------------


def first_model_floor(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    f1 = candidate["fresh"].get("macro_f1")
    floor = policy.first_model_min_macro_f1
    if f1 is None:
        return Check("first_model_floor", False, "fresh macro-F1 missing, no champion yet: fail")
    ok = f1 >= floor - _EPS
    return Check(
        "first_model_floor",
        ok,
        f"fresh macro-F1 {f1:.3f} with no champion yet ({'>=' if ok else '<'} floor {floor:.3f}): {_verdict(ok)}",
    )


# ---- stage 3b: against the champion, on the same rows -------------------------------------------


def fresh_gain(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    new, old = candidate["fresh"].get("macro_f1"), champion["fresh"].get("macro_f1")
    if new is None or old is None:
        return Check("fresh_gain", False, f"fresh macro-F1 missing (candidate {new}, champion {old}): fail")
    gain, need = new - old, policy.min_fresh_gain
    ok = gain >= need - _EPS
    return Check(
        "fresh_gain",
        ok,
        f"fresh macro-F1 {new:.3f} vs champion {old:.3f} ({gain:+.3f} {'>=' if ok else '<'} {need:+.3f}): {_verdict(ok)}",
    )


def forgetting(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    new_report, old_report = _report(candidate, "regression"), _report(champion, "regression")
    if new_report is None or old_report is None:
        return Check("forgetting", True, "regression macro-F1: no regression rows yet: pass")
    new, old = new_report.get("macro_f1"), old_report.get("macro_f1")
    if new is None or old is None:
        return Check("forgetting", False, f"regression macro-F1 missing (candidate {new}, champion {old}): fail")
    drop, budget = old - new, policy.max_forgetting
    ok = drop <= budget + _EPS
    return Check(
        "forgetting",
        ok,
        f"regression macro-F1 {new:.3f} vs champion {old:.3f} (drop {drop:+.3f} "
        f"{'<=' if ok else '>'} {budget:.3f} allowed): {_verdict(ok)}",
    )


def _class_recall(part: str) -> Rule:
    """A rule that no class's recall on `part` fell by more than max_class_drop."""

    def class_recall(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
        name = f"class_recall_{part}"
        new_report, old_report = _report(candidate, part), _report(champion, part)
        if new_report is None or old_report is None:
            return Check(name, True, f"class recall on {part}: no {part} rows yet: pass")
        new, old = new_report.get("recall") or {}, old_report.get("recall") or {}
        # A class absent from these rows has recall None on both sides: nothing to compare.
        drops = {
            label: old[label] - new[label]
            for label in sorted(set(new) & set(old))
            if new[label] is not None and old[label] is not None
        }
        if not drops:
            return Check(name, True, f"class recall on {part}: no class with true rows on both sides: pass")
        label = max(drops, key=drops.get)
        ok = drops[label] <= policy.max_class_drop + _EPS
        return Check(
            name,
            ok,
            f"class recall on {part}: largest drop '{label}' {old[label]:.3f} -> {new[label]:.3f} "
            f"({-drops[label]:+.3f}, {'within' if ok else 'beyond'} -{policy.max_class_drop:.3f}): {_verdict(ok)}",
        )

    class_recall.__name__ = f"class_recall_{part}"
    return class_recall


# The rule lists, in the order their checks appear in a Decision. Append to extend the gate.
WAIT_RULES: list[Rule] = [enough_fresh_rows]
SANITY_RULES: list[Rule] = [train_loss_finite, predictions_not_collapsed]
FIRST_MODEL_RULES: list[Rule] = [first_model_floor]
CHAMPION_RULES: list[Rule] = [fresh_gain, forgetting, _class_recall("fresh"), _class_recall("regression")]


def _validate(summary: Summary | None, which: str) -> None:
    if summary is None:
        return
    if not isinstance(summary, Mapping):
        raise InvalidSummaryError(which, f"is a {type(summary).__name__}, not a mapping")
    fresh = summary.get("fresh")
    if not isinstance(fresh, Mapping):
        raise InvalidSummaryError(which, "has no 'fresh' report")
    if "n" not in fresh:
        raise InvalidSummaryError(which, "has a 'fresh' report without 'n'")


def decide(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Decision:
    """PROMOTE, REJECT or WAIT, with one Check per rule that ran.

    WAIT stops at the row count (no point judging thin evidence); otherwise every rule of the
    applicable stages runs, so a rejection lists all of its reasons, not just the first.
    """
    _validate(candidate, "candidate")
    _validate(champion, "champion")
    waits = [rule(candidate, champion, policy) for rule in WAIT_RULES]
    if not all(check.passed for check in waits):
        return Decision(WAIT, tuple(waits))
    rules = SANITY_RULES + (FIRST_MODEL_RULES if champion is None else CHAMPION_RULES)
    checks = tuple(waits) + tuple(rule(candidate, champion, policy) for rule in rules)
    return Decision(PROMOTE if all(check.passed for check in checks) else REJECT, checks)
