"""The daemon's demo feed job: each file once, in order, only when nothing waits."""

from __future__ import annotations

import json
import logging
import os

from daemon.context import open_context
from daemon.service import Daemon
from tests.daemon.conftest import sentences, write_csv


def test_demo_feed_drops_each_file_once_and_waits_for_the_last_to_be_learned(settings, tmp_path, caplog):
    feed = tmp_path / "feed"
    feed.mkdir()
    write_csv(feed / "01.csv", sentences(30))
    write_csv(feed / "02.csv", sentences(30, start=100))
    (feed / "README.txt").write_text("not data")
    ctx = open_context(settings, owner="test")
    daemon = Daemon(ctx, demo_feed=feed)

    daemon.feed_demo()
    assert sorted(p.name for p in settings.inbox_dir.iterdir() if p.is_file()) == ["01.csv"]
    daemon.feed_demo()  # the file still waits in the inbox: nothing more
    # A poll claims the file but has not recorded it yet (the race seen in practice): still nothing.
    os.replace(settings.inbox_dir / "01.csv", ctx.inbox.claimed_dir / "01.csv")
    daemon.feed_demo()
    assert not any(p.is_file() for p in settings.inbox_dir.iterdir())
    ctx.inbox.process(ctx.inbox.claimed_dir / "01.csv")
    daemon.feed_demo()  # a batch is pending (not learned yet): wait
    assert not any(p.is_file() for p in settings.inbox_dir.iterdir())
    ctx.store.append_with_consume([], [b.batch_id for b in ctx.store.list_batches()], "c1")
    daemon.feed_demo()
    daemon.feed_demo()
    assert sorted(p.name for p in settings.inbox_dir.iterdir() if p.is_file()) == ["02.csv"]
    assert [e.payload["file"] for e in ctx.store.events(types=["demo.fed"])] == ["01.csv", "02.csv"]
    # Once the last file is learned the demo says so, once, and the daemon goes on waiting.
    os.replace(settings.inbox_dir / "02.csv", ctx.inbox.claimed_dir / "02.csv")
    ctx.inbox.process(ctx.inbox.claimed_dir / "02.csv")
    ctx.store.append_with_consume([], [b.batch_id for b in ctx.store.list_batches(pending=True)], "c2")
    with caplog.at_level(logging.INFO, logger="daemon.service"):
        daemon.feed_demo()
        daemon.feed_demo()
    done = [r.getMessage() for r in caplog.records if "files fed" in r.getMessage()]
    assert len(done) == 1 and done[0].startswith("demo feed: all 2 files fed; the daemon now waits for new files")


def test_demo_feed_goes_on_after_a_wait_decision(settings, tmp_path):
    feed = tmp_path / "feed"
    feed.mkdir()
    write_csv(feed / "01.csv", sentences(30))
    write_csv(feed / "02.csv", sentences(30, start=100))
    ctx = open_context(settings, owner="test")
    ctx.inbox.settle_seconds = 0
    daemon = Daemon(ctx, demo_feed=feed)
    daemon.feed_demo()
    assert [r.status for r in ctx.inbox.take_all()] == ["accepted"]
    daemon.feed_demo()
    assert not any(p.is_file() for p in settings.inbox_dir.iterdir())  # pending, not decided yet
    # The gate said WAIT: the batch stays pending, and more data is exactly what it asked for.
    ctx.store.append("decision", "WAIT: within noise", payload={"outcome": "WAIT", "reasons": ["noise"]})
    daemon.feed_demo()
    assert [p.name for p in settings.inbox_dir.iterdir() if p.is_file()] == ["02.csv"]


def test_each_inbox_outcome_is_one_log_line(settings, caplog):
    ctx = open_context(settings, owner="test")
    ctx.inbox.settle_seconds = 0
    daemon = Daemon(ctx)
    settings.inbox_dir.joinpath("bad.csv").write_text("text,label\nfine news,positive\nodd news,sideways\n")
    write_csv(settings.inbox_dir / "good.csv", sentences(30))
    with caplog.at_level(logging.DEBUG):
        daemon.poll_inbox()
    def about(name: str) -> list[logging.LogRecord]:  # in the message, or in the event the line renders
        return [r for r in caplog.records
                if name in r.getMessage() or name in json.dumps(getattr(r, "event", None), default=str)]

    [bad] = about("bad.csv")
    assert bad.levelno == logging.WARNING and bad.event["type"] == "ingest.quarantined"
    [good] = about("good.csv")
    assert good.levelno == logging.INFO and good.event["type"] == "ingest.accepted"
