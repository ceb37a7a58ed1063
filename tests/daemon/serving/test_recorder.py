"""The traffic sample: what is recorded, at what rate, and what happens while the store is down."""

from __future__ import annotations

import random
from datetime import datetime, timezone

import numpy as np

from daemon.serving.recorder import Recorder
from tests.daemon.serving.conftest import LABELS

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)


class Sink:
    def __init__(self):
        self.rows, self.down = [], False

    def __call__(self, rows):
        if self.down:
            raise ConnectionError("store down")
        self.rows.extend(rows)


def probs(n, hot=0):
    p = np.full((n, 3), 0.1, dtype=np.float32)
    p[:, hot] = 0.8
    return p


def test_every_text_is_recorded_with_its_prediction_and_source():
    sink = Sink()
    recorder = Recorder(sink, 1.0, clock=lambda: NOW, flush_seconds=3600)
    recorder.add("7", "wire", ["shares fell", "shares rose"], LABELS, probs(2))
    assert recorder.flush() == 2 and recorder.recorded == 2
    assert sink.rows[0] == {"at": NOW, "version": "7", "source": "wire", "text": "shares fell", "label": "negative",
                            "score": np.float32(0.8).item(),
                            "scores": {"negative": 0.8, "neutral": 0.1, "positive": 0.1}}
    recorder.close()


def test_a_sample_rate_keeps_about_that_share():
    sink = Sink()
    recorder = Recorder(sink, 0.25, clock=lambda: NOW, flush_seconds=3600, rng=random.Random(0))
    recorder.add("1", None, [f"t{i}" for i in range(4000)], LABELS, probs(4000))
    recorder.flush()
    assert 900 < len(sink.rows) < 1100
    recorder.close()


def test_rows_wait_while_the_store_is_down_and_the_oldest_go_when_the_queue_is_full():
    sink = Sink()
    sink.down = True
    recorder = Recorder(sink, 1.0, clock=lambda: NOW, flush_seconds=3600, max_queue=5)
    recorder.add("1", None, ["a", "b", "c"], LABELS, probs(3))
    assert recorder.flush() == 0  # held, not lost
    recorder.add("1", None, ["d", "e", "f", "g"], LABELS, probs(4))
    sink.down = False
    assert recorder.flush() == 5
    assert [r["text"] for r in sink.rows] == ["c", "d", "e", "f", "g"] and recorder.dropped == 2
    recorder.close()


def test_a_zero_rate_records_nothing_and_starts_no_thread():
    sink = Sink()
    recorder = Recorder(sink, 0.0, clock=lambda: NOW)
    recorder.add("1", None, ["a"], LABELS, probs(1))
    assert recorder.flush() == 0 and recorder._thread is None
    recorder.close()
