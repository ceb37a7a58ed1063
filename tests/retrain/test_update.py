"""The one update recipe: replay sample, val mix, teacher columns and the replay state to save (no model needed)."""

from __future__ import annotations

import pandas as pd
import pytest

from retrain.config import ReplayConfig
from retrain.errors import MissingColumnError
from retrain.replay import ReservoirReplay, replay_from_state
from retrain.update import Teacher, UpdateRows, prepare_update, split, stratified_cap

LABELS = ["negative", "neutral", "positive"]


def batch(batch_id: str, train: int, val: int = 0, test: int = 0, start: int = 0) -> pd.DataFrame:
    """One batch's rows in the ledger's shape; labels cycle, hashes and texts are unique across batches."""
    splits = ["train"] * train + ["val"] * val + ["test"] * test
    ids = range(start, start + len(splits))
    return pd.DataFrame({"row_hash": [f"h{i:05d}" for i in ids], "text": [f"text {i}" for i in ids],
                         "label": [LABELS[i % 3] for i in ids], "split": splits, "batch_id": batch_id})


@pytest.fixture
def past() -> pd.DataFrame:
    return pd.concat([batch("b1", 300, 60, 30, start=0), batch("b2", 300, 60, 30, start=1000)], ignore_index=True)


@pytest.fixture
def new() -> pd.DataFrame:
    return batch("b3", 100, 20, 20, start=5000)


def test_a_first_update_trains_on_the_new_rows_alone(new):
    rows = prepare_update(new, new.iloc[:0], LABELS, ReplayConfig(), None, seed=0)
    assert isinstance(rows, UpdateRows)
    assert rows.replay.empty
    assert rows.train_rows["row_hash"].tolist() == split(new, "train")["row_hash"].tolist()
    assert rows.val_rows["row_hash"].tolist() == split(new, "val")["row_hash"].tolist()
    assert rows.replay_state == {"policy": "class_balanced", "label_column": "label"}


def test_replay_is_ratio_times_the_new_train_rows_drawn_class_balanced_from_past_train(new, past):
    rows = prepare_update(new, past, LABELS, ReplayConfig(ratio=0.9), None, seed=0)
    assert len(rows.replay) == 90
    assert rows.replay["label"].value_counts().to_dict() == {label: 30 for label in LABELS}
    assert set(rows.replay["row_hash"]) <= set(split(past, "train")["row_hash"])
    # New rows first, then the replayed ones; nothing else (no val, no test, no teacher column).
    assert rows.train_rows["row_hash"].tolist() == rows.new_train["row_hash"].tolist() + rows.replay["row_hash"].tolist()
    assert set(rows.train_rows["split"]) == {"train"}
    assert "teacher_probs" not in rows.train_rows.columns
    assert prepare_update(new, past, LABELS, ReplayConfig(ratio=0), None, seed=0).replay.empty


def test_val_is_the_new_val_rows_plus_a_stratified_sample_of_past_val(past):
    new = batch("b3", 100, 60, 20, start=5000)
    rows = prepare_update(new, past, LABELS, ReplayConfig(), None, seed=0)
    assert rows.val_rows["row_hash"].tolist()[:60] == split(new, "val")["row_hash"].tolist()
    past_part = rows.val_rows.iloc[60:]
    # As many past val rows as new ones, each old batch and label in its share.
    assert set(past_part["row_hash"]) <= set(split(past, "val")["row_hash"])
    assert past_part.groupby(["batch_id", "label"]).size().tolist() == [10] * 6


def test_a_small_new_val_split_still_gets_about_50_past_val_rows(new, past):
    rows = prepare_update(new, past, LABELS, ReplayConfig(), None, seed=0)
    # 50 of the 120 past val rows: 50/120 of each (batch, label) group of 20, rounded (8 each).
    assert len(rows.val_rows) == 20 + 48


def test_same_seed_same_rows_other_seed_other_sample(new, past):
    config = ReplayConfig()
    first, again = (prepare_update(new, past, LABELS, config, None, seed=3) for _ in range(2))
    pd.testing.assert_frame_equal(first.train_rows, again.train_rows)
    pd.testing.assert_frame_equal(first.val_rows, again.val_rows)
    other = prepare_update(new, past, LABELS, config, None, seed=4)
    assert set(first.replay["row_hash"]) != set(other.replay["row_hash"])


def test_a_fresh_reservoir_starts_full_and_its_saved_state_has_seen_the_new_rows(new, past):
    config = ReplayConfig(policy="reservoir", reservoir_capacity=200)
    rows = prepare_update(new, past, LABELS, config, None, seed=0)
    assert len(rows.replay) == 90  # drawn from a buffer filled with the 600 past train rows
    assert set(rows.replay["row_hash"]) <= set(split(past, "train")["row_hash"])
    state = rows.replay_state
    assert (state["policy"], state["capacity"], state["seen"], len(state["buffer"])) == ("reservoir", 200, 700, 200)


def test_a_saved_state_of_the_configured_policy_is_continued(new, past):
    saved = ReservoirReplay(capacity=50)
    saved.observe(batch("old", 80, start=9000), seed=0)  # rows that are not in `past`: only the state knows them
    state = saved.state_dict()
    rows = prepare_update(new, past, LABELS, ReplayConfig(policy="reservoir"), state, seed=0)
    assert set(rows.replay["row_hash"]) <= {row["row_hash"] for row in state["buffer"]}
    continued = replay_from_state(state)
    continued.observe(split(new, "train"), seed=0)
    assert rows.replay_state == continued.state_dict()


def test_a_saved_state_of_another_policy_gives_a_fresh_one_that_has_seen_the_history(new, past):
    state = {"policy": "class_balanced", "label_column": "label"}
    rows = prepare_update(new, past, LABELS, ReplayConfig(policy="reservoir"), state, seed=0)
    assert rows.replay_state["policy"] == "reservoir"
    assert rows.replay_state["seen"] == 600 + 100
    recency = prepare_update(new, past, LABELS, ReplayConfig(policy="recency", half_life_rows=7), state, seed=0)
    assert recency.replay_state == {"policy": "recency", "label_column": "label", "half_life_rows": 7}


def test_a_teacher_labels_the_replayed_rows_only_in_the_updates_label_order(new, past):
    asked: list[list[str]] = []

    def probabilities(texts: list[str]) -> list[list[float]]:
        asked.append(texts)
        return [[0.7, 0.3]] * len(texts)

    # The champion's head knows two classes; this update trains three (the head grows for "neutral").
    teacher = Teacher(probabilities, ["negative", "positive"])
    rows = prepare_update(new, past, LABELS, ReplayConfig(), None, seed=0, teacher=teacher)
    assert asked == [rows.replay["text"].tolist()]
    probs = rows.train_rows["teacher_probs"].tolist()
    assert probs[:100] == [None] * 100
    assert probs[100:] == [[0.7, 0.0, 0.3]] * 90
    same_head = prepare_update(new, past, LABELS, ReplayConfig(), None, seed=0,
                               teacher=Teacher(lambda texts: [[0.2, 0.3, 0.5]] * len(texts), LABELS))
    assert same_head.train_rows["teacher_probs"].tolist()[100:] == [[0.2, 0.3, 0.5]] * 90


def test_no_replay_asks_the_teacher_nothing(new, past):
    def probabilities(texts: list[str]) -> list[list[float]]:
        raise AssertionError("the teacher must not be asked")

    rows = prepare_update(new, past, LABELS, ReplayConfig(ratio=0), None, seed=0,
                          teacher=Teacher(probabilities, LABELS))
    assert "teacher_probs" not in rows.train_rows.columns


def test_stratified_cap_keeps_each_batch_and_label_share():
    rows = pd.concat([batch("b1", 300), batch("b2", 600, start=1000)], ignore_index=True)
    capped = stratified_cap(rows, 90, seed=0)
    assert len(capped) == 90
    assert capped.groupby(["batch_id", "label"]).size().tolist() == [10, 10, 10, 20, 20, 20]
    assert capped["row_hash"].is_monotonic_increasing
    pd.testing.assert_frame_equal(capped, stratified_cap(rows, 90, seed=0))
    small = rows.iloc[5:20]
    pd.testing.assert_frame_equal(stratified_cap(small, 90, seed=0), small.reset_index(drop=True))


def test_rows_without_a_split_are_refused(new):
    with pytest.raises(MissingColumnError, match="'split'"):
        prepare_update(new.drop(columns="split"), new.iloc[:0], LABELS, ReplayConfig(), None, seed=0)
