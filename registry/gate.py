"""The promotion gate: a pure function from two evaluation summaries to PROMOTE, REJECT or WAIT.

Candidate and champion were scored in the same process on the same rows, so their numbers can
be compared directly. Each rule is a small function returning one `Check`; `decide` runs them in
stages (enough rows? → sane? → better than the champion?) so a new rule is one function appended
to a list. No MLflow, no clock, no I/O here; the bootstrap's seed comes from the policy, so a
decision replays exactly.

A summary is `{"fresh": report, "regression": report | None, "train_loss": float | None}` and a
report is `{"n": int, "macro_f1": float | None, "recall": {label: float}, "pred_share": {label: float}, ...}`,
optionally with the per-row evidence `"y_true": [label, ...]` and `"y_pred": [label, ...]`.

With that evidence on both sides, the comparison rules use a paired bootstrap (registry/bootstrap.py)
instead of point estimates: a fresh gain must be *significant* (its interval's lower bound above
`min_fresh_gain`); an interval that straddles the bar means "within noise", which is WAIT while
fewer than `max_wait_rows` fresh rows have been seen and REJECT after. Reports stored before the
evidence existed still decide, on point estimates, and every such message says so.

Why forgetting is not "the drop's upper bound must be within budget": that rule would demand proof
of *no* forgetting, and the proof is not affordable. With a few hundred regression rows the 95%
interval of a paired macro-F1 difference is several points wide (±0.03 on 300 rows where the two
models disagree on ~10% of rows), so against a 1-point budget the upper bound exceeds it for nearly
every candidate that changes anything, and the gate would reject almost all of them. So the rule
rejects on *evidence of* forgetting: the point drop beyond budget (as before) or the interval's
lower bound beyond it (significant forgetting; nearly always implied by the former, stated
explicitly). The price, named honestly: on a small suite a candidate whose true drop is a few points
can pass when its point estimate happens to land within budget. The per-class recall floor and the
negative-flip budget catch the large, concentrated regressions; a larger `gate.regression_max_rows`
narrows the interval and is the lever for a tighter guarantee.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from registry.bootstrap import PairedGain, negative_flips as count_negative_flips, paired_gain
from registry.errors import InvalidDecisionError, InvalidPolicyError, InvalidSummaryError, MismatchedEvidenceError

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
    confidence: float = 0.95
    """Two-sided confidence of the paired bootstrap intervals."""
    bootstrap_samples: int = 1000
    """Resamples per paired bootstrap (about 60 ms per 1,000 on 2,000 rows, two CPU cores)."""
    seed: int = 0
    """Seed of the bootstrap's random generator: the same summaries and policy give the same Decision."""
    max_negative_flip_rate: float = 0.10
    """At most this share of rows (fresh + regression) may be right for the champion and wrong for the candidate."""
    max_wait_rows: int = 400
    """A fresh gain within noise WAITs for more rows until there are this many, then it is a REJECT."""

    def __post_init__(self) -> None:
        # (field, lowest, highest): ranges wide enough for any sane policy, narrow enough to
        # catch a percentage typed as 5 instead of 0.05.
        for name, low, high in (
            ("max_forgetting", 0.0, 1.0),
            ("min_fresh_gain", -1.0, 1.0),
            ("max_class_drop", 0.0, 1.0),
            ("first_model_min_macro_f1", 0.0, 1.0),
            ("confidence", 0.5, 0.999),
            ("max_negative_flip_rate", 0.0, 1.0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InvalidPolicyError(name, value, f"a number in [{low}, {high}]")
            if not low <= value <= high:  # also false for NaN
                raise InvalidPolicyError(name, value, f"a number in [{low}, {high}]")
        for name, low, high, expected in (
            ("min_fresh_rows", 1, None, "an integer >= 1"),
            ("bootstrap_samples", 100, 100_000, "an integer in [100, 100000]"),
            ("seed", 0, None, "an integer >= 0"),
        ):
            _check_int(name, getattr(self, name), low, high, expected)
        _check_int("max_wait_rows", self.max_wait_rows, self.min_fresh_rows, None,
                   f"an integer >= min_fresh_rows ({self.min_fresh_rows})")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check_int(name: str, value: object, low: int, high: int | None, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidPolicyError(name, value, expected)
    if value < low or (high is not None and value > high):
        raise InvalidPolicyError(name, value, expected)


@dataclass(frozen=True)
class Check:
    """One rule's verdict; `message` is the full human-readable line, numbers included.

    Three states: passed; not passed and `wait` (inconclusive: ask again with more rows); not passed
    and not `wait` (failed: a REJECT). `wait` is never set on a passed check.
    """

    rule: str
    passed: bool
    message: str
    wait: bool = False

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "wait" if self.wait else "fail"


@dataclass(frozen=True)
class Decision:
    outcome: str
    checks: tuple[Check, ...]

    @property
    def reasons(self) -> list[str]:
        return [check.message for check in self.checks]

    @property
    def failed(self) -> list[Check]:
        """Checks that failed outright (the reasons for a REJECT); inconclusive ones are in `waiting`."""
        return [check for check in self.checks if not check.passed and not check.wait]

    @property
    def waiting(self) -> list[Check]:
        return [check for check in self.checks if check.wait]

    def to_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "checks": [{"rule": c.rule, "passed": c.passed, "message": c.message, "wait": c.wait}
                       for c in self.checks],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        """Read `to_dict` output back; dicts written before checks had `wait` read as wait=False."""
        try:
            outcome = data["outcome"]
            checks = tuple(Check(str(c["rule"]), bool(c["passed"]), str(c["message"]), bool(c.get("wait", False)))
                           for c in data["checks"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidDecisionError(data, f"missing or malformed field {exc}") from exc
        if outcome not in OUTCOMES:
            raise InvalidDecisionError(data, f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        if any(c.passed and c.wait for c in checks):
            raise InvalidDecisionError(data, "a check is both passed and waiting")
        return cls(outcome, checks)


Rule = Callable[[Summary, Summary | None, GatePolicy], Check]


def _verdict(passed: bool) -> str:
    return "pass" if passed else "fail"


def _report(summary: Summary | None, part: str) -> Mapping[str, Any] | None:
    """The report for `part`, or None when absent or empty (no rows scored)."""
    report = (summary or {}).get(part)
    return report if report and report.get("n") else None


# Appended to a comparison message decided without per-row evidence.
POINT_ESTIMATE = "point estimate: no per-row evidence in the reports"


@dataclass(frozen=True)
class _Evidence:
    y_true: list[Any]
    new_pred: list[Any]
    old_pred: list[Any]
    labels: list[Any]


def _evidence(candidate: Summary, champion: Summary | None, part: str) -> _Evidence | None:
    """Both models' per-row predictions on `part`, or None when either report lacks them."""
    new, old = _report(candidate, part), _report(champion, part)
    if new is None or old is None or "y_true" not in new or "y_true" not in old:
        return None
    # Macro-F1 averages over every class the reports know (their recall keys), in that order, so a
    # class absent from these rows still counts, as in the reports' own macro_f1.
    labels = list(dict.fromkeys([*(new.get("recall") or {}), *(old.get("recall") or {})]))
    if not labels:
        labels = sorted({*new["y_true"], *new["y_pred"], *old["y_pred"]}, key=str)
    return _Evidence(list(new["y_true"]), list(new["y_pred"]), list(old["y_pred"]), labels)


def _bootstrap(evidence: _Evidence, policy: GatePolicy) -> PairedGain:
    return paired_gain(evidence.y_true, evidence.new_pred, evidence.old_pred, evidence.labels,
                       samples=policy.bootstrap_samples, confidence=policy.confidence, seed=policy.seed)


def _ci(low: float, high: float, policy: GatePolicy) -> str:
    return f"{round(policy.confidence * 100, 1):g}% CI {low:+.3f}..{high:+.3f}"


# ---- stage 1: is there enough evidence to decide at all? --------------------------------------


def enough_fresh_rows(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    n = int(candidate["fresh"].get("n") or 0)
    ok = n >= policy.min_fresh_rows
    verdict = "pass" if ok else "wait for more data"
    return Check("fresh_rows", ok, f"fresh test rows {n} ({'>=' if ok else '<'} {policy.min_fresh_rows} required): {verdict}",
                 wait=not ok)


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
    """The candidate must beat the champion on the fresh rows by min_fresh_gain: significantly,
    when there is per-row evidence; inconclusive evidence WAITs until max_wait_rows."""
    evidence, need = _evidence(candidate, champion, "fresh"), policy.min_fresh_gain
    if evidence is None:
        new, old = candidate["fresh"].get("macro_f1"), champion["fresh"].get("macro_f1")
        if new is None or old is None:
            return Check("fresh_gain", False, f"fresh macro-F1 missing (candidate {new}, champion {old}): fail")
        gain = new - old
        ok = gain >= need - _EPS
        return Check(
            "fresh_gain",
            ok,
            f"fresh macro-F1 {new:.3f} vs champion {old:.3f} ({gain:+.3f} {'>=' if ok else '<'} {need:+.3f}; "
            f"{POINT_ESTIMATE}): {_verdict(ok)}",
        )
    b = _bootstrap(evidence, policy)
    head, ci = f"fresh macro-F1 {b.new:.3f} vs champion {b.old:.3f}: ", _ci(b.low, b.high, policy)
    if b.low > need + _EPS:
        return Check("fresh_gain", True, f"{head}significant gain {b.gain:+.3f} ({ci} above {need:+.3f}) on {b.n} rows: pass")
    if b.high < need - _EPS:
        return Check("fresh_gain", False, f"{head}gain {b.gain:+.3f} ({ci} below {need:+.3f}) on {b.n} rows: "
                     "significantly short of the required gain: fail")
    noise = f"{head}gain {b.gain:+.3f} within noise ({ci} spans {need:+.3f})"
    if b.n < policy.max_wait_rows:
        return Check("fresh_gain", False, f"{noise} on {b.n} rows: keep accumulating "
                     f"(up to max_wait_rows {policy.max_wait_rows}): wait", wait=True)
    return Check("fresh_gain", False, f"{noise}: no significant gain on {b.n} rows "
                 f"(>= max_wait_rows {policy.max_wait_rows}): fail")


def forgetting(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    """Regression macro-F1 may drop at most max_forgetting: fails on the point drop or, with
    evidence, on the interval's lower bound (significant forgetting); see the module docstring."""
    new_report, old_report = _report(candidate, "regression"), _report(champion, "regression")
    if new_report is None or old_report is None:
        return Check("forgetting", True, "regression macro-F1: no regression rows yet: pass")
    budget = policy.max_forgetting
    evidence = _evidence(candidate, champion, "regression")
    if evidence is None:
        new, old = new_report.get("macro_f1"), old_report.get("macro_f1")
        if new is None or old is None:
            return Check("forgetting", False, f"regression macro-F1 missing (candidate {new}, champion {old}): fail")
        drop = old - new
        ok = drop <= budget + _EPS
        return Check(
            "forgetting",
            ok,
            f"regression macro-F1 {new:.3f} vs champion {old:.3f} (drop {drop:+.3f} "
            f"{'<=' if ok else '>'} {budget:.3f} allowed; {POINT_ESTIMATE}): {_verdict(ok)}",
        )
    b = _bootstrap(evidence, policy)
    # The drop's interval is the gain's, negated (0.0 - x, so no "-0.000" in the message).
    drop, drop_low, drop_high = (0.0 - value for value in (b.gain, b.high, b.low))
    point_ok, bound_ok = drop <= budget + _EPS, drop_low <= budget + _EPS
    ok = point_ok and bound_ok
    return Check(
        "forgetting",
        ok,
        f"regression macro-F1 {b.new:.3f} vs champion {b.old:.3f}: drop {drop:+.3f} "
        f"{'<=' if point_ok else '>'} {budget:.3f} allowed ({_ci(drop_low, drop_high, policy)}; lower bound "
        f"{'within budget' if bound_ok else 'above budget: significant forgetting'}) on {b.n} rows: {_verdict(ok)}",
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
            f"({0.0 - drops[label]:+.3f}, {'within' if ok else 'beyond'} -{policy.max_class_drop:.3f}): {_verdict(ok)}",
        )

    class_recall.__name__ = f"class_recall_{part}"
    return class_recall


def negative_flips(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Check:
    """Rows the champion got right and the candidate gets wrong, fresh and regression pooled, are
    at most max_negative_flip_rate of the rows: a user notices a newly wrong answer even when the
    averages improve."""
    counts = []
    for part in ("fresh", "regression"):
        evidence = _evidence(candidate, champion, part)
        if evidence is not None:
            counts.append((part, count_negative_flips(evidence.y_true, evidence.new_pred, evidence.old_pred),
                           len(evidence.y_true)))
    if not counts:
        return Check("negative_flips", True, f"negative flips: not judged ({POINT_ESTIMATE}): pass")
    flips, rows = sum(c[1] for c in counts), sum(c[2] for c in counts)
    rate, budget = flips / rows, policy.max_negative_flip_rate
    ok = rate <= budget + _EPS
    parts = ", ".join(f"{part} {f}/{n}" for part, f, n in counts)
    return Check(
        "negative_flips",
        ok,
        f"negative flips (champion right, candidate wrong) {flips} of {rows} rows = {rate:.1%} ({parts}) "
        f"{'<=' if ok else '>'} {budget:.1%} allowed: {_verdict(ok)}",
    )


# The rule lists, in the order their checks appear in a Decision. Append to extend the gate.
WAIT_RULES: list[Rule] = [enough_fresh_rows]
SANITY_RULES: list[Rule] = [train_loss_finite, predictions_not_collapsed]
FIRST_MODEL_RULES: list[Rule] = [first_model_floor]
CHAMPION_RULES: list[Rule] = [
    fresh_gain, forgetting, _class_recall("fresh"), _class_recall("regression"), negative_flips,
]


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
    for part in ("fresh", "regression"):
        report = summary.get(part)
        if not report or not ({"y_true", "y_pred"} & set(report)):
            continue
        if not {"y_true", "y_pred"} <= set(report):
            raise InvalidSummaryError(which, f"has a '{part}' report with only one of 'y_true' and 'y_pred'")
        for key in ("y_true", "y_pred"):
            rows = report[key]
            if isinstance(rows, (str, bytes)) or not hasattr(rows, "__len__") or len(rows) != report.get("n"):
                got = f"{len(rows)} rows" if hasattr(rows, "__len__") else type(rows).__name__
                raise InvalidSummaryError(which, f"has a '{part}' report whose '{key}' has {got} for n={report.get('n')}")


def _validate_pair(candidate: Summary, champion: Summary | None) -> None:
    """Paired evidence must be paired: the same true labels, row for row."""
    for part in ("fresh", "regression"):
        new, old = _report(candidate, part), _report(champion, part)
        if new is None or old is None or "y_true" not in new or "y_true" not in old:
            continue
        if len(new["y_true"]) != len(old["y_true"]):
            raise MismatchedEvidenceError(part, f"{len(new['y_true'])} candidate rows vs {len(old['y_true'])} champion rows")
        for i, (a, b) in enumerate(zip(new["y_true"], old["y_true"])):
            if a != b:
                raise MismatchedEvidenceError(part, f"row {i} is {a!r} for the candidate and {b!r} for the champion")


def _outcome(checks: tuple[Check, ...]) -> str:
    """Any failure rejects (even beside a WAIT: more rows cannot cure it); else any WAIT waits."""
    if any(not c.passed and not c.wait for c in checks):
        return REJECT
    return WAIT if any(c.wait for c in checks) else PROMOTE


def decide(candidate: Summary, champion: Summary | None, policy: GatePolicy) -> Decision:
    """PROMOTE, REJECT or WAIT, with one Check per rule that ran.

    WAIT stops at the row count (no point judging thin evidence); otherwise every rule of the
    applicable stages runs, so a rejection lists all of its reasons, not just the first. Outcome:
    any failed check → REJECT; else any inconclusive (`wait`) check → WAIT; else PROMOTE.
    """
    _validate(candidate, "candidate")
    _validate(champion, "champion")
    _validate_pair(candidate, champion)
    waits = [rule(candidate, champion, policy) for rule in WAIT_RULES]
    if not all(check.passed for check in waits):
        return Decision(WAIT, tuple(waits))
    rules = SANITY_RULES + (FIRST_MODEL_RULES if champion is None else CHAMPION_RULES)
    checks = tuple(waits) + tuple(rule(candidate, champion, policy) for rule in rules)
    return Decision(_outcome(checks), checks)
