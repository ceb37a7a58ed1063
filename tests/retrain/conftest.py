"""Fixtures for the retrain tests: tiny models built locally, a learnable toy task, no hub."""

from __future__ import annotations

import os

# Set before any test module imports transformers/huggingface_hub, which read these at import:
# a test that reaches for the Hub must fail, not download.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ[_name] = "1"

import random  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from retrain.modeling import build_tiny_model  # noqa: E402
from retrain.train import TrainConfig, TrainResult, fine_tune  # noqa: E402

LABELS = ["negative", "neutral", "positive"]

# Each class has its own keywords among shared filler words: a tiny random BERT learns it in
# a couple of seconds, so a test can tell "learned" from "did not learn".
KEYWORDS = {"negative": ["bad", "awful"], "neutral": ["flat", "steady"], "positive": ["good", "great"]}
FILLER = "the market stock price today company report shares quarter results".split()

# Settings that learn the toy task reliably with the tiny model (checked over many seeds):
# a low learning rate for many short epochs (a high one makes the tiny model merge two classes),
# and no early stopping, because val macro-F1 sits on a plateau for several epochs before rising.
TOY_CONFIG = dict(
    epochs=20, batch_size=8, learning_rate=2e-3, warmup_ratio=0.1, early_stopping_patience=0, device="cpu"
)


def toy_rows(n: int, seed: int) -> pd.DataFrame:
    """n rows cycling through the labels, each a keyword of its class placed among 3 fillers."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % len(LABELS)]
        words = rng.sample(FILLER, 3)
        words.insert(rng.randrange(len(words) + 1), rng.choice(KEYWORDS[label]))
        rows.append({"text": " ".join(words), "label": label})
    return pd.DataFrame(rows)


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Also per test, in case anything reads these at call time or a test changed them.
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")


@pytest.fixture(scope="session")
def labels() -> list[str]:
    return list(LABELS)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained classifier for LABELS; tests must not write into it."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", LABELS, seed=0)


@pytest.fixture(scope="session")
def train_rows() -> pd.DataFrame:
    return toy_rows(60, seed=1)


@pytest.fixture(scope="session")
def val_rows() -> pd.DataFrame:
    return toy_rows(30, seed=2)


@pytest.fixture(scope="session")
def toy_config() -> TrainConfig:
    return TrainConfig(**TOY_CONFIG)


@pytest.fixture(scope="session")
def trained(tiny_model_dir, train_rows, val_rows, labels, toy_config, tmp_path_factory) -> TrainResult:
    """The tiny model fine-tuned on the toy task (about 2 s); tests must not write into it."""
    return fine_tune(
        tiny_model_dir, train_rows, val_rows, labels, tmp_path_factory.mktemp("trained"), toy_config
    )
