"""The promotion gate's policy: how much better a candidate must be, and how much worse it may be.

Declared once, here, as a pydantic model: the daemon's `Settings` embeds it as its `[gate]` section
(a subclass adding the daemon-only `regression_max_rows`), so each field's default, range and help
text (which `cltool init` writes into a config file) live in one place.

Two ways in, on purpose:
- `GatePolicy(max_forgetting=0.02)` from Python is strict: no "0.02" for a float, no True or 2.5 for
  an integer. A bad value raises `InvalidPolicyError`, naming the field, the value and what is
  allowed (derived from the field's own constraints below, not from a second table).
- Validation as part of a larger model (the daemon's TOML file and `CLTOOL_GATE__*` environment
  strings) and `GatePolicy.model_validate(stored)` (a version's stored config) are pydantic's usual
  lax validation and raise pydantic's `ValidationError`, located at the field.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo

from registry.errors import InvalidPolicyError


class GatePolicy(BaseModel):
    """How much better a candidate must be, and how much worse it may be, to replace the champion."""

    model_config = {"extra": "forbid", "frozen": True}

    # Ranges wide enough for any sane policy, narrow enough to catch a percentage typed as 5 instead of 0.05.
    max_forgetting: float = Field(
        0.02, ge=0.0, le=1.0,
        description="Largest allowed drop (absolute) of regression-suite macro-F1 against the champion.",
    )
    min_fresh_gain: float = Field(
        0.0, ge=-1.0, le=1.0, description="Fresh macro-F1 must beat the champion's by this (may be negative)."
    )
    fresh_margin: float = Field(
        0.03, ge=0.0, le=0.5,
        description="Non-inferiority margin: a fresh point gain above min_fresh_gain that is not significant "
                    "still promotes when, with `confidence`, the candidate is not worse than min_fresh_gain minus "
                    "this (0 = demand a significant gain).",
    )
    max_class_drop: float = Field(
        0.25, ge=0.0, le=1.0, description="Largest allowed drop of any class's recall against the champion."
    )
    first_model_min_macro_f1: float = Field(
        0.4, ge=0.0, le=1.0,
        description="Fresh macro-F1 the very first model needs to become champion, when there is none to beat.",
    )
    min_fresh_rows: int = Field(20, ge=1, description="Fewer fresh test rows than this: WAIT for more data.")
    confidence: float = Field(
        0.95, ge=0.5, le=0.999, description="Two-sided confidence of the paired bootstrap intervals."
    )
    bootstrap_samples: int = Field(
        1000, ge=100, le=100_000,
        description="Resamples in each paired bootstrap (about 60 ms per 1,000 on 2,000 rows, two CPU cores).",
    )
    seed: int = Field(0, ge=0, description="Seed of the bootstrap, so a stored decision replays exactly.")
    max_negative_flip_rate: float = Field(
        0.20, ge=0.0, le=1.0,
        description="Cap on the share of rows (fresh + regression) the champion got right and the candidate gets "
                    "wrong, whatever it fixes; below it, broken rows are weighed against fixed ones (sign test).",
    )
    pool_regression: bool = Field(
        True,
        description="A fresh gain within noise is also judged on fresh + regression rows together: a significant "
                    "gain there (and a fresh point gain meeting min_fresh_gain) promotes.",
    )
    max_wait_rows: int = Field(
        400, ge=1,
        description="A gain within the noise WAITs for more fresh rows, up to this many (at least min_fresh_rows); "
                    "then REJECT.",
    )

    def __init__(self, /, **values: Any) -> None:
        try:
            self.__pydantic_validator__.validate_python(values, self_instance=self, strict=True)
        except ValidationError as exc:
            raise _policy_error(type(self), exc) from None

    # Tells pydantic this __init__ is its own (it only adds strictness): without the mark, pydantic
    # would call it for a policy nested in the daemon's Settings and in model_validate too, making
    # those strict as well, so the environment's strings could not set a number.
    __init__.__pydantic_base_init__ = True  # type: ignore[attr-defined]

    @model_validator(mode="after")
    def _wait_covers_min_rows(self) -> GatePolicy:
        if self.max_wait_rows < self.min_fresh_rows:
            raise InvalidPolicyError("max_wait_rows", self.max_wait_rows,
                                     f"an integer >= min_fresh_rows ({self.min_fresh_rows})", type(self).__name__)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()


_OPERATORS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}


def expected(field: FieldInfo) -> str:
    """What a field allows, from its type and its ge/gt/le/lt constraints: 'a number in [0.0, 1.0]'."""
    integer = field.annotation is int
    noun = "an integer" if integer else "a number"
    shown = {key: repr(int(value) if integer else float(value))
             for constraint in field.metadata for key in _OPERATORS
             if (value := getattr(constraint, key, None)) is not None}
    low = next((key for key in ("ge", "gt") if key in shown), None)
    high = next((key for key in ("le", "lt") if key in shown), None)
    if low and high:
        return f"{noun} in {'[' if low == 'ge' else '('}{shown[low]}, {shown[high]}{']' if high == 'le' else ')'}"
    if low or high:
        return f"{noun} {_OPERATORS[low or high]} {shown[low or high]}"
    return noun


def _policy_error(cls: type[GatePolicy], exc: ValidationError) -> InvalidPolicyError:
    """The first problem pydantic found, as the registry's error naming field, value and range."""
    error = exc.errors()[0]
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidPolicyError):  # raised by a model validator above, already complete
        return cause
    name = ".".join(str(part) for part in error["loc"])
    if error["type"] == "extra_forbidden":
        allowed = f"one of its fields ({', '.join(cls.model_fields)})"
    elif name in cls.model_fields:
        allowed = expected(cls.model_fields[name])
    else:
        allowed = error["msg"]
    return InvalidPolicyError(name, error["input"], allowed, cls.__name__)
