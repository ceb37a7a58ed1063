"""The retrain package's error tree. Each error builds its message from the values that caused it.

Every class also subclasses the builtin a caller would naturally catch (ValueError, OSError,
RuntimeError), so code that does not know this package still handles them sensibly.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def _short(values: Sequence[object], limit: int = 10) -> str:
    """Render a list for a message without flooding the log when it is long."""
    shown = ", ".join(repr(v) for v in list(values)[:limit])
    more = len(values) - limit
    return f"[{shown}{f', … {more} more' if more > 0 else ''}]"


class RetrainError(Exception):
    """Base of every error the retrain package raises on purpose."""


class InvalidConfigError(RetrainError, ValueError):
    """A setting (of `config`: TrainConfig, ModelConfig, ReplayConfig) has a value outside what is allowed."""

    def __init__(self, field: str, value: object, expected: str, *, config: str) -> None:
        self.config, self.field, self.value, self.expected = config, field, value, expected
        super().__init__(f"{config}.{field} = {value!r} is not allowed: expected {expected}")


class InvalidLabelsError(RetrainError, ValueError):
    """The label list itself is unusable (empty, too short, duplicated)."""

    def __init__(self, labels: Sequence[object], problem: str) -> None:
        self.labels = list(labels)
        super().__init__(f"labels {_short(self.labels)} are not usable: {problem}")


class UnknownLabelError(RetrainError, ValueError):
    """A row, prediction or id names a label that is not in the model's label list."""

    def __init__(self, label: object, allowed: Sequence[object], where: str = "rows") -> None:
        self.label, self.allowed = label, list(allowed)
        super().__init__(
            f"unknown label {label!r} in {where}: expected one of {_short(self.allowed, 50)}"
        )


class MissingColumnError(RetrainError, ValueError):
    """A data frame lacks a column the caller promised."""

    def __init__(self, column: str, present: Sequence[str]) -> None:
        self.column = column
        super().__init__(
            f"rows have no column {column!r}: columns present are {_short(list(present))}"
        )


class InvalidTextError(RetrainError, ValueError):
    """A text cell is empty or not a string."""

    def __init__(self, position: int, value: object) -> None:
        self.position, self.value = position, value
        super().__init__(f"row {position}: text = {value!r} is not allowed: expected a string")


class LengthMismatchError(RetrainError, ValueError):
    """Two sequences that must pair up element by element have different lengths."""

    def __init__(self, what: str, lengths: dict[str, int]) -> None:
        self.lengths = dict(lengths)
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        super().__init__(f"{what}: lengths differ ({detail}); expected equal lengths")


class MixedLabelTypesError(RetrainError, TypeError):
    """Label names and label ids were mixed, so equality comparisons would be meaningless."""

    def __init__(self, kinds: dict[str, str]) -> None:
        detail = ", ".join(f"{k} holds {v}" for k, v in kinds.items())
        super().__init__(f"{detail}; expected all label names (str) or all label ids (int)")


class ModelSourceError(RetrainError, OSError):
    """A model source (path or hub id) could not be loaded."""

    def __init__(self, source: str | Path, reason: str) -> None:
        self.source = str(source)
        super().__init__(
            f"cannot load model from {self.source!r}: {reason.rstrip('. ')}. "
            "Expected a local model directory (config.json + weights + tokenizer) or a "
            "Hugging Face id already in the local cache (the hub is not reachable when "
            "HF_HUB_OFFLINE=1)"
        )


class LabelMismatchError(RetrainError, ValueError):
    """The source model's classification head was trained for different labels."""

    def __init__(
        self, source: str | Path, head_labels: Sequence[str], labels: Sequence[str]
    ) -> None:
        self.source, self.head_labels, self.labels = str(source), list(head_labels), list(labels)
        super().__init__(
            f"model {self.source!r} has a classification head for labels "
            f"{_short(self.head_labels)} but training asked for {_short(self.labels)}; "
            "expected the same labels, or a superset of them (the head grows); "
            "a label cannot be removed from a trained head"
        )


class DeviceUnavailableError(RetrainError, RuntimeError):
    def __init__(self, device: str, reason: str) -> None:
        self.device = device
        super().__init__(f"device {device!r} cannot be used: {reason}")


class EmptyTrainingSetError(RetrainError, ValueError):
    def __init__(self) -> None:
        super().__init__("train_rows is empty: expected at least one row to fine-tune on")


class NonFiniteLossError(RetrainError, FloatingPointError):
    """Training diverged; the candidate must not be saved or registered."""

    def __init__(self, loss: float, learning_rate: float) -> None:
        self.loss = loss
        super().__init__(
            f"training loss is {loss!r}: expected a finite number "
            f"(try a lower learning_rate than {learning_rate!r})"
        )


class UnknownReplayPolicyError(RetrainError, ValueError):
    def __init__(self, policy: object, known: Sequence[str]) -> None:
        self.policy = policy
        super().__init__(f"unknown replay policy {policy!r}: expected one of {_short(list(known))}")


class ReplayStateError(RetrainError, ValueError):
    """A saved replay state does not fit the policy it is loaded into."""

    def __init__(self, key: str, value: object, expected: str) -> None:
        self.key, self.value = key, value
        super().__init__(f"replay state {key} = {value!r} is not allowed: expected {expected}")


class UnknownMetricError(RetrainError, ValueError):
    def __init__(self, name: object, known: Sequence[str]) -> None:
        self.name = name
        super().__init__(f"unknown metric {name!r}: expected one of {_short(list(known))}")
