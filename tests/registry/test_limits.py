"""Params, tags and metrics squeezed into what an MLflow store accepts."""

from __future__ import annotations

import numpy as np
import pytest

from registry.errors import InvalidMetricError
from registry.limits import (
    MAX_KEY_LENGTH,
    MAX_PARAM_VALUE_LENGTH,
    chunks,
    clip,
    metrics_for_mlflow,
    params_for_mlflow,
    safe_key,
)


def test_nested_params_are_flattened_and_stringified():
    params = {"train": {"lr": 2e-5, "epochs": 3, "labels": ["a", "b"]}, "seed": 7, "empty": {}}
    assert params_for_mlflow(params) == {
        "train.lr": "2e-05",
        "train.epochs": "3",
        "train.labels": "['a', 'b']",
        "seed": "7",
        "empty": "{}",
    }


def test_long_value_is_clipped_to_the_limit_and_says_so():
    value = params_for_mlflow({"ids": "x" * 10_000})["ids"]
    assert len(value) == MAX_PARAM_VALUE_LENGTH
    assert value.startswith("xxx") and value.endswith("chars]")
    assert clip("abcdefghijklmnopqrstuvwxyz", 20) == "abcdefghi…[+6 chars]"
    assert clip("short", 10) == "short"


def test_keys_lose_forbidden_characters_and_long_keys_stay_distinct():
    assert safe_key("loss@epoch=1") == "loss_epoch_1"
    a, b = safe_key("k" * 300 + "a"), safe_key("k" * 300 + "b")
    assert len(a) == len(b) == MAX_KEY_LENGTH
    assert a != b


def test_metrics_accept_numpy_and_nan_but_not_text():
    metrics = metrics_for_mlflow({"fresh": {"f1": np.float32(0.5)}, "n": np.int64(3), "loss": float("nan")})
    assert metrics["fresh.f1"] == 0.5 and metrics["n"] == 3.0
    assert metrics["loss"] != metrics["loss"]  # NaN is kept, MLflow stores it
    with pytest.raises(InvalidMetricError, match="metric 'f1' = 'high' is not a number"):
        metrics_for_mlflow({"f1": "high"})


def test_chunks_cover_every_item_once():
    assert list(chunks(list(range(7)), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(chunks([], 3)) == []
