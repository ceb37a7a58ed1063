"""The shipped metric scripts load offline (conftest sets HF_HUB_OFFLINE) and agree with scikit-learn."""

from __future__ import annotations

import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from retrain import metrics

REFS = [0, 1, 2, 0, 1, 2, 2, 0]
PREDS = [0, 2, 2, 0, 1, 1, 2, 1]
WEIGHTS = [1.0, 2.0, 0.5, 1.0, 1.0, 3.0, 1.0, 0.25]

AVERAGED = {"f1": f1_score, "precision": precision_score, "recall": recall_score}
# Label 3 appears in neither list, so the zero_division value shows in the score.
AVERAGED_KWARGS = [
    {},
    {"labels": [0, 1, 2, 3], "zero_division": 1},
    {"average": "weighted", "sample_weight": WEIGHTS},
    {"average": None, "labels": [2, 0, 3]},
]


@pytest.mark.parametrize("kwargs", [{}, {"normalize": False, "sample_weight": WEIGHTS}])
def test_accuracy_matches_sklearn(kwargs):
    result = metrics.compute("accuracy", references=REFS, predictions=PREDS, **kwargs)
    assert result == {"accuracy": pytest.approx(accuracy_score(REFS, PREDS, **kwargs))}


@pytest.mark.parametrize("kwargs", AVERAGED_KWARGS)
@pytest.mark.parametrize("name", sorted(AVERAGED))
def test_averaged_metrics_match_sklearn_macro_by_default(name, kwargs):
    expected = AVERAGED[name](REFS, PREDS, **{"average": "macro", "zero_division": 0, **kwargs})
    result = metrics.compute(name, references=REFS, predictions=PREDS, **kwargs)
    assert list(result) == [name]
    if kwargs.get("average", "macro") is None:
        assert result[name] == pytest.approx(expected.tolist())  # one plain float per label, in order
    else:
        assert isinstance(result[name], float) and result[name] == pytest.approx(expected)


@pytest.mark.parametrize("name", ["accuracy", "f1", "precision", "recall"])
def test_each_metric_is_its_own_class_and_refuses_unknown_kwargs(name):
    # evaluate loads the first metric class in a script; a shared base class must not be the one.
    module = metrics.load_metric(name)
    assert module.name == name
    assert type(module).__name__.lower() == name
    assert module.info.reference_urls == [
        f"https://scikit-learn.org/stable/modules/generated/sklearn.metrics.{name}_score.html"
    ]
    with pytest.raises(TypeError):
        metrics.compute(name, references=REFS, predictions=PREDS, not_an_option=1)
