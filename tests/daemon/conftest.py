from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from daemon.config import load_settings
from daemon.ingest.inbox import Inbox
from daemon.state.store import StateStore


@pytest.fixture
def settings(tmp_path):
    return load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"))


@pytest.fixture
def store(settings):
    return StateStore(settings.store_url)


@pytest.fixture
def inbox(settings, store):
    return Inbox(settings, store, settle_seconds=0)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    pd.DataFrame(rows, columns=["text", "label"]).to_csv(path, index=False)
    return path


def sentences(n: int, start: int = 0) -> list[tuple[str, str]]:
    labels = ["negative", "neutral", "positive"]
    return [(f"company {i} reports quarter number {i * 7}", labels[i % 3]) for i in range(start, start + n)]
