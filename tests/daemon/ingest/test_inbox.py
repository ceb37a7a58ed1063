from __future__ import annotations

import json
import os

from daemon.ingest.inbox import Inbox
from tests.daemon.conftest import sentences, write_csv


def test_accepted_file_is_recorded_stored_and_archived(settings, store, inbox):
    path = write_csv(settings.inbox_dir / "one.csv", sentences(50))
    [result] = inbox.take_all()
    assert result.status == "accepted"
    batch = result.batch
    assert batch.rows_accepted == 50 and batch.n_train + batch.n_val + batch.n_test == 50
    assert batch.label_counts == {"negative": 17, "neutral": 17, "positive": 16}
    rows = store.rows([batch.batch_id])  # in the store, in file order: no file on the daemon's disk
    assert [row["text"] for row in rows] == [text for text, _ in sentences(50)]
    assert {row["split"] for row in rows} <= {"train", "val", "test"} and {row["batch_id"] for row in rows} == {batch.batch_id}
    assert not settings.legacy_rows_dir.exists()
    assert not path.exists() and list(settings.archive_dir.glob("*one.csv"))
    assert [e.type for e in store.events()] == ["ingest.accepted"]


def test_same_file_twice_is_recognised_and_not_pending_twice(settings, store, inbox, tmp_path):
    source = write_csv(tmp_path / "same.csv", sentences(30))
    first = inbox.ingest_copy(source)
    second = inbox.ingest_copy(source)
    assert (first.status, second.status) == ("accepted", "duplicate")
    assert second.batch.batch_id == first.batch.batch_id
    assert len(store.list_batches(pending=True)) == 1
    assert source.exists()  # the user's own file is never moved


def test_rows_seen_in_an_earlier_batch_are_dropped(settings, store, inbox, tmp_path):
    inbox.ingest_copy(write_csv(tmp_path / "a.csv", sentences(30)))
    result = inbox.ingest_copy(write_csv(tmp_path / "b.csv", sentences(40, start=20)))
    assert (result.batch.rows_accepted, result.batch.rows_duplicate) == (30, 10)


def test_bad_file_is_quarantined_with_a_reason_naming_row_column_expectation(settings, store, inbox):
    rows = sentences(10)
    rows[4] = ("fine text", "postive")
    write_csv(settings.inbox_dir / "bad.csv", rows)
    write_csv(settings.inbox_dir / "good.csv", sentences(10, start=100))
    results = {r.file: r for r in inbox.take_all()}
    assert results["bad.csv"].status == "quarantined" and results["good.csv"].status == "accepted"
    reason = json.loads(open(f"{results['bad.csv'].quarantine_path}.reason.json").read())
    assert reason["errors"][0] == {"row": 5, "column": "label", "value": "postive",
                                   "expected": reason["errors"][0]["expected"]}
    assert "one of ['negative', 'neutral', 'positive']" in reason["errors"][0]["expected"]
    assert results["bad.csv"].quarantine_path.exists()  # the file itself is kept, not deleted
    assert len(store.list_batches()) == 1


def test_drop_rows_policy_keeps_good_rows_and_the_dropped_ones(tmp_path, store):
    from daemon.config import load_settings

    settings = load_settings(state_dir=str(tmp_path / "state"), inbox_dir=str(tmp_path / "inbox"),
                             inbox={"bad_rows": "drop_rows"})
    inbox = Inbox(settings, store, settle_seconds=0)
    rows = sentences(10)
    rows[2] = ("", "neutral")
    result = inbox.ingest_copy(write_csv(tmp_path / "some-bad.csv", rows))
    assert result.status == "accepted" and result.batch.rows_accepted == 9 and result.batch.rows_bad == 1
    [dropped] = settings.quarantine_dir.glob("*.dropped.reason.json")
    assert json.loads(dropped.read_text())["errors"][0]["row"] == 3


def test_files_still_being_written_and_hidden_files_wait(settings, store):
    inbox = Inbox(settings, store, settle_seconds=60)
    write_csv(settings.inbox_dir / "fresh.csv", sentences(5))
    write_csv(settings.inbox_dir / ".hidden.csv", sentences(5))
    assert inbox.waiting() == []


def test_recover_finishes_or_undoes_an_interrupted_ingest(settings, store, inbox):
    # Crash after the ledger row, before the archive move: the claimed file must be archived.
    done = inbox.ingest_copy(write_csv(settings.state_dir / "x.csv", sentences(20)))
    archived = next(settings.archive_dir.glob("*x.csv"))
    os.replace(archived, inbox.claimed_dir / "x.csv")
    # Crash after claiming, before anything was recorded: the file must go back to the inbox.
    write_csv(inbox.claimed_dir / "y.csv", sentences(20, start=50))
    lines = inbox.recover()
    assert len(lines) == 2
    assert not any(inbox.claimed_dir.iterdir())
    assert (settings.inbox_dir / "y.csv").exists()
    assert [b.batch_id for b in store.list_batches()] == [done.batch.batch_id]
    # And the returned file is then ingested normally, exactly once.
    [again] = Inbox(settings, store, settle_seconds=0).take_all()
    assert again.status == "accepted" and len(store.list_batches()) == 2
