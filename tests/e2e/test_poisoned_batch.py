"""A label-poisoned batch (positive and negative swapped) is rejected, on the real packaged MiniLM
with a real MLflow store. Its own test rows are poisoned too, so the candidate may even look good
on them; the regression suite of clean past rows must catch it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from daemon.config import load_settings
from daemon.context import open_context
from daemon.cycle.run import run_cycle

pytestmark = pytest.mark.integration

DEMO = Path(__file__).resolve().parents[2] / "data" / "demo"


def test_label_poisoned_batch_is_rejected(tmp_path):
    settings = load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"),
                             model={"max_length": 48})
    ctx = open_context(settings, owner="test")
    tweets = pd.read_csv(DEMO / "01-tweets.csv")
    tweets.iloc[:600].to_csv(tmp_path / "clean.csv", index=False)
    poisoned = tweets.iloc[600:1000].copy()
    poisoned["label"] = poisoned["label"].map({"positive": "negative", "negative": "positive", "neutral": "neutral"})
    poisoned.to_csv(tmp_path / "poisoned.csv", index=False)

    assert ctx.inbox.ingest_copy(tmp_path / "clean.csv").status == "accepted"
    first = run_cycle(ctx, "test")
    assert first.outcome == "PROMOTE", first.reasons

    assert ctx.inbox.ingest_copy(tmp_path / "poisoned.csv").status == "accepted"
    second = run_cycle(ctx, "test")
    assert second.outcome == "REJECT", second.reasons
    failed = [reason for reason in second.reasons if reason.endswith("fail")]
    assert any(word in " ".join(failed) for word in ("regression", "flip", "recall")), second.reasons
    assert ctx.keeper.alias_version("champion") == first.version
    assert ctx.keeper.alias_version("challenger") == second.version
