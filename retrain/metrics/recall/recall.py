"""Recall: the share of a class's rows found, as an `evaluate` metric module.

cltool loads this file with `evaluate.load(<this folder>)` so that no metric is ever fetched
from the Hugging Face Hub. It wraps scikit-learn's `recall_score`; the shared code is in `base.py`.
"""

from sklearn.metrics import recall_score

from retrain.metrics import base


class Recall(base.AveragedSklearnMetric, key="recall", score=recall_score, example=0.6666666666666666):
    """Recall = TP / (TP + FN), per class or averaged over classes."""
