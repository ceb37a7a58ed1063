"""Accuracy: the share of rows predicted right, as an `evaluate` metric module.

cltool loads this file with `evaluate.load(<this folder>)` so that no metric is ever fetched
from the Hugging Face Hub. It is a thin wrapper over scikit-learn's `accuracy_score`.
"""

import datasets
import evaluate
from sklearn.metrics import accuracy_score

_DESCRIPTION = """Accuracy is the proportion of correct predictions among all rows: (TP + TN) / N."""

_KWARGS_DESCRIPTION = """
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

_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.accuracy_score.html"],
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        score = accuracy_score(references, predictions, normalize=normalize, sample_weight=sample_weight)
        return {"accuracy": float(score)}

