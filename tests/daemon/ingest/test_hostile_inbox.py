"""Hostile inbox: every kind of odd entry in one pass of the daemon's inbox, each with its expected outcome.

Each case writes one entry whose texts are its own (so no case is a duplicate of another) and states
what must happen to it: accepted (with how many rows), quarantined (with a phrase of the reason and,
for a row problem, the column), a duplicate, or left where it is and never opened.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd
import pytest

from daemon.config import load_settings
from daemon.ingest.inbox import Inbox, safe_name
from daemon.state.store import StateStore

LABELS = ["negative", "neutral", "positive"]


def rows(tag: str, n: int = 6) -> list[tuple[str, str]]:
    return [(f"{tag} headline {i} about quarterly results", LABELS[i % 3]) for i in range(n)]


def csv_bytes(data: list[tuple[str, str]], sep: str = ",", newline: str = "\n") -> bytes:
    return pd.DataFrame(data, columns=["text", "label"]).to_csv(index=False, sep=sep, lineterminator=newline).encode()


def jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    return buffer.getvalue()


def good_jsonl(tag: str, **extra) -> list[dict]:
    return [{"text": t, "label": l, **extra} for t, l in rows(tag)]


def with_row(tag: str, bad: dict) -> bytes:
    """Six good JSONL rows and one bad one, as row 4."""
    records = good_jsonl(tag)
    records.insert(3, {"text": f"{tag} the odd row", "label": "neutral", **bad})
    return jsonl_bytes(records)


@dataclass
class Case:
    name: str  # the entry's name in the inbox
    make: Callable[[Path, Path], None]  # (path in the inbox, an outside folder) -> writes the entry
    outcome: str  # accepted | quarantined | duplicate | left
    expect: str = ""  # a phrase of the reason (quarantined) or the column of the first bad row ("column:text")
    accepted: int | None = None


def write(data: bytes) -> Callable[[Path, Path], None]:
    return lambda path, _outside: path.write_bytes(data)


def link_to(target: Callable[[Path], Path]) -> Callable[[Path, Path], None]:
    def make(path: Path, outside: Path) -> None:
        os.symlink(target(outside), path)
    return make


def outside_file(outside: Path) -> Path:
    target = outside / "secret.csv"
    target.write_bytes(csv_bytes(rows("outside secret")))
    return target


def zip_of(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("rows.csv", data)
    return buffer.getvalue()


def directory(path: Path, _outside: Path) -> None:
    path.mkdir()
    (path / "inside.csv").write_bytes(csv_bytes(rows("inside a folder")))


CASES = [
    # Files that are fine, in every shape a producer writes them.
    Case("plain.csv", write(csv_bytes(rows("plain"))), "accepted", accepted=6),
    Case("lines.jsonl", write(jsonl_bytes(good_jsonl("lines"))), "accepted", accepted=6),
    Case("lines.ndjson", write(jsonl_bytes(good_jsonl("ndjson"))), "accepted", accepted=6),
    Case("table.parquet", write(parquet_bytes(pd.DataFrame(rows("parquet"), columns=["text", "label"]))),
         "accepted", accepted=6),
    Case("SHOUTING.CSV", write(csv_bytes(rows("upper suffix"))), "accepted", accepted=6),
    Case("excel-bom.csv", write(b"\xef\xbb\xbf" + csv_bytes(rows("utf8 bom"))), "accepted", accepted=6),
    Case("bom.jsonl", write(b"\xef\xbb\xbf" + jsonl_bytes(good_jsonl("jsonl bom"))), "accepted", accepted=6),
    Case("windows.csv", write(csv_bytes(rows("crlf"), newline="\r\n")), "accepted", accepted=6),
    Case("extra-columns.jsonl", write(jsonl_bytes(good_jsonl("extra", extra_field=[1, 2], score=0.5))),
         "accepted", accepted=6),
    Case("optional.jsonl", write(jsonl_bytes(good_jsonl("optional", id=12, source="wire",
                                                        published_at="2026-01-02T03:04:05Z"))), "accepted", accepted=6),
    Case("aliases.csv", write(csv_bytes([(t, f"  {l.upper()} ") for t, l in rows("label case")])), "accepted",
         accepted=6),
    Case("repeated-row.csv", write(csv_bytes(rows("repeat") + rows("repeat")[:2])), "accepted", accepted=6),
    Case("mojibake.csv", write(csv_bytes([(f"{t} \u00e2\u20ac\u009d quoted", l) for t, l in rows("mojibake")])),
         "accepted", accepted=6),  # C1 characters, as in real tweets: kept
    Case("unicode.csv", write(csv_bytes([(f"{t} 株価 📈 Ünïcödé", l) for t, l in rows("unicode")])), "accepted",
         accepted=6),
    Case(safe_name("x" * 300 + ".csv"), write(csv_bytes(rows("long name"))), "accepted", accepted=6),
    # Encodings, compression and formats that are not what the name says.
    Case("utf16.csv", write(csv_bytes(rows("utf16")).decode().encode("utf-16")), "quarantined", "UTF-16"),
    Case("latin1.csv", write("text,label\ncafé crème results,neutral\n".encode("latin-1")), "quarantined",
         "not UTF-8"),
    Case("gzipped.csv", write(gzip.compress(csv_bytes(rows("gzip inside")))), "quarantined", "gzip-compressed"),
    Case("rows.csv.gz", write(gzip.compress(csv_bytes(rows("gz suffix")))), "quarantined", "decompress it first"),
    Case("rows.zip", write(zip_of(csv_bytes(rows("zip")))), "quarantined", "decompress it first"),
    Case("zipped.jsonl", write(zip_of(jsonl_bytes(good_jsonl("zip inside")))), "quarantined", "a zip archive"),
    Case("notes.txt", write(csv_bytes(rows("txt"))), "quarantined", "unsupported file type '.txt'"),
    Case("no-suffix", write(csv_bytes(rows("nosuffix"))), "quarantined", "unsupported file type ''"),
    Case("fake.parquet", write(csv_bytes(rows("fake parquet"))), "quarantined", "cannot read as parquet"),
    Case("truncated.parquet", write(parquet_bytes(pd.DataFrame(rows("cut"), columns=["text", "label"]))[:200]),
         "quarantined", "cannot read as parquet"),
    # Shapes of table that are wrong.
    Case("semicolons.csv", write(csv_bytes(rows("semicolon"), sep=";")), "quarantined", "semicolon-separated"),
    Case("tabs.csv", write(csv_bytes(rows("tab"), sep="\t")), "quarantined", "tab-separated"),
    Case("empty.csv", write(b""), "quarantined", "cannot read as csv"),
    Case("header-only.csv", write(b"text,label\n"), "quarantined", "no rows"),
    Case("no-label.csv", write(b"text\nsomething happened\n"), "quarantined", "missing column(s) ['label']"),
    Case("empty.jsonl", write(b"\n\n"), "quarantined", "missing column(s)"),
    Case("half-written.csv", write(b'text,label\n"the line goes on and on,positive\nanother,neutral\n'),
         "quarantined", "cannot read as csv"),
    # Rows that are wrong: control characters, wrong JSON types, bad values.
    Case("nul.csv", write(csv_bytes(rows("nul byte")[:3] + [("a NUL\x00 inside", "neutral")])), "quarantined",
         "column:text"),
    Case("escape.jsonl", write(with_row("escape", {"text": "bell \x07 and esc \x1b[31m"})), "quarantined",
         "column:text"),
    Case("surrogate.jsonl", write(with_row("surrogate", {}).replace(b"the odd row", b"odd \\ud800 row")),
         "quarantined", "column:text"),
    Case("object-text.jsonl", write(with_row("object", {"text": {"headline": "up"}})), "quarantined",
         "column:text"),
    Case("list-text.jsonl", write(with_row("list", {"text": ["up", "down"]})), "quarantined", "column:text"),
    Case("number-text.jsonl", write(with_row("number", {"text": 42})), "quarantined", "column:text"),
    Case("null-text.jsonl", write(with_row("null", {"text": None})), "quarantined", "column:text"),
    Case("bool-label.jsonl", write(with_row("bool", {"label": True})), "quarantined", "column:label"),
    Case("object-id.jsonl", write(with_row("object id", {"id": {"x": 1}})), "quarantined", "column:id"),
    Case("nul-source.jsonl", write(with_row("nul source", {"source": "wire\x00"})), "quarantined",
         "column:source"),
    Case("array-line.jsonl", write(jsonl_bytes(good_jsonl("array line")) + b'["text", "label"]\n'),
         "quarantined", "column:(line)"),
    Case("broken-line.jsonl", write(jsonl_bytes(good_jsonl("broken line")) + b'{"text": "cut\n'), "quarantined",
         "column:(line)"),
    Case("misspelled.csv", write(csv_bytes(rows("typo")[:5] + [("typo row", "postive")])), "quarantined",
         "column:label"),
    Case("blank-text.csv", write(csv_bytes(rows("blank")[:5] + [("   ", "neutral")])), "quarantined", "column:text"),
    Case("huge-field.csv", write(csv_bytes(rows("huge")[:5] + [("x" * 25_000, "neutral")])), "quarantined",
         "column:text"),
    Case("int-text.parquet", write(parquet_bytes(pd.DataFrame({"text": [1, 2, 3], "label": LABELS}))),
         "quarantined", "column:text"),
    Case("conflict.csv", write(csv_bytes(rows("conflict") + [("Conflict headline 0 about  quarterly results",
                                                              "positive")])), "quarantined", "column:label"),
    # Entries that are not plain files: never followed, never opened.
    Case("link-out.csv", link_to(outside_file), "quarantined", "a symbolic link"),
    Case("passwd.csv", link_to(lambda _outside: Path("/etc/passwd")), "quarantined", "a symbolic link"),
    Case("dangling.csv", link_to(lambda outside: outside / "gone.csv"), "quarantined", "a symbolic link"),
    Case("folder.csv", directory, "left"),
    Case("pipe.csv", lambda path, _outside: os.mkfifo(path), "left"),
    Case(".hidden.csv", write(csv_bytes(rows("hidden"))), "left"),
    Case("upload.csv.part", write(csv_bytes(rows("part"))), "left"),
    Case("upload.csv.tmp", write(csv_bytes(rows("tmp"))), "left"),
]


@pytest.fixture
def one_pass(settings, store, tmp_path):
    """Every case's entry in one inbox, one pass of the daemon's inbox; results by file name."""
    outside = tmp_path / "outside"
    outside.mkdir()
    inbox = Inbox(settings, store, settle_seconds=0)
    for case in CASES:
        case.make(settings.inbox_dir / case.name, outside)
    results = {result.file: result for result in inbox.take_all()}
    return results, outside


def test_the_table_has_at_least_40_kinds():
    assert len({case.name for case in CASES}) == len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[case.name[:40] for case in CASES])
def test_each_odd_entry_ends_where_it_belongs(case, one_pass, settings, store):
    results, _outside = one_pass
    if case.outcome == "left":
        assert case.name not in results
        assert os.path.lexists(settings.inbox_dir / case.name), "an entry that is not taken stays in the inbox"
        return
    result = results[case.name]
    assert result.status == case.outcome, result.reason
    if case.outcome == "accepted":
        assert result.batch.rows_accepted == case.accepted
        assert len(store.rows([result.batch.batch_id])) == case.accepted
        return
    assert result.quarantine_path is not None and os.path.lexists(result.quarantine_path)
    reason = json.loads(Path(f"{result.quarantine_path}.reason.json").read_text(encoding="utf-8"))
    if case.expect.startswith("column:"):
        assert reason["errors"], reason
        assert reason["errors"][0]["column"] == case.expect.removeprefix("column:"), reason["errors"]
        assert reason["errors"][0]["row"] >= 1
    else:
        assert case.expect in result.reason and case.expect in reason["reason"]


def test_one_pass_records_only_the_accepted_files_and_reads_no_link(one_pass, settings, store):
    results, outside = one_pass
    accepted = sorted(name for name, r in results.items() if r.status == "accepted")
    assert sorted(b.file_name for b in store.list_batches()) == accepted
    # The link's target outside the inbox is neither read nor moved; /etc/passwd is still in place.
    texts = {row["text"] for row in store.rows([b.batch_id for b in store.list_batches()])}
    assert not any(text.startswith("outside secret") for text in texts)
    assert (outside / "secret.csv").exists() and Path("/etc/passwd").exists()
    quarantined = results["link-out.csv"].quarantine_path
    assert quarantined.is_symlink()  # the link itself moved, its target did not
    # Every stored text is valid UTF-8 without control characters (except the ones normalised away).
    assert all("\x00" not in text and text.encode("utf-8") for text in texts)
    # A second pass finds nothing new: nothing loops.
    assert Inbox(settings, store, settle_seconds=0).take_all() == []


def test_a_text_recorded_with_another_label_is_refused_unless_allowed(tmp_path):
    def inbox_with(policy: str) -> tuple[Inbox, StateStore, object]:
        settings = load_settings(state_dir=str(tmp_path / policy / "state"), inbox_dir=str(tmp_path / policy / "in"),
                                 inbox={"conflicting_labels": policy, "bad_rows": "drop_rows"})
        store = StateStore(settings.store_url)
        return Inbox(settings, store, settle_seconds=0), store, settings

    for policy in ("reject", "allow"):
        inbox, store, settings = inbox_with(policy)
        first = tmp_path / policy / "first.csv"
        first.write_bytes(csv_bytes(rows("history")))
        assert inbox.ingest_copy(first).status == "accepted"
        flipped = [(text, "positive" if label == "negative" else label) for text, label in rows("history")]
        second = tmp_path / policy / "second.csv"
        second.write_bytes(csv_bytes(flipped + [("history brand new headline", "neutral")]))
        result = inbox.ingest_copy(second)
        assert result.status == "accepted"
        if policy == "allow":
            assert (result.batch.rows_accepted, result.batch.rows_bad) == (3, 0)  # 2 relabelled + the new one
            continue
        # Rows 1 and 4 (negative -> positive) conflict with the recorded rows; the rest are duplicates or new.
        assert (result.batch.rows_accepted, result.batch.rows_bad) == (1, 2)
        dropped = json.loads(next(settings.quarantine_dir.glob("*.dropped.reason.json")).read_text())
        assert [(e["row"], e["column"]) for e in dropped["errors"]] == [(1, "label"), (4, "label")]
        assert "labelled 'negative'" in dropped["errors"][0]["expected"]
        assert all(row["label"] == "negative" for row in store.rows([store.list_batches()[0].batch_id])
                   if row["text"].endswith("0 about quarterly results"))


def test_a_file_name_that_is_not_utf8_is_recorded_under_a_safe_name(settings, store):
    inbox = Inbox(settings, store, settle_seconds=0)
    raw = os.fsencode(settings.inbox_dir) + b"/caf\xe9-\x1b.csv"
    with open(raw, "wb") as handle:
        handle.write(csv_bytes(rows("bytes name")))
    [result] = inbox.take_all()
    assert result.status == "accepted" and result.file == "caf\\xe9-_.csv"
    assert store.list_batches()[0].file_name == "caf\\xe9-_.csv"
    assert [p.name for p in settings.archive_dir.iterdir()][0].endswith("caf\\xe9-_.csv")
