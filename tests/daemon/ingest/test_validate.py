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


def test_a_file_is_read_in_chunks_with_rows_numbered_across_them(tmp_path, monkeypatch):
    from daemon.ingest import validate

    monkeypatch.setattr(validate, "CHUNK_ROWS", 3)  # 10 rows: four chunks
    texts = [f"headline {i}" for i in range(10)]
    labels = ["neutral"] * 10
    texts[7], labels[7] = "  ", "neutral"  # bad row 8, in the third chunk
    texts[9], labels[9] = "headline 1", "positive"  # conflicts with row 2, two chunks earlier
    frame = pd.DataFrame({"text": texts, "label": labels})
    frame.iloc[:9].to_csv(tmp_path / "c.csv", index=False)
    frame.to_csv(tmp_path / "conflict.csv", index=False)
    frame.to_parquet(tmp_path / "p.parquet")
    (tmp_path / "j.jsonl").write_text("".join(json.dumps(r) + "\n" for r in frame.to_dict("records")))
    plain = judge(tmp_path / "c.csv", LABELS, {}, 1000)
    assert plain.rows_in_file == 9 and [(e.row, e.column) for e in plain.errors] == [(8, "text")]
    assert len(plain.accepted) == 8 and plain.accepted["file_row"].tolist() == [1, 2, 3, 4, 5, 6, 7, 9]
    for name in ("conflict.csv", "p.parquet", "j.jsonl"):
        result = judge(tmp_path / name, LABELS, {}, 1000)
        assert result.rows_in_file == 10, name
        assert [(e.row, e.column) for e in result.errors] == [(2, "label"), (8, "text"), (10, "label")], name
        assert "row 2 has the same text labelled 'neutral'" in result.errors[2].expected
    # A parse error in a later chunk is still the file's problem.
    (tmp_path / "cut.csv").write_text("text,label\n" + "a,neutral\n" * 7 + '"never closed,neutral\n')
    assert judge(tmp_path / "cut.csv", LABELS, {}, 1000).file_problem.startswith("cannot read as csv")
