"""Fit arbitrary params, tags and metrics into what an MLflow store accepts.

MLflow rejects a whole batch for one key with a character it does not allow, one value over its
length limit or more than 100 params per request; a training config is nested and may hold long
lists. These helpers flatten, stringify and clip so logging a candidate never fails on its
metadata, and a clipped value says that it was clipped.
"""

from __future__ import annotations

import hashlib
import numbers
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeVar

from registry.errors import InvalidMetricError

# The limits of mlflow.utils.validation in mlflow 3.x, restated so this module needs no mlflow.
MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_RUN_TAG_VALUE_LENGTH = 8000
MAX_VERSION_TAG_VALUE_LENGTH = 100_000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000

# MLflow allows alphanumerics, underscores, dashes, periods, spaces, slashes (and colons on
# POSIX); anything else would make the store refuse the key.
_BAD_KEY_CHARS = re.compile(r"[^\w\-. /:]")

T = TypeVar("T")


def flatten(values: Mapping[str, Any], prefix: str = "", sep: str = ".") -> dict[str, Any]:
    """{"train": {"lr": 1e-5}} -> {"train.lr": 1e-5}; lists and scalars are kept as leaves."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{sep}{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, name, sep))
        else:
            flat[name] = value
    return flat


def safe_key(key: str) -> str:
    """A key MLflow accepts: bad characters become '_', an over-long key keeps a hash suffix so
    two long keys that share a prefix stay distinct."""
    key = _BAD_KEY_CHARS.sub("_", str(key)) or "_"
    if len(key) <= MAX_KEY_LENGTH:
        return key
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{key[: MAX_KEY_LENGTH - 11]}~{digest}"


def clip(value: Any, limit: int) -> str:
    """str(value), cut to `limit` characters with a marker saying how much was cut."""
    text = value if isinstance(value, str) else str(value)
    if len(text) <= limit:
        return text
    marker = f"…[+{len(text) - limit} chars]"
    return text[: limit - len(marker)] + marker


def params_for_mlflow(params: Mapping[str, Any]) -> dict[str, str]:
    return {safe_key(k): clip(v, MAX_PARAM_VALUE_LENGTH) for k, v in flatten(params).items()}


def tags_for_mlflow(tags: Mapping[str, Any], limit: int = MAX_RUN_TAG_VALUE_LENGTH) -> dict[str, str]:
    return {safe_key(k): clip(v, limit) for k, v in tags.items()}


def metrics_for_mlflow(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Flattened float metrics; NaN and inf are kept (MLflow stores them), non-numbers raise."""
    out: dict[str, float] = {}
    for key, value in flatten(metrics).items():
        # numbers.Real also admits numpy scalars (np.float32 is not a float subclass).
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise InvalidMetricError(key, value)
        out[safe_key(key)] = float(value)
    return out


def chunks(items: Sequence[T], size: int) -> Iterator[list[T]]:
    """Fixed-size slices, because one MLflow batch request holds a bounded number of entries."""
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
