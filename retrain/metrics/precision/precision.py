"""Precision: the share of a class's predictions that are right, as an `evaluate` metric module.

cltool loads this file with `evaluate.load(<this folder>)` so that no metric is ever fetched
from the Hugging Face Hub. It wraps scikit-learn's `precision_score`; the shared code is in `base.py`.
"""

from sklearn.metrics import precision_score

from retrain.metrics import base


class Precision(base.AveragedSklearnMetric, key="precision", score=precision_score, example=0.5):
    """Precision = TP / (TP + FP), per class or averaged over classes."""
