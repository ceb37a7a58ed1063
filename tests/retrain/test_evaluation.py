from __future__ import annotations

import json

import numpy as np
import pytest

from retrain import metrics
from retrain.errors import (
    LengthMismatchError,
    MixedLabelTypesError,
    UnknownLabelError,
    UnknownMetricError,
)
from retrain.evaluation import Predictor, negative_flip_rate, score

L = ["neg", "neu", "pos"]
# 10 rows: 3 neg, 2 neu, 5 pos. Confusion (rows true, cols pred):
#   neg [2, 1, 0]   neu [0, 1, 1]   pos [0, 1, 4]
Y_TRUE = ["neg", "neg", "neg", "neu", "neu", "pos", "pos", "pos", "pos", "pos"]
Y_PRED = ["neg", "neg", "neu", "neu", "pos", "pos", "pos", "pos", "neu", "pos"]


def test_score_matches_hand_computed_report():
    report = score(Y_TRUE, Y_PRED, L)
    assert report["n"] == 10
    assert report["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 1, 4]]
    assert report["accuracy"] == pytest.approx(7 / 10)
    # recall = diagonal / row sum; precision = diagonal / column sum (2, 3, 5)
    assert report["recall"] == pytest.approx({"neg": 2 / 3, "neu": 1 / 2, "pos": 4 / 5})
    assert report["precision"] == pytest.approx({"neg": 1.0, "neu": 1 / 3, "pos": 4 / 5})
    # f1 neg = 2·1·(2/3)/(1+2/3) = 0.8; neu = 2·(1/3)(1/2)/(5/6) = 0.4; pos = 0.8
    assert report["f1"] == pytest.approx({"neg": 0.8, "neu": 0.4, "pos": 0.8})
    assert report["macro_f1"] == pytest.approx(2 / 3)
    assert report["support"] == {"neg": 3, "neu": 2, "pos": 5}
    assert report["pred_share"] == pytest.approx({"neg": 0.2, "neu": 0.3, "pos": 0.5})
    assert json.loads(json.dumps(report)) == report


def test_ids_and_names_give_the_same_report():
    ids = {label: i for i, label in enumerate(L)}
    by_id = score(np.array([ids[y] for y in Y_TRUE]), np.array([ids[y] for y in Y_PRED]), L)
    assert by_id == score(Y_TRUE, Y_PRED, L)
    assert type(by_id["n"]) is int and type(by_id["accuracy"]) is float


def test_a_class_absent_from_truth_and_predictions_scores_zero_in_the_macro_average():
    report = score(["neg", "neu"], ["neg", "neu"], L)
    assert report["f1"] == {"neg": 1.0, "neu": 1.0, "pos": 0.0}
    assert report["macro_f1"] == pytest.approx(2 / 3)
    assert report["accuracy"] == 1.0
    assert report["support"]["pos"] == 0


def test_empty_evaluation_has_n_zero_and_no_metrics():
    report = score([], [], L)
    assert report["n"] == 0
    assert report["macro_f1"] is None and report["accuracy"] is None
    assert report["recall"] == {"neg": None, "neu": None, "pos": None}
    assert report["support"] == {"neg": 0, "neu": 0, "pos": 0}
    assert report["confusion"] == [[0, 0, 0]] * 3
    json.dumps(report)


def test_score_refuses_unknown_labels_ids_and_length_mismatch():
    with pytest.raises(UnknownLabelError, match="'bullish' in y_pred"):
        score(["neg"], ["bullish"], L)
    with pytest.raises(UnknownLabelError, match="3 in y_true"):
        score(np.array([3]), np.array([0]), L)
    with pytest.raises(LengthMismatchError, match="y_true=2, y_pred=1"):
        score(["neg", "pos"], ["neg"], L)


def test_negative_flip_rate_counts_rows_champion_got_right_and_candidate_gets_wrong():
    y_true = [0, 1, 2, 0, 1]
    champion = [0, 1, 0, 0, 2]  # right on rows 0, 1, 3
    candidate = [0, 2, 2, 1, 1]  # wrong on rows 1, 3 → two flips (row 2, 4 are fixes, not flips)
    assert negative_flip_rate(y_true, champion, candidate) == pytest.approx(2 / 5)
    assert negative_flip_rate(y_true, champion, champion) == 0.0
    assert negative_flip_rate(["a", "b"], ["a", "b"], ["b", "b"]) == pytest.approx(1 / 2)
    assert negative_flip_rate([], [], []) is None


def test_negative_flip_rate_refuses_mixed_kinds_and_lengths():
    with pytest.raises(MixedLabelTypesError, match="champion_pred holds ids"):
        negative_flip_rate(["neg", "pos"], np.array([0, 2]), ["neg", "pos"])
    with pytest.raises(LengthMismatchError):
        negative_flip_rate([0, 1], [0], [0, 1])


def test_metric_modules_load_locally_and_unknown_names_are_refused():
    assert metrics.available() == ["accuracy", "f1", "precision", "recall"]
    assert metrics.load_metric("f1") is metrics.load_metric("f1")  # loaded once per process
    result = metrics.compute(
        "recall", references=[0, 1, 2, 0], predictions=[0, 2, 2, 0], labels=[0, 1, 2], average=None
    )
    assert result == {"recall": [1.0, 0.0, 1.0]}
    with pytest.raises(UnknownMetricError, match="'bleu'"):
        metrics.load_metric("bleu")


@pytest.fixture(scope="module")
def predictor(trained) -> Predictor:
    # The trained model, not the untrained one: its outputs differ clearly from text to text,
    # so a row put back in the wrong place cannot go unnoticed.
    return Predictor(trained.model_dir, device="cpu", batch_size=2)


def test_predictor_labels_come_from_the_checkpoint(predictor, labels):
    assert predictor.labels == labels


def test_predictions_come_back_in_input_order(predictor):
    texts = ["bad", "the market report today was great for shares", "steady results", "x", "awful news"]
    ids, probs = predictor.predict(texts)
    assert ids.shape == (5,) and probs.shape == (5, 3)
    assert ids[[0, 1, 2, 4]].tolist() == [0, 2, 1, 0]
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (ids == probs.argmax(axis=1)).all()
    # One text at a time (no batching, no sorting) must give the same answer for each row.
    for i, text in enumerate(texts):
        one_id, one_probs = predictor.predict([text])
        assert one_id[0] == ids[i]
        np.testing.assert_allclose(one_probs[0], probs[i], atol=1e-5)


def test_predicting_nothing_gives_empty_arrays(predictor):
    ids, probs = predictor.predict([])
    assert ids.shape == (0,) and probs.shape == (0, 3)
