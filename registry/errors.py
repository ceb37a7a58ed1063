"""The registry package's error tree. Each error builds its message from the values that caused it.

Every class also subclasses the builtin a caller would naturally catch (LookupError, ValueError,
ConnectionError, FileExistsError), so code that does not know this package still handles it.
"""

from __future__ import annotations

from collections.abc import Sequence


def _listing(values: Sequence[object], limit: int = 20) -> str:
    """Render known values for a message; long lists are cut so one log line stays readable."""
    if not values:
        return "none yet"
    shown = ", ".join(str(v) for v in list(values)[:limit])
    more = len(values) - limit
    return shown + (f", … {more} more" if more > 0 else "")


class RegistryError(Exception):
    """Base of every error the registry package raises on purpose."""


class RegistryUnavailable(RegistryError, ConnectionError):
    """The MLflow tracking/registry store cannot be reached or opened."""

    def __init__(self, uri: str, cause: object) -> None:
        self.uri, self.cause = uri, cause
        super().__init__(
            f"cannot reach the MLflow store at {uri!r}: {cause}; expected a reachable "
            "tracking server or a writable database"
        )


class RegistryAccessDenied(RegistryError, PermissionError):
    """The tracking server answered 401 (who are you?) or 403 (not allowed) to one call."""

    HINTS = {
        "UNAUTHENTICATED": "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) "
                           "for the daemon's MLflow user",
        "PERMISSION_DENIED": "the user needs READ on what it reads and MANAGE on the experiment and registered "
                             "model it writes (a user gets MANAGE on what it creates itself); an MLflow admin "
                             "grants it with the basic-auth permission API",
    }

    def __init__(self, uri: str, operation: str, user: str | None, code: str) -> None:
        self.uri, self.operation, self.user, self.code = uri, operation, user, code
        who = f"user {user!r}" if user else "an anonymous client"
        super().__init__(f"MLflow at {uri} refused {operation} for {who} ({code}): {self.HINTS.get(code, code)}")


class UnknownVersionError(RegistryError, LookupError):
    """A version number that the registered model does not have."""

    def __init__(self, model: str, version: str, known: Sequence[str]) -> None:
        self.model, self.version, self.known = model, version, list(known)
        super().__init__(
            f"model {model!r} has no version {version!r}; versions: {_listing(self.known)}"
        )


class UnknownAliasError(RegistryError, ValueError):
    """An alias name outside the fixed set cltool manages."""

    def __init__(self, alias: str, allowed: Sequence[str]) -> None:
        self.alias, self.allowed = alias, tuple(allowed)
        super().__init__(f"alias {alias!r} is not managed by cltool; expected one of {_listing(allowed)}")


class NoChampionError(RegistryError, LookupError):
    """An operation that needs a champion (rollback) on a model that has none."""

    def __init__(self, model: str) -> None:
        self.model = model
        super().__init__(
            f"model {model!r} has no 'champion' alias, so there is nothing to roll back; "
            "promote a version first"
        )


class NoRollbackTargetError(RegistryError, LookupError):
    """rollback() without a target on a model that has no previous champion."""

    def __init__(self, model: str, known: Sequence[str]) -> None:
        self.model, self.known = model, list(known)
        super().__init__(
            f"model {model!r} has no 'previous_champion' alias to roll back to; pass the "
            f"version explicitly (versions: {_listing(self.known)})"
        )


class WeightsKeptError(RegistryError, ValueError):
    """delete_weights() on a version that must keep them (an alias points at it) or cannot lose them."""

    def __init__(self, model: str, version: str, why: str) -> None:
        self.model, self.version = model, version
        super().__init__(f"version {version} of {model!r} keeps its weights: {why}")


class WeightsPrunedError(RegistryError, LookupError):
    """A download of a version whose weights retention deleted."""

    def __init__(self, model: str, version: str, note: str) -> None:
        self.model, self.version, self.note = model, version, note
        super().__init__(
            f"version {version} of {model!r} has no weights any more ({note}); its run, metrics and "
            "reports are still in MLflow"
        )


class InvalidModelDirError(RegistryError, ValueError):
    """A model folder that is not what save_pretrained writes."""

    def __init__(self, path: object, problem: str) -> None:
        self.path, self.problem = path, problem
        super().__init__(
            f"model folder {str(path)!r} {problem}; expected a folder written by "
            "save_pretrained (config.json, model.safetensors, tokenizer files)"
        )


class InvalidMetricError(RegistryError, ValueError):
    """A metric whose value is not a number."""

    def __init__(self, key: str, value: object) -> None:
        self.key, self.value = key, value
        super().__init__(f"metric {key!r} = {value!r} is not a number; expected an int or float")


class MissingFileError(RegistryError, FileNotFoundError):
    """A file asked to be logged as an artifact that does not exist."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(f"artifact file {str(path)!r} does not exist; expected an existing file")


class InvalidArtifactNameError(RegistryError, ValueError):
    """A json_artifacts key that would not make a plain file name."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"artifact name {name!r} is not a plain file name; expected letters, digits, "
            "'_', '-' or '.' (it is written as <name>.json)"
        )


class DestinationNotEmptyError(RegistryError, FileExistsError):
    """download_model() into a folder that already holds files."""

    def __init__(self, path: object) -> None:
        self.path = path
        super().__init__(
            f"download destination {str(path)!r} already exists and is not empty; "
            "expected a missing or empty folder"
        )


class NotATransformersModelError(RegistryError, ValueError):
    """A registered version whose MLmodel has no transformers flavour."""

    def __init__(self, model: str, version: str, flavors: list[str]) -> None:
        self.model, self.version, self.flavors = model, version, flavors
        super().__init__(
            f"model {model!r} version {version!r} was logged with flavours {flavors}; "
            "expected the 'transformers' flavour that log_candidate writes"
        )


class InvalidPolicyError(RegistryError, ValueError):
    """A GatePolicy field (or a field of a subclass, named by `owner`) outside its allowed range."""

    def __init__(self, field: str, value: object, expected: str, owner: str = "GatePolicy") -> None:
        self.field, self.value, self.expected, self.owner = field, value, expected, owner
        super().__init__(f"{owner}.{field} = {value!r} is not allowed: expected {expected}")


class InvalidSummaryError(RegistryError, ValueError):
    """An evaluation report for the gate (registry/evidence.py) that lacks what the rules read."""

    def __init__(self, subject: str, problem: str) -> None:
        self.subject, self.problem = subject, problem
        super().__init__(
            f"{subject} {problem}; expected "
            "{'fresh': report, 'regression': report or None, 'train_loss': float or None} with report = "
            "{'n': int, 'macro_f1': float, 'accuracy': float, 'recall': {...}, 'pred_share': {...}, "
            "'y_true': [n labels], 'y_pred': [n labels]}"
        )


class InvalidDecisionError(RegistryError, ValueError):
    """A serialised Decision that cannot be read back."""

    def __init__(self, data: object, problem: str) -> None:
        self.data, self.problem = data, problem
        super().__init__(f"cannot read a gate Decision from {str(data)[:200]!r}: {problem}")


class ConfusionShapeError(RegistryError, ValueError):
    """A confusion matrix that does not match its labels."""

    def __init__(self, rows: int, cols: Sequence[int], labels: int) -> None:
        super().__init__(
            f"confusion matrix is {rows} rows with lengths {list(cols)} for {labels} labels; "
            f"expected a {labels}x{labels} matrix (rows = true label, columns = predicted)"
        )


class MissingArtifactError(RegistryError, FileNotFoundError):
    """A version's run lacks an artifact cltool wrote for it (a run logged by something else, or damaged)."""

    def __init__(self, version: str, name: str, detail: str) -> None:
        self.version, self.name = version, name
        super().__init__(f"version {version} has no artifact {name!r} in its run ({detail})")


class MismatchedEvidenceError(RegistryError, ValueError):
    """Candidate and champion reports whose per-row labels say they were not scored on the same rows."""

    def __init__(self, part: str, problem: str) -> None:
        self.part, self.problem = part, problem
        super().__init__(
            f"candidate and champion '{part}' reports disagree on their rows: {problem}; expected "
            "both scored on the same rows in the same order (identical 'y_true')"
        )
