"""The promotion gate: a pure function from two evaluation summaries to PROMOTE, REJECT or WAIT.

Candidate and champion were scored in the same process on the same rows, so their numbers can
be compared directly. Each rule is a small function returning one `Check`; `decide` runs them in
stages (enough rows? → sane? → better than the champion?) so a new rule is one function appended
to a list. No MLflow, no clock, no I/O here; the bootstrap's seed comes from the policy, so a
decision replays exactly.

Each side is an `EvaluationReport` (registry/evidence.py): a fresh and a regression `PartReport`,
each with the per-row evidence `y_true` and `y_pred`, checked when the report was built; the policy
is a `GatePolicy` (registry/policy.py).

With that evidence on both sides, the comparison rules use a paired bootstrap (registry/bootstrap.py):
a fresh gain must be *significant* (its interval's lower bound above `min_fresh_gain`); an interval
that straddles the bar means "within noise", which is WAIT while fewer than `max_wait_rows` fresh
rows have been seen and REJECT after (a candidate with the champion's very predictions on every
fresh row has nothing to wait for: REJECT at once). A batch brings few fresh test rows (about 60 of 600), so with
`pool_regression` a fresh gain within noise is also judged on the fresh and regression rows together:
a significant gain there, with a fresh point gain that meets the bar, promotes (the forgetting rule
still guards the old rows on their own).

Negative flips are weighed against what they buy: churn between two models of 65-70 % macro-F1 is
large both ways, so the rule compares the rows the candidate broke (the champion was right) with the
rows it fixed, by an exact sign test on the two counts (McNemar's test), and keeps a cap on the broken
share for updates too disruptive to ship whatever they fix.

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
from dataclasses import dataclass
from typing import Any

from registry.bootstrap import PairedGain, paired_gain
from registry.bootstrap import negative_flips as count_negative_flips
from registry.errors import InvalidDecisionError, InvalidSummaryError
from registry.evidence import EvaluationReport, PartReport, check_paired
from registry.policy import GatePolicy

PROMOTE, REJECT, WAIT = "PROMOTE", "REJECT", "WAIT"
OUTCOMES = (PROMOTE, REJECT, WAIT)

# Scores are averages of counts, so 0.80 - 0.79 comes out as 0.010000000000000009; a limit that
# reads "at most 0.01" must let that through.
_EPS = 1e-9
# A model predicting one class for ≥99% of rows has collapsed, whatever its F1 looks like; below
# 20 rows one class can honestly take that share, so the check needs at least that many.
COLLAPSED_SHARE = 0.99
COLLAPSE_MIN_ROWS = 20


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
        """Read `to_dict` output back."""
        try:
            outcome = data["outcome"]
            checks = tuple(Check(str(c["rule"]), bool(c["passed"]), str(c["message"]), bool(c["wait"]))
                           for c in data["checks"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise InvalidDecisionError(data, f"missing or malformed field {exc}") from exc
        if outcome not in OUTCOMES:
            raise InvalidDecisionError(data, f"outcome {outcome!r} is not one of {', '.join(OUTCOMES)}")
        if any(c.passed and c.wait for c in checks):
            raise InvalidDecisionError(data, "a check is both passed and waiting")
        return cls(outcome, checks)


Rule = Callable[[EvaluationReport, EvaluationReport | None, GatePolicy], Check]


def _verdict(passed: bool) -> str:
    return "pass" if passed else "fail"


def _bootstrap(new: PartReport, old: PartReport, policy: GatePolicy) -> PairedGain:
    """The paired bootstrap of new − old macro-F1 on one part's rows (decide checked they are the same rows)."""
    # Macro-F1 averages over every class the reports know (their recall keys), in that order, so a
    # class absent from these rows still counts, as in the reports' own macro_f1.
    labels = list(dict.fromkeys([*new.recall, *old.recall]))
    if not labels:
        labels = sorted({*new.y_true, *new.y_pred, *old.y_pred}, key=str)
    return paired_gain(new.y_true, new.y_pred, old.y_pred, labels,
                       samples=policy.bootstrap_samples, confidence=policy.confidence, seed=policy.seed)


def _pooled_gain(candidate: EvaluationReport, champion: EvaluationReport, policy: GatePolicy) -> PairedGain | None:
    """The paired bootstrap on the fresh and regression rows together, or None without regression rows."""
    new_reg, old_reg = candidate.scored("regression"), champion.scored("regression")
    if new_reg is None or old_reg is None:
        return None
    new, old = candidate.fresh, champion.fresh
    labels = list(dict.fromkeys([*new.recall, *old.recall, *new_reg.recall, *old_reg.recall]))
    return paired_gain(new.y_true + new_reg.y_true, new.y_pred + new_reg.y_pred, old.y_pred + old_reg.y_pred,
                       labels, samples=policy.bootstrap_samples, confidence=policy.confidence, seed=policy.seed)


def _ci(low: float, high: float, policy: GatePolicy) -> str:
    return f"{round(policy.confidence * 100, 1):g}% CI {low:+.3f}..{high:+.3f}"


# ---- stage 1: is there enough evidence to decide at all? --------------------------------------


def enough_fresh_rows(candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy) -> Check:
    n = candidate.fresh.n
    ok = n >= policy.min_fresh_rows
    verdict = "pass" if ok else "wait for more data"
    return Check("fresh_rows", ok, f"fresh test rows {n} ({'>=' if ok else '<'} {policy.min_fresh_rows} required): {verdict}",
                 wait=not ok)


# ---- stage 2: is the candidate sane on its own? -------------------------------------------------


def train_loss_finite(candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy) -> Check:
    loss = candidate.train_loss
    if loss is None:
        return Check("train_loss", True, "train loss not reported: pass")
    ok = math.isfinite(float(loss))
    return Check("train_loss", ok, f"train loss {float(loss):.4f} {'is' if ok else 'is not'} finite: {_verdict(ok)}")


def predictions_not_collapsed(
    candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy
) -> Check:
    parts = []
    ok = True
    for part in ("fresh", "regression"):
        report = candidate.scored(part)
        if report is None or report.n < COLLAPSE_MIN_ROWS or not report.pred_share:
            continue
        label, share = max(report.pred_share.items(), key=lambda item: item[1])
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


def first_model_floor(candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy) -> Check:
    f1 = candidate.fresh.macro_f1
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


def fresh_gain(candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy) -> Check:
    """The candidate must beat the champion on the fresh rows by min_fresh_gain: significantly,
    on the paired bootstrap; inconclusive evidence WAITs until max_wait_rows."""
    need = policy.min_fresh_gain
    b = _bootstrap(candidate.fresh, champion.fresh, policy)
    head, ci = f"fresh macro-F1 {b.new:.3f} vs champion {b.old:.3f}: ", _ci(b.low, b.high, policy)
    if b.low > need + _EPS:
        return Check("fresh_gain", True, f"{head}significant gain {b.gain:+.3f} ({ci} above {need:+.3f}) on {b.n} rows: pass")
    floor = need - policy.fresh_margin
    if policy.fresh_margin > 0 and b.gain > need + _EPS and b.low > floor + _EPS:
        return Check("fresh_gain", True, f"{head}gain {b.gain:+.3f}, not significant ({ci}) but not worse than "
                     f"{floor:+.3f} (fresh_margin {policy.fresh_margin:.3f}) on {b.n} rows: pass")
    if b.high < need - _EPS:
        return Check("fresh_gain", False, f"{head}gain {b.gain:+.3f} ({ci} below {need:+.3f}) on {b.n} rows: "
                     "significantly short of the required gain: fail")
    noise = f"{head}gain {b.gain:+.3f} within noise ({ci} spans {need:+.3f})"
    pooled = _pooled_gain(candidate, champion, policy) if policy.pool_regression else None
    if pooled is not None and b.gain >= need - _EPS and pooled.low > need + _EPS:
        return Check("fresh_gain", True, f"{noise} on {b.n} rows; with the regression rows, a significant gain "
                     f"{pooled.gain:+.3f} ({_ci(pooled.low, pooled.high, policy)} above {need:+.3f}) on {pooled.n} "
                     "rows: pass")
    if candidate.fresh.y_pred == champion.fresh.y_pred:
        # Not noise but no difference at all: waiting would retrain on every new file until max_wait_rows.
        return Check("fresh_gain", False, f"{head}the same prediction as the champion on all {b.n} fresh rows: "
                     "no gain to wait for: fail")
    if b.n < policy.max_wait_rows:
        return Check("fresh_gain", False, f"{noise} on {b.n} rows: keep accumulating "
                     f"(up to max_wait_rows {policy.max_wait_rows}): wait", wait=True)
    return Check("fresh_gain", False, f"{noise}: no significant gain on {b.n} rows "
                 f"(>= max_wait_rows {policy.max_wait_rows}): fail")


def forgetting(candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy) -> Check:
    """Regression macro-F1 may drop at most max_forgetting: fails on the point drop or on the
    interval's lower bound (significant forgetting); see the module docstring."""
    new_report, old_report = candidate.scored("regression"), champion.scored("regression")
    if new_report is None or old_report is None:
        return Check("forgetting", True, "regression macro-F1: no regression rows yet: pass")
    budget = policy.max_forgetting
    b = _bootstrap(new_report, old_report, policy)
    # The drop's interval is the gain's, negated (0.0 - x, so no "-0.000" in the message).
    drop, drop_low, drop_high = (0.0 - value for value in (b.gain, b.high, b.low))
    point_ok, bound_ok = drop <= budget + _EPS, drop_low <= budget + _EPS
    ok = point_ok and bound_ok
    head = f"regression macro-F1 {b.new:.3f} vs champion {b.old:.3f}: "
    if drop < 0:  # no forgetting at all: say what it is, a gain, with its sign
        return Check("forgetting", ok, f"{head}gain {b.gain:+.3f}, no drop ({_ci(b.low, b.high, policy)} of the "
                     f"gain; at most {budget:.3f} drop allowed) on {b.n} rows: {_verdict(ok)}")
    return Check(
        "forgetting",
        ok,
        f"{head}drop {drop:+.3f} {'<=' if point_ok else '>'} {budget:.3f} allowed ({_ci(drop_low, drop_high, policy)}; "
        f"lower bound {'within budget' if bound_ok else 'above budget: significant forgetting'}) "
        f"on {b.n} rows: {_verdict(ok)}",
    )


def _class_recall(part: str) -> Rule:
    """A rule that no class's recall on `part` fell by more than max_class_drop."""

    def class_recall(candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy) -> Check:
        name = f"class_recall_{part}"
        new_report, old_report = candidate.scored(part), champion.scored(part)
        if new_report is None or old_report is None:
            return Check(name, True, f"class recall on {part}: no {part} rows yet: pass")
        new, old = new_report.recall, old_report.recall
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


def negative_flips(candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy) -> Check:
    """Rows the candidate broke (the champion was right, the candidate is wrong) against rows it fixed,
    fresh and regression pooled. Fails when significantly more rows broke than were fixed (an exact
    one-sided sign test on the two counts at (1 - confidence) / 2, McNemar's test), or when the broken
    rows exceed max_negative_flip_rate of all rows: an update that disruptive is not shipped on averages."""
    broken = fixed = rows = 0
    parts = []
    for part in ("fresh", "regression"):
        new, old = candidate.scored(part), champion.scored(part)
        if new is not None and old is not None:
            part_broken = count_negative_flips(new.y_true, new.y_pred, old.y_pred)
            part_fixed = count_negative_flips(new.y_true, old.y_pred, new.y_pred)  # the same count, the other way
            broken, fixed, rows = broken + part_broken, fixed + part_fixed, rows + new.n
            parts.append(f"{part} {part_broken}/{part_fixed}")
    rate, cap, alpha = broken / rows, policy.max_negative_flip_rate, (1 - policy.confidence) / 2
    p_value = sign_test(broken, fixed)
    within_cap, not_worse = rate <= cap + _EPS, p_value >= alpha
    net = f"net {fixed - broken:+d} rows right" if fixed != broken else "as many fixed as broken"
    verdict = ("more broken than fixed is not significant" if not_worse
               else "significantly more broken than fixed")
    return Check(
        "negative_flips",
        within_cap and not_worse,
        f"negative flips: {broken} rows broken, {fixed} fixed of {rows} ({net}; broken/fixed {', '.join(parts)}); "
        f"{verdict} (sign test p={p_value:.3f}, alpha {alpha:g}); broken {rate:.1%} "
        f"{'<=' if within_cap else '>'} {cap:.1%} allowed: {_verdict(within_cap and not_worse)}",
    )


def sign_test(broken: int, fixed: int) -> float:
    """One-sided exact p-value that a coin fair between "broken" and "fixed" gives at least `broken` of
    the `broken + fixed` changed rows (1.0 when no row changed)."""
    n = broken + fixed
    return sum(math.comb(n, k) for k in range(broken, n + 1)) / 2**n if n else 1.0


# The rule lists, in the order their checks appear in a Decision. Append to extend the gate.
WAIT_RULES: list[Rule] = [enough_fresh_rows]
SANITY_RULES: list[Rule] = [train_loss_finite, predictions_not_collapsed]
FIRST_MODEL_RULES: list[Rule] = [first_model_floor]
CHAMPION_RULES: list[Rule] = [
    fresh_gain, forgetting, _class_recall("fresh"), _class_recall("regression"), negative_flips,
]


def _outcome(checks: tuple[Check, ...]) -> str:
    """Any failure rejects (even beside a WAIT: more rows cannot cure it); else any WAIT waits."""
    if any(not c.passed and not c.wait for c in checks):
        return REJECT
    return WAIT if any(c.wait for c in checks) else PROMOTE


def decide(candidate: EvaluationReport, champion: EvaluationReport | None, policy: GatePolicy) -> Decision:
    """PROMOTE, REJECT or WAIT, with one Check per rule that ran.

    WAIT stops at the row count (no point judging thin evidence); otherwise every rule of the
    applicable stages runs, so a rejection lists all of its reasons, not just the first. Outcome:
    any failed check → REJECT; else any inconclusive (`wait`) check → WAIT; else PROMOTE.
    """
    for which, report in (("candidate", candidate), ("champion", champion)):
        if not isinstance(report, EvaluationReport) and not (which == "champion" and report is None):
            raise InvalidSummaryError(f"{which} evaluation summary", f"is a {type(report).__name__}, "
                                      "not an EvaluationReport (registry/evidence.py)")
    check_paired(candidate, champion)
    waits = [rule(candidate, champion, policy) for rule in WAIT_RULES]
    if not all(check.passed for check in waits):
        return Decision(WAIT, tuple(waits))
    rules = SANITY_RULES + (FIRST_MODEL_RULES if champion is None else CHAMPION_RULES)
    checks = tuple(waits) + tuple(rule(candidate, champion, policy) for rule in rules)
    return Decision(_outcome(checks), checks)
