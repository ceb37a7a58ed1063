from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from retrain.config import ReplayConfig
from retrain.errors import MissingColumnError, ReplayStateError, UnknownReplayPolicyError
from retrain.replay import (
    ClassBalancedReplay,
    RecencyReplay,
    ReplayPolicy,
    ReservoirReplay,
    balanced_quotas,
    make_replay,
    replay_from_state,
)

LABELS = ["negative", "neutral", "positive"]


def history_of(counts: dict[str, int]) -> pd.DataFrame:
    """A history frame with unique ids/texts, labels grouped, and an extra column to keep."""
    labels = [label for label, count in counts.items() for _ in range(count)]
    return pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(len(labels))],
            "text": [f"text {i}" for i in range(len(labels))],
            "label": labels,
            "batch": [i % 7 for i in range(len(labels))],
        }
    )


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    return history_of({"negative": 100, "positive": 10, "neutral": 500})


def test_rare_class_gives_all_it_has_and_the_rest_is_split_evenly(history):
    sample = ClassBalancedReplay().sample(history, 60, LABELS, seed=0)
    assert sample["label"].value_counts().to_dict() == {"positive": 10, "negative": 25, "neutral": 25}
    assert list(sample.columns) == list(history.columns)
    # Every sampled row is a real, unaltered history row.
    assert sample.merge(history, how="left", indicator=True)["_merge"].eq("both").all()


def test_uneven_remainder_goes_to_one_class_and_total_is_exact(history):
    sample = ClassBalancedReplay().sample(history, 61, LABELS, seed=0)
    counts = sample["label"].value_counts().to_dict()
    assert len(sample) == 61
    assert counts["positive"] == 10
    assert sorted([counts["negative"], counts["neutral"]]) == [25, 26]


def test_size_is_bounded_by_n_and_by_the_history(history):
    assert len(ClassBalancedReplay().sample(history, 7, LABELS, seed=1)) == 7
    everything = ClassBalancedReplay().sample(history, 10_000, LABELS, seed=1)
    assert len(everything) == len(history)
    assert set(everything["id"]) == set(history["id"])


def test_no_row_is_picked_twice(history):
    sample = ClassBalancedReplay().sample(history, 300, LABELS, seed=3)
    assert len(sample) == 300
    assert sample["id"].is_unique
    assert sample.index.is_unique


def test_same_seed_same_sample_other_seed_other_sample(history):
    replay = ClassBalancedReplay()
    first = replay.sample(history, 60, LABELS, seed=42)
    again = replay.sample(history, 60, LABELS, seed=42)
    other = replay.sample(history, 60, LABELS, seed=43)
    pd.testing.assert_frame_equal(first, again)
    assert set(first["id"]) != set(other["id"])


def test_empty_cases_keep_the_columns(history):
    replay = ClassBalancedReplay()
    for sample in (
        replay.sample(history, 0, LABELS, seed=0),
        replay.sample(history, -5, LABELS, seed=0),
        replay.sample(history.iloc[:0], 60, LABELS, seed=0),
    ):
        assert sample.empty
        assert list(sample.columns) == list(history.columns)


def test_rows_with_labels_outside_the_list_are_never_replayed():
    history = history_of({"negative": 5, "retired": 50, "positive": 5})
    sample = ClassBalancedReplay().sample(history, 20, ["negative", "positive"], seed=0)
    assert sample["label"].value_counts().to_dict() == {"negative": 5, "positive": 5}


def test_a_label_never_seen_in_history_does_not_take_a_share():
    history = history_of({"negative": 30, "positive": 30})
    sample = ClassBalancedReplay().sample(history, 20, LABELS, seed=0)
    assert sample["label"].value_counts().to_dict() == {"negative": 10, "positive": 10}


def test_missing_label_column_is_named(history):
    with pytest.raises(MissingColumnError, match="'sentiment'"):
        ClassBalancedReplay(label_column="sentiment").sample(history, 10, LABELS, seed=0)


def test_quotas_water_fill():
    rng = np.random.default_rng(0)
    assert balanced_quotas({"a": 1, "b": 4, "c": 100}, 12, rng) == {"a": 1, "b": 4, "c": 7}
    assert balanced_quotas({"a": 0, "b": 3}, 12, rng) == {"a": 0, "b": 3}
    assert sum(balanced_quotas({"a": 5, "b": 5, "c": 5}, 2, rng).values()) == 2


def test_state_round_trip_through_json():
    replay = ClassBalancedReplay(label_column="sentiment")
    state = json.loads(json.dumps(replay.state_dict()))
    assert state == {"policy": "class_balanced", "label_column": "sentiment"}
    restored = replay_from_state(state)
    assert isinstance(restored, ClassBalancedReplay)
    assert restored.label_column == "sentiment"
    fresh = ClassBalancedReplay()
    fresh.load_state_dict(state)
    assert fresh.state_dict() == state


def test_state_of_another_policy_is_refused():
    with pytest.raises(ReplayStateError, match="'reservoir'"):
        ClassBalancedReplay().load_state_dict({"policy": "reservoir"})


def test_unknown_policy_names_the_known_ones():
    with pytest.raises(UnknownReplayPolicyError) as caught:
        replay_from_state({"policy": "fifo"})
    assert "'fifo'" in str(caught.value)
    assert "'class_balanced'" in str(caught.value)
    assert isinstance(make_replay(ReplayConfig()), ReplayPolicy)


def test_make_replay_builds_every_configured_policy_with_its_settings():
    for policy in ("class_balanced", "reservoir", "recency"):
        assert make_replay(ReplayConfig(policy=policy)).name == policy
    assert make_replay(ReplayConfig(policy="reservoir", reservoir_capacity=7)).capacity == 7
    assert make_replay(ReplayConfig(policy="recency", half_life_rows=9)).half_life_rows == 9


def test_constructor_defaults_are_the_configs():
    assert ReservoirReplay().capacity == ReplayConfig().reservoir_capacity == 5000
    assert RecencyReplay().half_life_rows == ReplayConfig().half_life_rows == 5000
