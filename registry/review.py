"""What a registered version tells the person who reviews it in the MLflow UI.

Three things, beyond the metrics and plots the run already carries:

- tags, on the run and on the model version alike, whose keys are listed in `TAG_KEYS` and built
  by `review_tags` (values are clipped to the store's limits when logged, see limits.py);
- the rows behind the decision as MLflow datasets (the run page's "Datasets" section): what it
  trained on, the replay sample, the fresh test rows and the regression suite — each with its
  source, row count, schema and a digest of its rows (`rows_digest`);
- a Markdown description that fits the store (`fit_description`).

Only metadata is logged for a dataset (name, digest, source, schema, profile), never the rows
themselves: those stay in the state store the `source` names (`cltool-state:<store URL>#rows`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from registry.errors import RegistryError

# Tag keys cltool writes on every candidate's run and registered version. A reviewer filters on
# them in the UI (`tags.cltool.decision = 'REJECT'`), so they are a stable, documented interface.
TAG_KEYS: dict[str, str] = {
    "cltool.decision": "the gate's outcome: PROMOTE, REJECT or WAIT (a stale PROMOTE is re-tagged REJECT)",
    "cltool.reasons": "every gate check's message, joined with ' | '",
    "cltool.parent_version": "the champion version the candidate started from and was judged against, or 'none'",
    "cltool.batches": "ids of the batches the candidate learned from, comma-separated",
    "cltool.batch_checksums": "sha256 of each batch's file, comma-separated, in the order of cltool.batches",
    "cltool.rows_new": "new training rows (train split of those batches)",
    "cltool.rows_replay": "replayed training rows sampled from earlier batches",
    "validation_status": "the decision as a status: 'passed' (PROMOTE), 'failed' (REJECT), 'pending' (WAIT)",
}
_STATUS = {"PROMOTE": "passed", "REJECT": "failed", "WAIT": "pending"}

DATASET_CONTEXTS = ("training", "replay", "fresh_test", "regression")
# The columns a dataset is logged with: enough for a digest that identifies the rows, a schema
# and a row count; `split`, `source` and the rest add nothing a reviewer needs here.
DATASET_COLUMNS = ("text", "label", "batch_id", "row_hash")
# MLflow's limits (mlflow.utils.validation), restated so importing this module needs no mlflow.
MAX_DATASET_NAME_LENGTH = 500
MAX_DATASET_SOURCE_LENGTH = 65_535
# The registry's SQL schema stores a version description in a VARCHAR(5000) (PostgreSQL enforces
# it); a run's description is the tag `mlflow.note.content`, limited to 8000 characters.
MAX_VERSION_DESCRIPTION_LENGTH = 5000
MAX_RUN_DESCRIPTION_LENGTH = 8000


class InvalidDatasetError(RegistryError, ValueError):
    """A dataset handed to log_candidate that cannot be logged as an MLflow dataset input."""

    def __init__(self, index: int, name: object, problem: str) -> None:
        self.index, self.name, self.problem = index, name, problem
        super().__init__(
            f"dataset #{index} ({name!r}) {problem}; expected {{'name': str, 'context': one of "
            f"{', '.join(DATASET_CONTEXTS)}, 'rows': a pandas DataFrame with columns "
            f"{', '.join(DATASET_COLUMNS)}, 'source': a path or URI of the rows}}"
        )


def review_tags(
    *,
    decision: str,
    reasons: Sequence[str],
    parent_version: str | None,
    batch_ids: Sequence[str],
    batch_checksums: Sequence[str],
    rows_new: int,
    rows_replay: int,
    validation_status: str | None = None,
    **extra: Any,
) -> dict[str, str]:
    """The documented review tags as strings; `extra` adds other `cltool.*` tags (cycle id, trigger).

    `validation_status` defaults to what the decision means (see TAG_KEYS); an unknown decision is
    'failed', never 'passed'.
    Long values are not cut here: logging clips each to the store's limit with a visible marker.
    """
    if len(batch_ids) != len(batch_checksums):
        raise ValueError(
            f"{len(batch_ids)} batch ids but {len(batch_checksums)} checksums; expected one checksum per batch"
        )
    tags = {
        "cltool.decision": decision,
        "cltool.reasons": " | ".join(reasons),
        "cltool.parent_version": parent_version if parent_version is not None else "none",
        "cltool.batches": ",".join(batch_ids),
        "cltool.batch_checksums": ",".join(batch_checksums),
        "cltool.rows_new": str(int(rows_new)),
        "cltool.rows_replay": str(int(rows_replay)),
        "validation_status": validation_status or _STATUS.get(decision, "failed"),
    }
    tags.update({key: str(value) for key, value in extra.items()})
    return tags


def fit_description(text: str, limit: int) -> str:
    """`text` if it fits, else its first whole lines and a closing note: cutting inside a line
    would break a Markdown table row (or a link) and the UI would render the rest as garbage."""
    if len(text) <= limit:
        return text
    note = "\n\n*…description clipped to fit the store; the full text is the run artifact `description.md`.*"
    kept: list[str] = []
    used = len(note)
    for line in text.splitlines():
        if used + len(line) + 1 > limit:
            break
        kept.append(line)
        used += len(line) + 1
    return "\n".join(kept) + note


def accuracy_by_group(
    groups: Sequence[str], truth: Sequence[str], predictions: Mapping[str, Sequence[str] | None]
) -> tuple[list[list[float | None]], list[str], list[str]]:
    """(matrix, row labels, column labels) for `plots.accuracy_matrix_png`: one row per model in
    `predictions` (a None entry — no champion yet — is left out), one column per group (batch id
    or source) in first-seen order, each cell that model's accuracy on that group's rows."""
    columns = list(dict.fromkeys(groups))
    models = {name: list(pred) for name, pred in predictions.items() if pred is not None}
    for name, pred in models.items():
        if not len(pred) == len(truth) == len(groups):
            raise ValueError(
                f"{len(groups)} groups, {len(truth)} labels and {len(pred)} predictions of {name!r}; "
                "expected one group, one label and one prediction per row"
            )
    matrix = []
    for pred in models.values():
        right: dict[str, int] = dict.fromkeys(columns, 0)
        seen: dict[str, int] = dict.fromkeys(columns, 0)
        for group, expected, got in zip(groups, truth, pred):
            seen[group] += 1
            right[group] += expected == got
        matrix.append([right[c] / seen[c] if seen[c] else None for c in columns])
    return matrix, list(models), columns


def dataset_inputs(datasets: Iterable[Mapping[str, Any]]) -> list[Any]:
    """Validate the datasets and build MLflow `DatasetInput`s, before any run exists: a bad dataset
    must fail the call with nothing logged, like every other bad input to log_candidate."""
    import pandas as pd

    built = []
    for index, spec in enumerate(datasets):
        if not isinstance(spec, Mapping):
            raise InvalidDatasetError(index, None, f"is a {type(spec).__name__}, not a dict")
        name = spec.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidDatasetError(index, name, "has no name")
        context = spec.get("context")
        if context not in DATASET_CONTEXTS:
            raise InvalidDatasetError(index, name, f"has context {context!r}")
        rows = spec.get("rows")
        if not isinstance(rows, pd.DataFrame):
            raise InvalidDatasetError(index, name, f"has rows of type {type(rows).__name__}")
        missing = [column for column in DATASET_COLUMNS if column not in rows.columns]
        if missing:
            raise InvalidDatasetError(index, name, f"lacks the column(s) {', '.join(missing)}")
        source = spec.get("source")
        if not isinstance(source, str) or not source or len(source) > MAX_DATASET_SOURCE_LENGTH:
            raise InvalidDatasetError(index, name, f"has source {str(source)[:100]!r}")
        built.append(_dataset_input(rows, name, context, _source(index, name, source)))
    return built


STATE_SOURCE_PREFIX = "cltool-state:"


def _state_store_source(uri: str) -> Any:
    """A dataset source for rows in cltool's state store (a SQL table MLflow has no source type for);
    the MLflow UI shows its type `cltool_state_store` and the URI."""
    from mlflow.data.dataset_source import DatasetSource

    class StateStoreSource(DatasetSource):
        def __init__(self, uri: str) -> None:
            self.uri = uri

        @staticmethod
        def _get_source_type() -> str:
            return "cltool_state_store"

        def load(self) -> Any:
            raise NotImplementedError("the rows are read through cltool's state store, not by MLflow")

        @staticmethod
        def _can_resolve(raw_source: Any) -> bool:
            return isinstance(raw_source, str) and raw_source.startswith(STATE_SOURCE_PREFIX)

        @classmethod
        def _resolve(cls, raw_source: Any) -> "StateStoreSource":
            return cls(raw_source)

        def to_dict(self) -> dict[str, Any]:
            return {"uri": self.uri}

        @classmethod
        def from_dict(cls, source_dict: dict[Any, Any]) -> "StateStoreSource":
            return cls(source_dict["uri"])

    return StateStoreSource(uri)


def _source(index: int, name: str, source: str) -> Any:
    """MLflow's source for a path or URI: `cltool-state:<store URL>#rows` (the daemon's rows, in its
    state store), a local path, s3:// and the other artifact-store schemes. A scheme MLflow has no
    resolver for is refused here, before the run exists."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.exceptions import MlflowException

    if source.startswith(STATE_SOURCE_PREFIX):
        return _state_store_source(source)
    try:
        with warnings.catch_warnings():
            # Two resolvers claim local paths; MLflow warns that the path "can be interpreted in
            # multiple ways" and picks the local one, which is what is meant.
            warnings.simplefilter("ignore", UserWarning)
            return resolve_dataset_source(source)
    except MlflowException as exc:
        raise InvalidDatasetError(index, name, f"has source {source!r}, which MLflow cannot resolve") from exc


def rows_digest(rows: Any) -> str:
    """16 hex characters identifying the set of rows: sha256 over their sorted (row_hash, label)
    pairs. MLflow's own pandas digest hashes only the first 10,000 rows; this one sees every row,
    ignores their order, and changes when a row or its label changes."""
    pairs = sorted(f"{h}\t{label}" for h, label in zip(rows["row_hash"].astype(str), rows["label"].astype(str)))
    return hashlib.sha256("\n".join(pairs).encode("utf-8")).hexdigest()[:16]


def _dataset_input(rows: Any, name: str, context: str, source: Any) -> Any:
    from mlflow.data.pandas_dataset import from_pandas
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.types import ColSpec, Schema
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    # Only the columns a reviewer needs, as strings: a Parquet round trip may hand back
    # categoricals or pyarrow strings, and the schema shown should not depend on that.
    frame = rows.loc[:, list(DATASET_COLUMNS)].astype("string").reset_index(drop=True)
    dataset = from_pandas(
        frame, source=source, name=name[:MAX_DATASET_NAME_LENGTH], targets="label", digest=rows_digest(frame)
    )
    # The schema is known (four string columns); MLflow would infer it by visiting every cell,
    # about 10 µs a row. `schema` is a functools.cached_property, so setting it skips that.
    dataset.__dict__["schema"] = Schema([ColSpec("string", column) for column in DATASET_COLUMNS])
    return DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
