"""The gate with per-row evidence: paired bootstrap, WAIT within noise, flips, a poisoned batch.

Every scenario is built by hand from which rows each model gets right, so the right outcome is
known before the gate runs.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from registry.errors import InvalidDecisionError, InvalidPolicyError, InvalidSummaryError, MismatchedEvidenceError
from registry.evidence import EvaluationReport
from registry.gate import Check, Decision, GatePolicy, decide
from tests.registry.conftest import pair, scored, truth, wrong_on

# The rules' mechanics at fixed thresholds (the shipped defaults come from bench/gate_bench.py).
POLICY = GatePolicy(max_forgetting=0.01, fresh_margin=0.0)
SWAP = {"negative": "positive", "positive": "negative", "neutral": "neutral"}


def check(decision: Decision, rule: str) -> Check:
    [found] = [c for c in decision.checks if c.rule == rule]
    return found


def tiny_gain(n: int):
    """Per 60 rows the candidate fixes 3 of the champion's errors and breaks 2 of its right answers."""
    y = truth(n)
    champ_wrong = [r for block in range(0, n, 60) for r in range(block, block + 12)]
    cand_wrong = [r for block in range(0, n, 60) for r in [*range(block + 3, block + 12), block + 30, block + 31]]
    return pair(y, wrong_on(y, cand_wrong), wrong_on(y, champ_wrong))


# ---- fresh gain ---------------------------------------------------------------------------------


def test_significant_gain_promotes():
    y, reg = truth(300), truth(150)
    candidate, champion = pair(y, wrong_on(y, range(30)), wrong_on(y, range(90)),
                               reg, wrong_on(reg, range(15)), wrong_on(reg, range(15)))
    decision = decide(candidate, champion, POLICY)
    assert decision.outcome == "PROMOTE", decision.reasons
    gain = check(decision, "fresh_gain")
    assert gain.message.startswith("fresh macro-F1 0.900 vs champion 0.700: significant gain +0.200 (95% CI +0.")
    assert gain.message.endswith("above +0.000) on 300 rows: pass")
    assert check(decision, "forgetting").message == (
        "regression macro-F1 0.900 vs champion 0.900: drop +0.000 <= 0.010 allowed "
        "(95% CI +0.000..+0.000; lower bound within budget) on 150 rows: pass"
    )


def test_tiny_gain_on_few_rows_waits_within_noise():
    decision = decide(*tiny_gain(60), POLICY)
    assert decision.outcome == "WAIT", decision.reasons
    gain = check(decision, "fresh_gain")
    assert gain.wait and not gain.passed and decision.waiting == [gain] and decision.failed == []
    assert "gain +0.017 within noise (95% CI -" in gain.message
    assert gain.message.endswith("spans +0.000) on 60 rows: keep accumulating (up to max_wait_rows 400): wait")


def test_same_tiny_gain_on_many_rows_rejects():
    decision = decide(*tiny_gain(600), GatePolicy(max_wait_rows=400, fresh_margin=0.0))
    assert decision.outcome == "REJECT", decision.reasons
    gain = check(decision, "fresh_gain")
    assert not gain.passed and not gain.wait
    assert "gain +0.017 within noise (95% CI -" in gain.message
    assert gain.message.endswith(": no significant gain on 600 rows (>= max_wait_rows 400): fail")
    assert decision.failed == [gain]


def test_the_same_predictions_as_the_champion_reject_rather_than_wait():
    # Two models that agree on every fresh row: no number of further rows of the kind can show a gain,
    # and a WAIT would retrain on every new file until max_wait_rows (seen with perfect toy models).
    y = truth(60)
    for wrong in ([], list(range(12))):
        decision = decide(*pair(y, wrong_on(y, wrong), wrong_on(y, wrong)), POLICY)
        assert decision.outcome == "REJECT", decision.reasons
        gain = check(decision, "fresh_gain")
        assert not gain.wait and not gain.passed
        assert gain.message.endswith("the same prediction as the champion on all 60 fresh rows: no gain to wait for: fail")


def test_the_same_predictions_still_pass_a_negative_bar_or_a_pooled_gain():
    y, reg = truth(60), truth(300)
    same = pair(y, wrong_on(y, range(12)), wrong_on(y, range(12)))
    assert check(decide(*same, GatePolicy(min_fresh_gain=-0.01, fresh_margin=0.0)), "fresh_gain").passed
    # A tie on the fresh rows, a significant gain once the regression rows join them.
    pooled = pair(y, wrong_on(y, range(12)), wrong_on(y, range(12)), reg, wrong_on(reg, range(3)), wrong_on(reg, range(60)))
    decision = decide(*pooled, GatePolicy(max_forgetting=0.01, fresh_margin=0.0, max_negative_flip_rate=0.5))
    assert decision.outcome == "PROMOTE", decision.reasons
    assert "with the regression rows, a significant gain" in check(decision, "fresh_gain").message


def test_a_tie_between_different_predictions_still_waits():
    # One fixed and one broken row: the same macro-F1, other predictions: more rows can tell them apart.
    y = truth(60)
    decision = decide(*pair(y, wrong_on(y, [1]), wrong_on(y, [2])), POLICY)
    assert decision.outcome == "WAIT", decision.reasons
    assert check(decision, "fresh_gain").message.endswith(": wait")


def test_clearly_worse_candidate_rejects():
    y = truth(300)
    decision = decide(*pair(y, wrong_on(y, range(120)), wrong_on(y, range(60))), POLICY)
    assert decision.outcome == "REJECT"
    gain = check(decision, "fresh_gain")
    assert not gain.wait and "significantly short of the required gain: fail" in gain.message
    assert "fresh macro-F1 0.600 vs champion 0.800: gain -0.200 (95% CI -0." in gain.message


def test_a_failing_rule_rejects_even_when_the_gain_says_wait():
    candidate, champion = tiny_gain(60)
    reg = truth(90)
    candidate = replace(candidate, regression=scored(reg, wrong_on(reg, range(30))))
    champion = replace(champion, regression=scored(reg, reg))
    decision = decide(candidate, champion, POLICY)
    assert decision.outcome == "REJECT"
    assert check(decision, "fresh_gain").wait
    assert not check(decision, "forgetting").passed


def test_the_decision_replays_exactly_with_the_same_seed():
    candidate, champion = tiny_gain(120)
    assert decide(candidate, champion, POLICY) == decide(candidate, champion, POLICY)


# ---- forgetting and the poisoned batch ----------------------------------------------------------


def test_significant_forgetting_names_the_lower_bound():
    y, reg = truth(300), truth(300)
    candidate, champion = pair(y, wrong_on(y, range(30)), wrong_on(y, range(90)),
                               reg, wrong_on(reg, range(90)), wrong_on(reg, range(30)))
    forgetting = check(decide(candidate, champion, POLICY), "forgetting")
    assert not forgetting.passed
    assert forgetting.message.startswith("regression macro-F1 0.700 vs champion 0.900: drop +0.200 > 0.010 allowed (95% CI +0.")
    assert forgetting.message.endswith("lower bound above budget: significant forgetting) on 300 rows: fail")


def test_label_poisoned_candidate_is_rejected():
    # Clean regression rows: the champion is right on 80% of each class.
    reg = truth(300)
    champ_reg = wrong_on(reg, [r for r in range(300) if r % 5 == 0])
    # The candidate learned from a batch whose positive and negative labels were swapped: on clean
    # rows it calls positives negative and negatives positive.
    cand_reg = [SWAP[y] for y in reg]
    # The fresh test rows come from the same poisoned batch, so their labels are swapped too: there
    # the candidate looks better than the champion, which still reads sentiment correctly.
    sentiment = truth(150)
    fresh = [SWAP[y] for y in sentiment]
    champ_fresh = wrong_on(sentiment, [r for r in range(150) if r % 5 == 0])
    cand_fresh = wrong_on(fresh, [r for r in range(150) if r % 10 == 0])
    candidate, champion = pair(fresh, cand_fresh, champ_fresh, reg, cand_reg, champ_reg)

    decision = decide(candidate, champion, POLICY)

    assert decision.outcome == "REJECT"
    assert check(decision, "fresh_gain").passed  # the poison is invisible on poisoned rows
    assert "significant gain" in check(decision, "fresh_gain").message
    assert {c.rule for c in decision.failed} == {"forgetting", "class_recall_regression", "negative_flips"}
    assert "significant forgetting" in check(decision, "forgetting").message
    assert "-0.800, beyond -0.250" in check(decision, "class_recall_regression").message
    flips = check(decision, "negative_flips").message
    assert "significantly more broken than fixed" in flips and "broken 36.7% > 20.0% allowed: fail" in flips


# ---- negative flips -----------------------------------------------------------------------------


@pytest.mark.parametrize(("flipped", "passed"), [(10, True), (11, False)])
def test_flip_cap_is_exact(flipped, passed):
    # A candidate that also fixes 20 rows: more fixed than broken, so only the cap can fail it.
    y = truth(100)
    candidate, champion = pair(y, wrong_on(y, range(flipped)), wrong_on(y, range(80, 100)))
    flips = check(decide(candidate, champion, GatePolicy(max_negative_flip_rate=0.10)), "negative_flips")
    assert flips.passed is passed
    verdict = "<= 10.0% allowed: pass" if passed else "> 10.0% allowed: fail"
    assert flips.message.startswith(f"negative flips: {flipped} rows broken, 20 fixed of 100 "
                                    f"(net {20 - flipped:+d} rows right; broken/fixed fresh {flipped}/20); "
                                    "more broken than fixed is not significant (sign test p=")
    assert flips.message.endswith(f"broken {flipped}.0% {verdict}")


def test_churn_that_fixes_more_than_it_breaks_passes():
    # 12 % of rows broken, which a one-way 10 % budget rejected, but 20 % fixed: churn, not harm.
    y = truth(100)
    candidate, champion = pair(y, wrong_on(y, range(12)), wrong_on(y, range(80, 100)))
    decision = decide(candidate, champion, POLICY)
    flips = check(decision, "negative_flips")
    assert flips.passed and "12 rows broken, 20 fixed of 100 (net +8 rows right" in flips.message
    assert flips.message.endswith("broken 12.0% <= 20.0% allowed: pass")


def test_significantly_more_broken_than_fixed_fails_under_the_cap():
    y = truth(200)
    candidate, champion = pair(y, wrong_on(y, range(20)), wrong_on(y, range(190, 193)))  # 20 broken, 3 fixed
    flips = check(decide(candidate, champion, POLICY), "negative_flips")
    assert not flips.passed
    assert "20 rows broken, 3 fixed of 200 (net -17 rows right" in flips.message
    assert "significantly more broken than fixed (sign test p=0.000" in flips.message
    assert flips.message.endswith("broken 10.0% <= 20.0% allowed: fail")


def test_the_sign_test_is_exact():
    from registry.gate import sign_test

    assert sign_test(0, 0) == 1.0  # nothing changed: no evidence either way
    assert sign_test(3, 0) == 1 / 8
    assert sign_test(2, 2) == 11 / 16  # P(X >= 2), X ~ Binomial(4, 1/2)
    assert sign_test(0, 5) == 1.0


def test_flips_pool_fresh_and_regression_rows():
    y, reg = truth(60), truth(40)
    candidate, champion = pair(y, wrong_on(y, range(5)), y, reg, wrong_on(reg, range(6)), reg)
    flips = check(decide(candidate, champion, POLICY), "negative_flips")
    assert not flips.passed
    assert "11 rows broken, 0 fixed of 100 (net -11 rows right; broken/fixed fresh 5/0, regression 6/0)" in flips.message


# ---- a fresh gain within noise, judged with the regression rows too ----------------------------


def within_noise_fresh_significant_pooled():
    """60 fresh rows: 4 fixed, 1 broken (within noise). 300 regression rows: 30 fixed, 3 broken."""
    y, reg = truth(60), truth(300)
    cand_fresh, champ_fresh = wrong_on(y, [*range(10, 16), 50]), wrong_on(y, range(6, 16))
    cand_reg, champ_reg = wrong_on(reg, [*range(30, 60), 297, 298, 299]), wrong_on(reg, range(60))
    return pair(y, cand_fresh, champ_fresh, reg, cand_reg, champ_reg)


def test_a_fresh_gain_within_noise_promotes_when_fresh_and_regression_rows_together_are_significant():
    candidate, champion = within_noise_fresh_significant_pooled()
    decision = decide(candidate, champion, POLICY)
    gain = check(decision, "fresh_gain")
    assert decision.outcome == "PROMOTE", decision.reasons
    assert "within noise" in gain.message and "with the regression rows, a significant gain +0." in gain.message
    assert gain.message.endswith("on 360 rows: pass")
    # Without pooling the same evidence waits for more fresh rows.
    alone = decide(candidate, champion, GatePolicy(pool_regression=False, fresh_margin=0.0))
    assert alone.outcome == "WAIT" and check(alone, "fresh_gain").wait


def test_a_gain_within_noise_promotes_when_it_is_not_worse_than_the_margin():
    # 600 fresh rows, a +0.017 point gain: not significant, but with 95 % confidence no worse than -0.03.
    candidate, champion = tiny_gain(600)
    margin = GatePolicy(fresh_margin=0.03, pool_regression=False)
    decision = decide(candidate, champion, margin)
    gain = check(decision, "fresh_gain")
    assert decision.outcome == "PROMOTE" and gain.passed, decision.reasons
    assert "gain +0.017, not significant (95% CI -" in gain.message
    assert gain.message.endswith("but not worse than -0.030 (fresh_margin 0.030) on 600 rows: pass")
    # A margin too tight for the interval: inconclusive, so more rows are needed.
    tight = decide(candidate, champion, GatePolicy(fresh_margin=0.001, pool_regression=False, max_wait_rows=1000))
    assert tight.outcome == "WAIT"


def test_the_margin_never_promotes_a_point_loss():
    y = truth(600)
    # 3 rows fixed, 6 broken: a small point loss whose interval sits well inside the margin.
    candidate, champion = pair(y, wrong_on(y, [*range(3, 60), 500, 501, 502, 503, 504, 505]), wrong_on(y, range(60)))
    decision = decide(candidate, champion, GatePolicy(fresh_margin=0.2, pool_regression=False, max_wait_rows=1000))
    assert decision.outcome == "WAIT" and "not worse than" not in check(decision, "fresh_gain").message


def test_pooling_never_promotes_a_fresh_loss():
    y, reg = truth(60), truth(300)
    # Fresh: 1 fixed, 3 broken (a point loss, within noise); regression: a large significant gain.
    candidate, champion = pair(y, wrong_on(y, [*range(11, 16), 40, 41, 42]), wrong_on(y, range(10, 16)),
                               reg, wrong_on(reg, range(30, 60)), wrong_on(reg, range(60)))
    decision = decide(candidate, champion, POLICY)
    assert decision.outcome == "WAIT" and "with the regression rows" not in check(decision, "fresh_gain").message


def test_a_regression_gain_reads_as_a_gain():
    candidate, champion = within_noise_fresh_significant_pooled()
    forgetting = check(decide(candidate, champion, POLICY), "forgetting")
    assert forgetting.passed
    assert forgetting.message.startswith("regression macro-F1 0.890 vs champion 0.800: gain +0.090, no drop (95% CI +")
    assert "drop -" not in forgetting.message


# ---- first model, missing or bad evidence -------------------------------------------------------


def test_a_report_without_per_row_evidence_is_refused():
    y = truth(300)
    _, champion = pair(y, wrong_on(y, range(30)), wrong_on(y, range(90)))
    stored = champion.to_dict()
    del stored["fresh"]["y_true"], stored["fresh"]["y_pred"]
    with pytest.raises(InvalidSummaryError, match="champion evaluation summary has a 'fresh' report "
                                                  "without 'y_true', 'y_pred'"):
        EvaluationReport.from_dict(stored, "champion")


def test_first_model_with_evidence_is_judged_by_floor_and_sanity_only():
    y = truth(90)
    candidate, _ = pair(y, wrong_on(y, range(30)), y)
    decision = decide(candidate, None, POLICY)
    assert decision.outcome == "PROMOTE"
    assert [c.rule for c in decision.checks] == ["fresh_rows", "train_loss", "prediction_mix", "first_model_floor"]


def test_evidence_from_different_rows_is_refused():
    y = truth(60)
    candidate, champion = pair(y, y, y)
    champion = replace(champion, fresh=replace(champion.fresh, y_true=truth(61)[1:]))
    with pytest.raises(MismatchedEvidenceError, match="'fresh' reports disagree on their rows: row 0 is 'negative' "
                                                      "for the candidate and 'neutral' for the champion"):
        decide(candidate, champion, POLICY)


def test_evidence_of_the_wrong_length_is_refused():
    y = truth(60)
    candidate, _ = pair(y, y, y)
    stored = candidate.to_dict()
    stored["fresh"]["y_pred"] = y[:-1]
    with pytest.raises(InvalidSummaryError, match="candidate evaluation summary has a 'fresh' report whose "
                                                  "'y_pred' has 59 rows for n=60"):
        EvaluationReport.from_dict(stored, "candidate")


# ---- Decision round trip, policy validation -----------------------------------------------------


def test_a_wait_from_a_rule_survives_a_json_round_trip():
    decision = decide(*tiny_gain(60), POLICY)
    data = json.loads(json.dumps(decision.to_dict()))
    assert data["checks"][3] == {"rule": "fresh_gain", "passed": False, "message": decision.reasons[3], "wait": True}
    again = Decision.from_dict(data)
    assert again == decision and again.outcome == "WAIT" and again.waiting[0].rule == "fresh_gain"


def test_a_check_without_wait_is_refused():
    data = {"outcome": "REJECT", "checks": [{"rule": "fresh_gain", "passed": False, "message": "…: fail"}]}
    with pytest.raises(InvalidDecisionError, match="missing or malformed field 'wait'"):
        Decision.from_dict(data)


def test_a_check_both_passed_and_waiting_is_refused():
    data = {"outcome": "WAIT", "checks": [{"rule": "fresh_gain", "passed": True, "message": "m", "wait": True}]}
    with pytest.raises(InvalidDecisionError, match="both passed and waiting"):
        Decision.from_dict(data)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"confidence": 0.4}, r"GatePolicy.confidence = 0.4 is not allowed: expected a number in \[0.5, 0.999\]"),
        ({"confidence": 1.0}, r"GatePolicy.confidence = 1.0 .* \[0.5, 0.999\]"),
        ({"bootstrap_samples": 50}, r"GatePolicy.bootstrap_samples = 50 .* an integer in \[100, 100000\]"),
        ({"bootstrap_samples": 1000.0}, r"GatePolicy.bootstrap_samples = 1000.0 .* an integer"),
        ({"seed": -1}, r"GatePolicy.seed = -1 is not allowed: expected an integer >= 0"),
        ({"seed": True}, r"GatePolicy.seed = True .* an integer"),
        ({"max_negative_flip_rate": 1.5}, r"GatePolicy.max_negative_flip_rate = 1.5 .* \[0.0, 1.0\]"),
        ({"max_wait_rows": 10}, r"GatePolicy.max_wait_rows = 10 .* an integer >= min_fresh_rows \(20\)"),
        ({"min_fresh_rows": 50, "max_wait_rows": 40}, r"GatePolicy.max_wait_rows = 40 .* >= min_fresh_rows \(50\)"),
    ],
)
def test_new_policy_fields_are_validated_naming_the_field(kwargs, expected):
    with pytest.raises(InvalidPolicyError, match=expected):
        GatePolicy(**kwargs)


def test_the_gate_stays_pure_stdlib_and_numpy_only():
    """The rules and the reports they read need nothing but numpy; the policy type may use pydantic."""
    import ast
    from pathlib import Path

    import registry

    allowed = {"__future__", "math", "collections", "dataclasses", "typing", "numpy", "registry"}
    for name, extra in (("gate.py", set()), ("bootstrap.py", set()), ("evidence.py", set()),
                        ("policy.py", {"pydantic"})):
        tree = ast.parse((Path(registry.__file__).parent / name).read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert {module.split(".")[0] for module in imported} <= allowed | extra, name
