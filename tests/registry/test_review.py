"""What a version tells its reviewer: the review tags, the datasets behind it, a description that fits."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from registry.review import (
    DATASET_COLUMNS,
    TAG_KEYS,
    InvalidDatasetError,
    accuracy_by_group,
    dataset_inputs,
    fit_description,
    review_tags,
    rows_digest,
)


def rows(n: int, batch: str = "b1", start: int = 0) -> pd.DataFrame:
    labels = ["negative", "neutral", "positive"]
    return pd.DataFrame({
        "row_hash": [f"{i:064x}" for i in range(start, start + n)],
        "text": [f"sentence {i}" for i in range(start, start + n)],
        "label": [labels[i % 3] for i in range(start, start + n)],
        "split": "train", "batch_id": batch, "published_at": None, "source": "wire",
    })


def spec(**overrides) -> dict:
    base = {"name": "training b1", "context": "training", "rows": rows(30), "source": "/state/rows/b1.parquet"}
    return {**base, **overrides}


def test_review_tags_cover_every_documented_key_and_derive_the_validation_status():
    tags = review_tags(decision="REJECT", reasons=["fresh macro-F1 0.61 < 0.64", "forgetting 0.03 > 0.01"],
                       parent_version="4", batch_ids=["b7", "b8"], batch_checksums=["aa", "bb"],
                       rows_new=120, rows_replay=118, **{"cltool.cycle_id": "c1"})
    assert set(TAG_KEYS) <= set(tags)
    assert tags["cltool.reasons"] == "fresh macro-F1 0.61 < 0.64 | forgetting 0.03 > 0.01"
    assert (tags["cltool.batches"], tags["cltool.batch_checksums"]) == ("b7,b8", "aa,bb")
    assert (tags["cltool.rows_new"], tags["cltool.rows_replay"]) == ("120", "118")
    assert tags["validation_status"] == "failed" and tags["cltool.cycle_id"] == "c1"
    first = review_tags(decision="PROMOTE", reasons=[], parent_version=None, batch_ids=["b1"],
                        batch_checksums=["cc"], rows_new=10, rows_replay=0)
    assert first["validation_status"] == "passed" and first["cltool.parent_version"] == "none"
    waiting = review_tags(decision="WAIT", reasons=[], parent_version="1", batch_ids=[], batch_checksums=[],
                          rows_new=0, rows_replay=0)
    assert waiting["validation_status"] == "pending"


def test_review_tags_refuse_checksums_that_do_not_match_the_batches():
    with pytest.raises(ValueError, match="2 batch ids but 1 checksums"):
        review_tags(decision="PROMOTE", reasons=[], parent_version=None, batch_ids=["b1", "b2"],
                    batch_checksums=["aa"], rows_new=1, rows_replay=0)


def test_fit_description_keeps_whole_lines_and_says_it_clipped():
    table = "\n".join(["| metric | candidate |", "|---|---|"] + [f"| recall class{i} | 0.{i:03d} |" for i in range(400)])
    assert fit_description(table[:300], 5000) == table[:300]
    clipped = fit_description(table, 5000)
    assert len(clipped) <= 5000 and "description clipped" in clipped and "description.md" in clipped
    body = clipped.split("\n\n*…")[0].splitlines()
    assert body == table.splitlines()[: len(body)] and len(body) > 100  # whole rows only, as many as fit


def test_dataset_inputs_log_four_string_columns_with_context_row_count_and_source():
    frame = rows(30)
    frame["label"] = frame["label"].astype("category")  # as a Parquet round trip may return it
    [built] = dataset_inputs([spec(rows=frame)])
    dataset = built.dataset
    assert dataset.name == "training b1" and dataset.source_type == "local"
    assert json.loads(dataset.source) == {"uri": "/state/rows/b1.parquet"}
    assert json.loads(dataset.profile)["num_rows"] == 30
    columns = json.loads(dataset.schema)["mlflow_colspec"]
    assert [(c["name"], c["type"]) for c in columns] == [(name, "string") for name in DATASET_COLUMNS]
    assert [(t.key, t.value) for t in built.tags] == [("mlflow.data.context", "training")]
    assert dataset.digest == rows_digest(frame)


def test_rows_digest_sees_every_row_and_label_but_not_their_order():
    many = rows(12_000)
    relabelled = many.copy()
    relabelled.loc[11_999, "label"] = "negative" if relabelled.loc[11_999, "label"] != "negative" else "neutral"
    assert rows_digest(many) == rows_digest(many.iloc[::-1])
    assert rows_digest(many) != rows_digest(relabelled)  # beyond MLflow's 10,000-row digest window
    assert len(rows_digest(many)) == 16


def test_every_context_is_accepted_and_s3_sources_resolve():
    contexts = ["training", "replay", "fresh_test", "regression"]
    built = dataset_inputs([spec(context=c, name=c, source=f"s3://bucket/{c}.parquet") for c in contexts])
    assert [b.tags[0].value for b in built] == contexts and {b.dataset.source_type for b in built} == {"s3"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"context": "validation"}, "has context 'validation'"),
    ({"name": ""}, "has no name"),
    ({"rows": [("a", "b")]}, "has rows of type list"),
    ({"rows": rows(3).drop(columns=["row_hash"])}, "lacks the column\\(s\\) row_hash"),
    ({"source": "cltool://batches/b1"}, "MLflow cannot resolve"),
    ({"source": None}, "has source 'None'"),
])
def test_a_bad_dataset_is_refused_with_its_position_and_the_problem(overrides, message):
    with pytest.raises(InvalidDatasetError, match=message) as caught:
        dataset_inputs([spec(), spec(**overrides)])
    assert caught.value.index == 1 and "expected {'name': str" in str(caught.value)


def test_accuracy_by_group_gives_one_row_per_model_and_one_column_per_batch():
    groups = ["b1", "b1", "b2", "b2", "b2", "b3"]
    truth = ["a", "b", "a", "a", "b", "b"]
    matrix, rows, cols = accuracy_by_group(groups, truth, {
        "champion v1": ["a", "a", "a", "a", "a", "b"], "candidate": ["a", "b", "a", "b", "b", "a"], "absent": None})
    assert (rows, cols) == (["champion v1", "candidate"], ["b1", "b2", "b3"])
    assert matrix == [[0.5, 2 / 3, 1.0], [1.0, 2 / 3, 0.0]]
    with pytest.raises(ValueError, match="6 groups, 6 labels and 2 predictions of 'x'"):
        accuracy_by_group(groups, truth, {"x": ["a", "b"]})
