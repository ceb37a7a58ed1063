"""Precision: the share of a class's predictions that are right, as an `evaluate` metric module.

cltool loads this file with `evaluate.load(<this folder>)` so that no metric is ever fetched
from the Hugging Face Hub. It is a thin wrapper over scikit-learn's
`precision_score`, defaulting to the macro average over classes.
"""

import datasets
import evaluate
from sklearn.metrics import precision_score

_DESCRIPTION = """Precision = TP / (TP + FP), per class or averaged over classes."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `int`): predicted label ids.
    references (`list` of `int`): true label ids.
    labels (`list` of `int`, optional): the label ids to report on, in this order. Pass every
        class id so that a class missing from both lists still counts (as 0) in the macro average.
    average (`str` or `None`, defaults to "macro"): "macro", "micro", "weighted", or None for one
        score per label (returned as a list in `labels` order).
    zero_division (`float`, defaults to 0): the value used when a score divides by zero (a class
        never predicted, or never present); 0 is the conservative choice for gating.
    sample_weight (`list` of `float`, optional): per-row weights.

Returns:
    precision (`float` for an average, or a `list` of `float` per label when average is None).

Examples:
    >>> metric = evaluate.load("retrain/metrics/precision")
    >>> metric.compute(references=[0, 1, 2, 0], predictions=[0, 2, 2, 0], labels=[0, 1, 2])
    {'precision': 0.5}
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
class Precision(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=["https://scikit-learn.org/stable/modules/generated/sklearn.metrics.precision_score.html"],
        )

    def _compute(
        self, predictions, references, labels=None, average="macro", zero_division=0, sample_weight=None
    ):
        score = precision_score(
            references,
            predictions,
            labels=labels,
            average=average,
            zero_division=zero_division,
            sample_weight=sample_weight,
        )
        # average=None gives one score per label; plain floats/lists keep the result JSON-friendly.
        return {"precision": score.tolist() if average is None else float(score)}

