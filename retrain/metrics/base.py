"""The code the shipped metric scripts share: label-id inputs scored by one scikit-learn function.

Each `<name>/<name>.py` script declares only what differs, as class keywords, e.g.
`class F1(base.AveragedSklearnMetric, key="f1", score=f1_score, example=...)`.

Scripts write `from retrain.metrics import base`, for two reasons. `evaluate.load` copies only
the script file into its module cache, so the shared code must come from the installed package,
not a relative import. And evaluate takes the first `EvaluationModule` subclass in the script's
namespace as the metric, so importing a base class by name would make it the one loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import datasets
import evaluate

_SKLEARN_CITATION = """\
@article{scikit-learn,
  title={Scikit-learn: Machine Learning in {P}ython},
  author={Pedregosa, F. and others},
  journal={Journal of Machine Learning Research},
  volume={12},
  pages={2825--2830},
  year={2011}
}
"""

_AVERAGED_INPUTS = """
Args:
    predictions (`list` of `int`): predicted label ids.
    references (`list` of `int`): true label ids.
    labels (`list` of `int`, optional): the label ids to report on, in this order. Pass every
        class id so that a class missing from both lists still counts (as 0) in the macro average.
    average (`str` or `None`, defaults to "macro"): "macro", "micro", "weighted", or None for one
        score per label (returned as a list in `labels` order).
    zero_division (0, 1 or nan, defaults to 0): the value used when a score divides by zero (a
        class never predicted, or never present); 0 is the conservative choice for gating.
    sample_weight (`list` of `float`, optional): per-row weights.

Returns:
    {key} (`float` for an average, or a `list` of `float` per label when average is None).

Examples:
    >>> metric = evaluate.load("retrain/metrics/{key}")
    >>> metric.compute(references=[0, 1, 2, 0], predictions=[0, 2, 2, 0], labels=[0, 1, 2])
    {{'{key}': {example!r}}}
"""


class SklearnMetric(evaluate.Metric):
    """An `evaluate.Metric` over int label ids whose score is one scikit-learn function.

    The class docstring is the metric's description. A subclass names its result `key`, its
    `score` function and its `inputs` text as class keywords, and defines `_compute`: evaluate
    passes compute()'s extra keywords straight to it, so its signature is what callers may pass.
    """

    key: str
    _score: Callable[..., Any]
    _inputs: str

    def __init_subclass__(
        cls, *, key: str | None = None, score: Callable[..., Any] | None = None, inputs: str = "", **kwargs
    ):
        super().__init_subclass__(**kwargs)
        if key is None:  # an intermediate base such as AveragedSklearnMetric
            return
        cls.key, cls._score, cls._inputs = key, staticmethod(score), inputs

    def _info(self):
        return evaluate.MetricInfo(
            description=self.__doc__,
            citation=_SKLEARN_CITATION,
            inputs_description=self._inputs,
            features=datasets.Features(
                {"predictions": datasets.Value("int32"), "references": datasets.Value("int32")}
            ),
            reference_urls=[
                f"https://scikit-learn.org/stable/modules/generated/sklearn.metrics.{self._score.__name__}.html"
            ],
        )


class AveragedSklearnMetric(SklearnMetric):
    """A per-class score (precision, recall, F1) averaged over classes, macro by default.

    `example` is the score the documented example returns.
    """

    def __init_subclass__(cls, *, key: str, example: float, **kwargs):
        super().__init_subclass__(key=key, inputs=_AVERAGED_INPUTS.format(key=key, example=example), **kwargs)

    def _compute(
        self, predictions, references, labels=None, average="macro", zero_division=0, sample_weight=None
    ):
        score = self._score(
            references,
            predictions,
            labels=labels,
            average=average,
            zero_division=zero_division,
            sample_weight=sample_weight,
        )
        # average=None gives one score per label; plain floats/lists keep the result JSON-friendly.
        return {self.key: score.tolist() if average is None else float(score)}
