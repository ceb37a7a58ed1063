"""The gate's typed evaluation reports: checked when built, stored as the JSON the daemon has always written."""

from __future__ import annotations

import json

import pytest

from registry.errors import InvalidSummaryError, MismatchedEvidenceError
from registry.evidence import EvaluationReport, PartReport
from registry.gate import GatePolicy, decide
from tests.registry.conftest import LABELS, pair, scored, truth, wrong_on


def daemon_report(y_true: list[str], y_pred: list[str]) -> dict:
    """One part of eval_report.json as the daemon writes it: retrain's score() keys plus the rows."""
    n = len(y_true)
    return {
        "n": n, "macro_f1": 0.5, "accuracy": 0.5,
        "recall": {"negative": 0.5, "neutral": None, "positive": 1.0},
        "precision": {"negative": 1.0, "neutral": 0.0, "positive": 0.5},
        "f1": {"negative": 0.667, "neutral": 0.0, "positive": 0.667},
        "support": {"negative": 2, "neutral": 0, "positive": 1},
        "pred_share": {"negative": 1 / 3, "neutral": 0.0, "positive": 2 / 3},
        "confusion": [[1, 0, 1], [0, 0, 0], [0, 0, 1]],
        "y_true": y_true, "y_pred": y_pred,
    }


def test_a_stored_eval_report_reads_back_and_writes_the_same_json():
    part = daemon_report(["negative", "negative", "positive"], ["negative", "positive", "positive"])
    stored = {"candidate": {"fresh": part, "regression": None, "train_loss": 0.25},
              "champion": {"fresh": part, "regression": part, "train_loss": None}}
    stored = json.loads(json.dumps(stored))

    candidate = EvaluationReport.from_dict(stored["candidate"], "candidate")
    champion = EvaluationReport.from_dict(stored["champion"], "champion")

    assert candidate.fresh.y_true == ("negative", "negative", "positive")
    assert candidate.fresh.confusion == ((1, 0, 1), (0, 0, 0), (0, 0, 1))
    assert {"candidate": candidate.to_dict(), "champion": champion.to_dict()} == stored
    assert json.loads(json.dumps(candidate.to_dict())) == stored["candidate"]


def test_a_part_report_checks_its_rows_when_built():
    with pytest.raises(InvalidSummaryError, match="a report whose 'y_true' has 2 rows for n=3"):
        PartReport(3, 0.5, 0.5, {}, {}, ["negative", "neutral"], ["negative", "neutral", "neutral"])
    with pytest.raises(InvalidSummaryError, match="a report whose 'y_pred' is a str, not a list of labels"):
        PartReport(3, 0.5, 0.5, {}, {}, ["a", "b", "c"], "abc")
    with pytest.raises(InvalidSummaryError, match="a report whose 'n' is True, not a count of rows"):
        PartReport(True, 0.5, 0.5, {}, {}, ["a"], ["a"])


def test_an_evaluation_report_needs_a_fresh_part_report():
    with pytest.raises(InvalidSummaryError, match="an evaluation summary has no 'fresh' report"):
        EvaluationReport(None)
    with pytest.raises(InvalidSummaryError, match="candidate evaluation summary has train_loss '0.3', not a number"):
        EvaluationReport.from_dict({"fresh": scored(["a"], ["a"]).to_dict(), "train_loss": "0.3"}, "candidate")


def test_unknown_keys_are_refused_rather_than_dropped():
    part = {**scored(truth(3), truth(3)).to_dict(), "auc": 0.9}
    with pytest.raises(InvalidSummaryError, match=r"champion evaluation summary has a 'regression' report "
                                                  r"with unknown keys \['auc'\]"):
        EvaluationReport.from_dict({"fresh": scored(truth(3), truth(3)).to_dict(), "regression": part}, "champion")


def test_the_gate_takes_typed_reports_not_dicts():
    candidate, _ = pair(truth(60), truth(60), truth(60))
    with pytest.raises(InvalidSummaryError, match="candidate evaluation summary is a dict, not an EvaluationReport"):
        decide(candidate.to_dict(), None, GatePolicy())


def test_rows_on_one_side_only_are_not_paired_evidence():
    y, reg = truth(60), truth(30)
    candidate, champion = pair(y, y, wrong_on(y, range(6)), reg, reg, reg)
    alone = EvaluationReport(champion.fresh, None)
    with pytest.raises(MismatchedEvidenceError, match="'regression' reports disagree on their rows: "
                                                      "30 candidate rows vs 0 champion rows"):
        decide(candidate, alone, GatePolicy())


def test_an_empty_part_counts_as_no_rows():
    report = EvaluationReport(scored(truth(30), truth(30)), scored([], []))
    assert report.scored("fresh") is report.fresh and report.scored("regression") is None
    assert report.regression.recall == dict.fromkeys(LABELS)
