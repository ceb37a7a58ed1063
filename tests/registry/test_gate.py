"""The promotion gate on hand-made reports whose right answer is known."""

from __future__ import annotations

import json
import math

import pytest

from registry import gate
from registry.errors import InvalidDecisionError, InvalidPolicyError, InvalidSummaryError, RegistryError
from registry.gate import Check, Decision, EvaluationReport, GatePolicy, decide
from tests.registry.conftest import scored, truth, wrong_on

# The rules' mechanics at fixed thresholds (the shipped defaults come from bench/gate_bench.py).
POLICY = GatePolicy(max_forgetting=0.01, fresh_margin=0.0)
Y = truth(300)  # the fresh rows and, separately, the regression rows: 100 of each class


def report(wrong: int = 60, y: list[str] = Y):
    """Wrong on the first `wrong` rows, spread evenly over the classes: macro-F1 = 1 - wrong/len(y)."""
    return scored(y, wrong_on(y, range(wrong)))


def wrong_in(label: str, k: int, y: list[str] = Y) -> list[int]:
    """The first k rows whose true label is `label`."""
    return [i for i, t in enumerate(y) if t == label][:k]


def summary(fresh=None, regression=None, loss=0.42) -> EvaluationReport:
    return EvaluationReport(fresh or report(), regression, loss)


def check(decision: Decision, rule: str) -> Check:
    [found] = [c for c in decision.checks if c.rule == rule]
    return found


def test_too_few_fresh_rows_waits_and_says_how_many():
    y = truth(12)
    decision = decide(summary(scored(y, y)), summary(scored(y, y)), POLICY)
    assert decision.outcome == "WAIT"
    assert [c.rule for c in decision.checks] == ["fresh_rows"]
    assert "12" in decision.reasons[0] and "20" in decision.reasons[0]


def test_first_model_promoted_when_above_the_floor():
    decision = decide(summary(report(wrong=135)), None, POLICY)
    assert decision.outcome == "PROMOTE"
    assert "0.550" in check(decision, "first_model_floor").message
    assert "0.400" in check(decision, "first_model_floor").message


def test_first_model_rejected_below_the_floor():
    decision = decide(summary(report(wrong=207)), None, POLICY)
    assert decision.outcome == "REJECT"
    floor = check(decision, "first_model_floor")
    assert not floor.passed and "0.310" in floor.message and floor.message.endswith("fail")


def test_min_fresh_gain_is_required_on_top_of_the_champion():
    # A significant gain of +0.200 (0.900 vs 0.700) passes the default bar and misses a +0.300 one.
    candidate, champion = summary(report(wrong=30)), summary(report(wrong=90))
    assert check(decide(candidate, champion, POLICY), "fresh_gain").passed
    decision = decide(candidate, champion, GatePolicy(min_fresh_gain=0.3))
    assert decision.outcome == "REJECT"
    gain = check(decision, "fresh_gain")
    assert "gain +0.200 (95% CI" in gain.message and "below +0.300) on 300 rows" in gain.message


def test_forgetting_beyond_budget_rejects():
    candidate = summary(regression=report(wrong=66))
    champion = summary(regression=report(wrong=60))
    decision = decide(candidate, champion, POLICY)
    assert decision.outcome == "REJECT"
    forgetting = check(decision, "forgetting")
    assert not forgetting.passed and "+0.020 > 0.010" in forgetting.message


def test_forgetting_exactly_at_budget_passes():
    # 0.80 - 0.79 is 0.010000000000000009 in floating point; the budget says "at most 0.01".
    candidate = summary(report(wrong=30), regression=report(wrong=63))
    champion = summary(report(wrong=90), regression=report(wrong=60))
    decision = decide(candidate, champion, POLICY)
    assert check(decision, "forgetting").passed
    assert decision.outcome == "PROMOTE"


def test_no_regression_rows_yet_is_a_pass_that_says_so():
    decision = decide(summary(report(wrong=30), regression=None),
                      summary(report(wrong=90), regression=scored([], [])), POLICY)
    forgetting = check(decision, "forgetting")
    assert forgetting.passed and "no regression rows yet" in forgetting.message
    assert decision.outcome == "PROMOTE"


def test_one_class_collapsing_rejects_even_when_macro_f1_improves():
    candidate = summary(scored(Y, wrong_on(Y, wrong_in("negative", 50))))  # recall 0.5, 1.0, 1.0
    champion = summary(report(wrong=60))  # recall 0.8 on every class
    assert candidate.fresh.macro_f1 > champion.fresh.macro_f1
    decision = decide(candidate, champion, POLICY)
    assert decision.outcome == "REJECT"
    collapse = check(decision, "class_recall_fresh")
    assert not collapse.passed
    assert "'negative' 0.800 -> 0.500" in collapse.message


def test_class_collapse_on_regression_rows_rejects():
    wrong = wrong_in("negative", 10) + wrong_in("neutral", 70) + wrong_in("positive", 10)
    candidate = summary(regression=scored(Y, wrong_on(Y, wrong)))  # recall 0.9, 0.3, 0.9
    champion = summary(regression=report())
    decision = decide(candidate, champion, POLICY)
    assert decision.outcome == "REJECT"
    assert not check(decision, "class_recall_regression").passed
    assert check(decision, "class_recall_fresh").passed


def test_predictions_collapsed_onto_one_class_reject():
    y = truth(200)
    decision = decide(summary(scored(y, ["neutral"] * 199 + ["positive"])), None, POLICY)
    assert decision.outcome == "REJECT"
    mix = check(decision, "prediction_mix")
    assert not mix.passed and "99.5%" in mix.message and "neutral" in mix.message


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_non_finite_train_loss_rejects(loss):
    decision = decide(summary(loss=loss), summary(), POLICY)
    assert decision.outcome == "REJECT"
    assert not check(decision, "train_loss").passed


def test_all_rules_pass_promotes_with_readable_reasons():
    candidate = summary(report(wrong=30), regression=report(wrong=63))
    champion = summary(report(wrong=90), regression=report(wrong=60))
    decision = decide(candidate, champion, POLICY)
    assert decision.outcome == "PROMOTE"
    assert all(c.passed for c in decision.checks)
    assert [c.rule for c in decision.checks] == [
        "fresh_rows", "train_loss", "prediction_mix",
        "fresh_gain", "forgetting", "class_recall_fresh", "class_recall_regression", "negative_flips",
    ]
    assert all(reason.endswith(": pass") for reason in decision.reasons)
    assert len(decision.reasons) == len(decision.checks)


def test_every_failing_rule_is_reported_not_just_the_first():
    # Worse on fresh (0.75 vs 0.80) and on regression (0.77 vs 0.80): 24 rows broken, none fixed, which
    # the flip rule's sign test calls significant although it is far below the 20 % disruption cap.
    candidate = summary(report(wrong=75), regression=report(wrong=69), loss=math.nan)
    decision = decide(candidate, summary(regression=report(wrong=60)), POLICY)
    assert {c.rule for c in decision.failed} == {"train_loss", "fresh_gain", "forgetting", "negative_flips"}


def test_a_rule_appended_to_the_list_takes_part(monkeypatch):
    def always_fails(candidate, champion, policy):
        return Check("bootstrap", False, "paired bootstrap: gain not significant: fail")

    monkeypatch.setattr(gate, "CHAMPION_RULES", gate.CHAMPION_RULES + [always_fails])
    decision = decide(summary(report(wrong=30)), summary(), POLICY)
    assert decision.outcome == "REJECT"
    assert decision.checks[-1].rule == "bootstrap"


def test_decision_survives_a_json_round_trip():
    decision = decide(summary(report(wrong=120)), summary(), POLICY)
    again = Decision.from_dict(json.loads(json.dumps(decision.to_dict())))
    assert again == decision
    assert again.outcome == "REJECT"


def test_decision_from_dict_names_a_bad_outcome():
    with pytest.raises(InvalidDecisionError, match="outcome 'MAYBE' is not one of PROMOTE, REJECT, WAIT"):
        Decision.from_dict({"outcome": "MAYBE", "checks": []})
    with pytest.raises(InvalidDecisionError, match="checks"):
        Decision.from_dict({"outcome": "WAIT"})


def test_summary_without_fresh_report_is_a_clear_error():
    with pytest.raises(InvalidSummaryError, match="champion evaluation summary has no 'fresh' report"):
        EvaluationReport.from_dict({"regression": None}, "champion")


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_forgetting", 1.5, r"GatePolicy.max_forgetting = 1.5 is not allowed: expected a number in \[0.0, 1.0\]"),
        ("max_class_drop", -0.1, r"GatePolicy.max_class_drop = -0.1 .* \[0.0, 1.0\]"),
        ("min_fresh_gain", math.nan, r"GatePolicy.min_fresh_gain = nan .* \[-1.0, 1.0\]"),
        ("first_model_min_macro_f1", "0.4", r"GatePolicy.first_model_min_macro_f1 = '0.4' .* a number"),
        ("min_fresh_rows", 0, r"GatePolicy.min_fresh_rows = 0 is not allowed: expected an integer >= 1"),
        ("min_fresh_rows", 2.5, r"GatePolicy.min_fresh_rows = 2.5 .* integer"),
    ],
)
def test_policy_rejects_out_of_range_values_naming_field_and_range(field, value, expected):
    with pytest.raises(InvalidPolicyError, match=expected) as caught:
        GatePolicy(**{field: value})
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, RegistryError)


def test_policy_to_dict_lists_every_field():
    assert GatePolicy(max_forgetting=0.02).to_dict() == {
        "max_forgetting": 0.02, "min_fresh_gain": 0.0, "fresh_margin": 0.03, "max_class_drop": 0.25,
        "first_model_min_macro_f1": 0.4, "min_fresh_rows": 20, "confidence": 0.95,
        "bootstrap_samples": 1000, "seed": 0, "max_negative_flip_rate": 0.20, "pool_regression": True,
        "max_wait_rows": 400,
    }
