"""The bounded reservoir and the recency-weighted policy: size, balance, weighting, determinism, state."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrain.config import ReplayConfig
from retrain.errors import ReplayStateError
from retrain.replay import (
    ClassBalancedReplay,
    RecencyReplay,
    ReservoirReplay,
    make_replay,
    replay_from_state,
)

LABELS = ["negative", "neutral", "positive"]


def stream(n: int, start: int = 0) -> pd.DataFrame:
    """n rows with unique hashes; labels cycle so every class is in every slice."""
    ids = range(start, start + n)
    return pd.DataFrame({"text": [f"text {i}" for i in ids], "label": [LABELS[i % 3] for i in ids],
                         "row_hash": [f"h{i}" for i in ids], "batch_id": [f"b{i // 100}" for i in ids],
                         "split": "train"})


# -- reservoir ---------------------------------------------------------------------------------
def test_reservoir_memory_is_bounded_whatever_the_stream_length():
    reservoir = ReservoirReplay(capacity=50)
    for start in range(0, 1000, 100):
        reservoir.observe(stream(100, start), seed=0)
    assert reservoir.seen == 1000
    assert len(reservoir.buffer) == 50
    assert len({row["row_hash"] for row in reservoir.buffer}) == 50


def test_reservoir_keeps_every_row_while_it_fits():
    reservoir = ReservoirReplay(capacity=500)
    reservoir.observe(stream(120), seed=0)
    assert [row["row_hash"] for row in reservoir.buffer] == [f"h{i}" for i in range(120)]


def test_reservoir_is_a_uniform_sample_of_the_whole_stream():
    # Over many seeds each half of a 400-row stream fills about half of a 40-row reservoir:
    # algorithm R gives every row the same chance, old or new.
    early = []
    for seed in range(200):
        reservoir = ReservoirReplay(capacity=40)
        reservoir.observe(stream(200), seed=seed)
        reservoir.observe(stream(200, start=200), seed=seed)
        early.append(sum(int(row["row_hash"][1:]) < 200 for row in reservoir.buffer))
    assert 18 < np.mean(early) < 22


def test_reservoir_sample_is_class_balanced_and_needs_no_history():
    reservoir = ReservoirReplay(capacity=90)
    reservoir.observe(stream(300), seed=1)
    sample = reservoir.sample(pd.DataFrame(), 30, LABELS, seed=0)
    assert len(sample) == 30
    assert sample["label"].value_counts().to_dict() == {"negative": 10, "neutral": 10, "positive": 10}
    assert set(sample["row_hash"]) <= {row["row_hash"] for row in reservoir.buffer}


def test_reservoir_is_deterministic_under_a_seed():
    def run(seed: int) -> list[str]:
        reservoir = ReservoirReplay(capacity=30)
        reservoir.observe(stream(100), seed=seed)
        reservoir.observe(stream(100, 100), seed=seed)
        return [row["row_hash"] for row in reservoir.buffer]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_reservoir_state_round_trips_through_json_and_continues_identically():
    original = ReservoirReplay(capacity=25)
    original.observe(stream(100), seed=5)
    restored = replay_from_state(json.loads(json.dumps(original.state_dict())))
    assert isinstance(restored, ReservoirReplay)
    assert (restored.capacity, restored.seen, restored.buffer) == (25, 100, original.buffer)
    original.observe(stream(50, 100), seed=5)
    restored.observe(stream(50, 100), seed=5)
    assert restored.buffer == original.buffer


def test_reservoir_refuses_a_state_bigger_than_its_capacity():
    state = {"policy": "reservoir", "capacity": 2, "seen": 3, "buffer": [{"text": "a"}] * 3}
    with pytest.raises(ReplayStateError, match="buffer"):
        replay_from_state(state)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True])
def test_reservoir_capacity_must_be_a_positive_integer(bad):
    with pytest.raises(ReplayStateError, match="capacity"):
        ReservoirReplay(capacity=bad)


# -- recency -----------------------------------------------------------------------------------
def test_recency_weights_halve_every_half_life():
    weights = RecencyReplay(half_life_rows=10).row_weights(31)
    assert weights[-1] == 1.0
    assert weights[-11] == pytest.approx(0.5)
    assert weights[-21] == pytest.approx(0.25)
    assert weights[0] == pytest.approx(0.125)


def test_recency_prefers_new_rows_and_stays_class_balanced():
    history = stream(3000)
    sample = RecencyReplay(half_life_rows=300).sample(history, 300, LABELS, seed=0)
    positions = sample.index.to_numpy()
    # Under a half-life of 300 rows the newest 300 rows hold half the weight; uniform would give 10 %.
    assert (positions >= 2700).mean() > 0.4
    assert sample["label"].value_counts().to_dict() == {"negative": 100, "neutral": 100, "positive": 100}
    assert sample.index.is_unique


def test_a_long_half_life_is_close_to_uniform():
    history = stream(3000)
    sample = RecencyReplay(half_life_rows=10**9).sample(history, 600, LABELS, seed=0)
    assert 0.05 < (sample.index.to_numpy() >= 2700).mean() < 0.15


def test_recency_is_deterministic_and_round_trips():
    history = stream(500)
    policy = make_replay(ReplayConfig(policy="recency", half_life_rows=50))
    restored = replay_from_state(json.loads(json.dumps(policy.state_dict())))
    assert restored.state_dict() == {"policy": "recency", "label_column": "label", "half_life_rows": 50}
    a = policy.sample(history, 60, LABELS, seed=1)
    assert a.equals(restored.sample(history, 60, LABELS, seed=1))
    assert not a.equals(policy.sample(history, 60, LABELS, seed=2))


def test_history_policies_ignore_observe():
    policy = ClassBalancedReplay()
    before = policy.state_dict()
    policy.observe(stream(10), seed=0)
    assert policy.state_dict() == before
