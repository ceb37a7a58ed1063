"""F1: the harmonic mean of precision and recall, as an `evaluate` metric module.

cltool loads this file with `evaluate.load(<this folder>)` so that no metric is ever fetched
from the Hugging Face Hub. It wraps scikit-learn's `f1_score`; the shared code is in `base.py`.
"""

from sklearn.metrics import f1_score

from retrain.metrics import base


class F1(base.AveragedSklearnMetric, key="f1", score=f1_score, example=0.5555555555555555):
    """F1 = 2 * (precision * recall) / (precision + recall), per class or averaged over classes."""
