"""Accuracy: the share of rows predicted right, as an `evaluate` metric module.

cltool loads this file with `evaluate.load(<this folder>)` so that no metric is ever fetched
from the Hugging Face Hub. It wraps scikit-learn's `accuracy_score`; the shared code is in `base.py`.
"""

from sklearn.metrics import accuracy_score

from retrain.metrics import base

_INPUTS = """
Args:
    predictions (`list` of `int`): predicted label ids.
    references (`list` of `int`): true label ids.
    normalize (`bool`, defaults to True): False returns the count of correct rows.
    sample_weight (`list` of `float`, optional): per-row weights.

Returns:
    accuracy (`float`: between 0 and 1, or a count when normalize is False).

Examples:
    >>> metric = evaluate.load("retrain/metrics/accuracy")
    >>> metric.compute(references=[0, 1, 2, 0], predictions=[0, 2, 2, 0])
    {'accuracy': 0.75}
"""


class Accuracy(base.SklearnMetric, key="accuracy", score=accuracy_score, inputs=_INPUTS):
    """Accuracy is the proportion of correct predictions among all rows: (TP + TN) / N."""

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = self._score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {self.key: float(score)}
