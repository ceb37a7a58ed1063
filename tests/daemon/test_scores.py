"""The score cache: a version scores a text once, for the drift pass, the probation watch and the gate."""

from __future__ import annotations

import numpy as np

from daemon.context import open_context
from daemon.cycle.run import maybe_run
from daemon.monitoring.drift_pass import DriftMonitor
from daemon.scores import CachedPredictor, ScoreCache
from tests.daemon.conftest import write_csv
from tests.daemon.cycle.test_cycle import cycle_settings, tiny_base, toy_rows  # noqa: F401 (a fixture)


class Counting:
    """A predictor that says how many texts it was asked to score."""

    labels = ["negative", "neutral", "positive"]

    def __init__(self, bf16: bool = False) -> None:
        self.bf16, self.scored = bf16, []

    def _probs(self, texts):
        return np.array([[len(t) % 3, 1.0, 0.5] for t in texts], dtype=np.float32) / 3

    def predict(self, texts):
        self.scored += list(texts)
        probs = self._probs(texts)
        return probs.argmax(axis=1), probs

    def predict_and_embed(self, texts):
        self.scored += list(texts)
        probs = self._probs(texts)
        return probs.argmax(axis=1), probs, np.zeros((len(texts), 4), dtype=np.float32)


def test_a_version_scores_a_text_once_and_answers_in_input_order():
    model, cache = Counting(), ScoreCache()
    cached = CachedPredictor(model, "3", cache)
    ids, probs = cached.predict(["a", "bb", "a"])
    assert model.scored == ["a", "bb"]  # a duplicate is scored once
    again_ids, again = cached.predict(["bb", "ccc", "a"])
    assert model.scored == ["a", "bb", "ccc"]  # only the new text
    assert np.array_equal(again[0], probs[1]) and np.array_equal(again[2], probs[0])
    assert list(again_ids) == [int(np.argmax(p)) for p in again]
    assert cached.labels == model.labels  # the rest is the predictor's
    CachedPredictor(model, "4", cache).predict(["a"])  # another version is another model
    assert model.scored[-1] == "a" and cache.hits == 2


def test_the_drift_pass_fills_the_cache_a_candidate_is_filed_under_its_version_and_bf16_is_not_cached():
    model, cache = Counting(), ScoreCache()
    CachedPredictor(model, "1", cache).predict_and_embed(["x", "y"])
    CachedPredictor(model, "1", cache).predict(["y", "x"])
    assert model.scored == ["x", "y"]
    CachedPredictor(model, "candidate:c1", cache).predict(["z"])
    cache.rename("candidate:c1", "2")
    CachedPredictor(model, "2", cache).predict(["z"])
    assert model.scored == ["x", "y", "z"]
    cache.drop("2")
    CachedPredictor(model, "2", cache).predict(["z"])
    assert model.scored[-1] == "z" and len(model.scored) == 4
    rounding = Counting(bf16=True)
    for _ in range(2):
        CachedPredictor(rounding, "1", cache).predict(["x"])
    assert rounding.scored == ["x", "x"]


def test_it_is_bounded_least_recently_used_first():
    model, cache = Counting(), ScoreCache(max_rows=2)
    cached = CachedPredictor(model, "1", cache)
    cached.predict(["a", "b"])
    cached.predict(["a"])  # a is now the most recent
    cached.predict(["c"])  # b goes
    assert len(cache) == 2
    cached.predict(["a", "b"])
    assert model.scored == ["a", "b", "c", "b"]


def _two_cycles(tmp_path, tiny_base, cache: ScoreCache):  # noqa: F811
    """The decisions of two cycles (batch a bootstraps v1, batch b makes v2), and the cache hits in the second."""
    ctx = open_context(cycle_settings(tmp_path, tiny_base), owner="test")
    ctx.scores = cache
    decisions = []
    for name, start in (("a.csv", 0), ("b.csv", 1000)):
        ctx.inbox.ingest_copy(write_csv(tmp_path / name, toy_rows(200, start=start)))
        DriftMonitor(ctx).check()  # as the daemon does before each cycle
        hits = cache.hits
        result = maybe_run(ctx)
        decisions.append((result.outcome, result.version, result.reasons,
                          {k: v for k, v in result.metrics.items() if not k.endswith("_seconds")}))  # wall times
    return decisions, cache.hits - hits


def test_a_cycle_decides_the_same_with_and_without_the_cache(tmp_path, tiny_base):  # noqa: F811
    cached, hits = _two_cycles(tmp_path / "cached", tiny_base, ScoreCache())
    uncached, none = _two_cycles(tmp_path / "uncached", tiny_base, ScoreCache(max_rows=0))  # keeps nothing
    assert cached == uncached  # outcome, version, reasons and every metric, to the last digit
    second = cached[1][3]
    assert cached[1][1] == "2" and "champion_fresh_macro_f1" in second and none == 0
    # The second cycle's champion (v1) was scored on batch b's rows by the drift pass, and on batch a's (its
    # regression rows) as the first cycle's candidate: the gate ran v1 on none of its evidence again.
    assert hits == second["fresh_rows"] + second["regression_rows"] > 0
