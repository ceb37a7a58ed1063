"""What the gate judges: each model's evaluation report, typed and checked once, when it is built.

A `PartReport` is one model scored on one set of rows (the fresh test rows or the regression
suite): the numbers `retrain.evaluation.score` computes plus the per-row evidence (`y_true`,
`y_pred`) that the gate's paired tests and `cltool explain`'s replay need. An `EvaluationReport`
is one model's parts plus its training loss. The daemon builds them after scoring; `to_dict` is
the JSON stored in MLflow as `eval_report.json` ("candidate" and "champion"), and `from_dict`
reads it back for a replay.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from registry.errors import InvalidSummaryError, MismatchedEvidenceError

PARTS = ("fresh", "regression")
Label = str


@dataclass(frozen=True)
class PartReport:
    """One model on one set of rows; `y_true[i]` and `y_pred[i]` are row i's label and prediction."""

    n: int
    macro_f1: float | None
    """None only when there are no rows."""
    accuracy: float | None
    recall: dict[Label, float | None]
    """Per class; None for a class with no true rows here."""
    pred_share: dict[Label, float | None]
    """Share of the rows predicted as each class."""
    y_true: tuple[Label, ...]
    y_pred: tuple[Label, ...]
    # Carried for people reading the stored report; the gate does not read them.
    precision: dict[Label, float | None] = field(default_factory=dict)
    f1: dict[Label, float | None] = field(default_factory=dict)
    support: dict[Label, int] = field(default_factory=dict)
    confusion: tuple[tuple[int, ...], ...] = ()
    """confusion[i][j] counts rows of true class i predicted as class j."""

    def __post_init__(self) -> None:
        if isinstance(self.n, bool) or not isinstance(self.n, int) or self.n < 0:
            raise InvalidSummaryError("a report", f"whose 'n' is {self.n!r}, not a count of rows")
        for key in ("y_true", "y_pred"):
            rows = getattr(self, key)
            if isinstance(rows, (str, bytes)) or not isinstance(rows, Sequence):
                raise InvalidSummaryError("a report", f"whose '{key}' is a {type(rows).__name__}, not a list of labels")
            if len(rows) != self.n:
                raise InvalidSummaryError("a report", f"whose '{key}' has {len(rows)} rows for n={self.n}")
            object.__setattr__(self, key, tuple(rows))
        for key in ("recall", "pred_share", "precision", "f1", "support"):
            value = getattr(self, key)
            if not isinstance(value, Mapping):
                raise InvalidSummaryError("a report", f"whose '{key}' is a {type(value).__name__}, not a mapping")
            object.__setattr__(self, key, dict(value))
        object.__setattr__(self, "confusion", tuple(tuple(row) for row in self.confusion))

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**data, "y_true": list(self.y_true), "y_pred": list(self.y_pred),
                "confusion": [list(row) for row in self.confusion]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartReport:
        if not isinstance(data, Mapping):
            raise InvalidSummaryError("a report", f"that is a {type(data).__name__}, not a mapping")
        known = {f.name for f in fields(cls)}
        if unknown := sorted(set(data) - known):
            raise InvalidSummaryError("a report", f"with unknown keys {unknown}")
        required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
        if missing := [name for name in required if name not in data]:
            raise InvalidSummaryError("a report", f"without {', '.join(repr(m) for m in missing)}")
        return cls(**data)


@dataclass(frozen=True)
class EvaluationReport:
    """One model's evaluation: its fresh report, its regression report (None before there is a
    regression suite), and the training loss (a candidate's; None for the champion)."""

    fresh: PartReport
    regression: PartReport | None = None
    train_loss: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fresh, PartReport):
            raise InvalidSummaryError("an evaluation summary", "has no 'fresh' report")
        if self.regression is not None and not isinstance(self.regression, PartReport):
            raise InvalidSummaryError("an evaluation summary", f"has a 'regression' report that is a "
                                      f"{type(self.regression).__name__}, not a PartReport")
        loss = self.train_loss
        if loss is not None and (isinstance(loss, bool) or not isinstance(loss, (int, float))):
            raise InvalidSummaryError("an evaluation summary", f"has train_loss {loss!r}, not a number")

    def scored(self, part: str) -> PartReport | None:
        """The report for `part` ("fresh" or "regression"), or None when absent or empty (no rows scored)."""
        report = getattr(self, part)
        return report if report is not None and report.n else None

    def to_dict(self) -> dict[str, Any]:
        return {"fresh": self.fresh.to_dict(), "regression": self.regression and self.regression.to_dict(),
                "train_loss": self.train_loss}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], which: str = "the") -> EvaluationReport:
        """Read `to_dict` output back; `which` ("candidate", "champion") names it in an error."""
        subject = f"{which} evaluation summary"
        if not isinstance(data, Mapping):
            raise InvalidSummaryError(subject, f"is a {type(data).__name__}, not a mapping")
        if unknown := sorted(set(data) - {"fresh", "regression", "train_loss"}):
            raise InvalidSummaryError(subject, f"has unknown keys {unknown}")
        if not isinstance(data.get("fresh"), Mapping):
            raise InvalidSummaryError(subject, "has no 'fresh' report")
        parts = {}
        for part in PARTS:
            try:
                parts[part] = None if data.get(part) is None else PartReport.from_dict(data[part])
            except InvalidSummaryError as exc:
                raise InvalidSummaryError(f"{subject} has a '{part}' report", exc.problem) from None
        try:
            return cls(**parts, train_loss=data.get("train_loss"))
        except InvalidSummaryError as exc:
            raise InvalidSummaryError(subject, exc.problem) from None


def check_paired(candidate: EvaluationReport, champion: EvaluationReport | None) -> None:
    """Paired evidence must be paired: both models scored on the same rows, the same true labels row for row."""
    if champion is None:
        return
    for part in PARTS:
        new, old = candidate.scored(part), champion.scored(part)
        new_true, old_true = new.y_true if new else (), old.y_true if old else ()
        if len(new_true) != len(old_true):
            raise MismatchedEvidenceError(part, f"{len(new_true)} candidate rows vs {len(old_true)} champion rows")
        for i, (a, b) in enumerate(zip(new_true, old_true)):
            if a != b:
                raise MismatchedEvidenceError(part, f"row {i} is {a!r} for the candidate and {b!r} for the champion")
