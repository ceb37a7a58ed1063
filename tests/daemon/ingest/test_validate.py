from __future__ import annotations

import json
from collections import Counter

import pandas as pd

from daemon.ingest.validate import judge, normalise, split_of, text_hash

LABELS = ["negative", "neutral", "positive"]
ALIASES = {"bearish": "negative", "bullish": "positive"}


def test_split_is_stable_normalised_and_near_80_10_10():
    assert text_hash("Shares  ROSE\n5%") == text_hash(" shares rose 5% ")
    counts = Counter(split_of(text_hash(f"headline number {i}")) for i in range(10_000))
    assert abs(counts["train"] / 10_000 - 0.8) < 0.02
    assert abs(counts["val"] / 10_000 - 0.1) < 0.015
    assert abs(counts["test"] / 10_000 - 0.1) < 0.015
    assert normalise("ＡＢＣ  x") == "abc x"  # NFKC folds full-width letters


def test_every_bad_row_is_named_with_column_and_expectation(tmp_path):
    path = tmp_path / "b.csv"
    pd.DataFrame({"text": ["fine one", "   ", "fine two", "fine three"],
                  "label": ["positive", "neutral", "postive", "BEARISH"]}).to_csv(path, index=False)
    result = judge(path, LABELS, ALIASES, 1000)
    assert result.file_problem is None
    assert [(e.row, e.column) for e in result.errors] == [(2, "text"), (3, "label")]
    assert "one of ['negative', 'neutral', 'positive']" in result.errors[1].expected
    assert result.errors[1].value == "postive"
    assert result.accepted["label"].tolist() == ["positive", "negative"]  # alias matched case-insensitively


def test_duplicates_within_a_file_and_known_rows_are_dropped(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"text": ["A b", "a  B", "a b", "other"], "label": ["neutral", "neutral", "positive", "neutral"]}
                 ).to_csv(path, index=False)
    result = judge(path, LABELS, {}, 1000, conflicts="allow")
    assert result.duplicates == 1  # same normalised text and label; same text with another label is kept
    assert len(result.accepted) == 3
    again = judge(path, LABELS, {}, 1000, known_hashes=set(result.accepted["row_hash"]), conflicts="allow")
    assert again.accepted.empty and again.duplicates == 4
    # The default: a text labelled two ways in one file makes each of its rows a bad row, naming the other.
    strict = judge(path, LABELS, {}, 1000)
    assert strict.accepted["text"].tolist() == ["other"] and strict.duplicates == 1
    assert [(e.row, e.column, e.value) for e in strict.errors] == [(1, "label", "neutral"), (3, "label", "positive")]
    assert "row 3 has the same text labelled 'positive'" in strict.errors[0].expected


def test_jsonl_and_parquet_and_optional_columns(tmp_path):
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text(json.dumps({"text": "up", "label": "positive", "source": "wire", "id": 7}) + "\n"
                     + "{not json\n" + json.dumps({"text": "down", "label": "negative"}) + "\n")
    result = judge(jsonl, LABELS, {}, 1000)
    assert [(e.row, e.column) for e in result.errors] == [(2, "(line)")]
    accepted = result.accepted[["text", "source", "id"]]
    assert accepted.iloc[0].tolist() == ["up", "wire", "7"]
    assert accepted.iloc[1]["text"] == "down" and accepted.iloc[1][["source", "id"]].isna().all()
    parquet = tmp_path / "x.parquet"
    pd.DataFrame({"text": ["flat"], "label": ["neutral"]}).to_parquet(parquet)
    assert judge(parquet, LABELS, {}, 1000).accepted["label"].tolist() == ["neutral"]


def test_file_level_problems(tmp_path):
    (tmp_path / "a.txt").write_text("x")
    assert "unsupported file type '.txt'" in judge(tmp_path / "a.txt", LABELS, {}, 10).file_problem
    (tmp_path / "nolabel.csv").write_text("text,sentiment\nhi,positive\n")
    assert "missing column(s) ['label']" in judge(tmp_path / "nolabel.csv", LABELS, {}, 10).file_problem
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9,neutral\n".encode("latin-1"))
    assert "not UTF-8" in judge(tmp_path / "latin.csv", LABELS, {}, 10).file_problem
    (tmp_path / "empty.csv").write_text("text,label\n")
    assert judge(tmp_path / "empty.csv", LABELS, {}, 10).file_problem == "the file has no rows"
