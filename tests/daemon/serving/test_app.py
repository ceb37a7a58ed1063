"""The HTTP API on a real uvicorn server over loopback, with a fake model: formats, errors, auth,
probes, metrics, and a loop of requests that never fails while versions are swapped under it."""

from __future__ import annotations

import threading
import time

import pytest

from daemon.serving.app import Limits, ServeMetrics, build_app
from daemon.serving.batcher import Batcher
from daemon.serving.follower import Follower
from tests.concurrency import threads
from tests.daemon.serving.conftest import LABELS, FakePredictor, call, uvicorn_running


class World:
    def __init__(self, token="", limits=None):
        self.version = "1"
        self.recorded = []
        self.follower = Follower(lambda: self.version, lambda v: FakePredictor(v, delay=0.001), poll_seconds=0.01)
        self.batcher = Batcher(lambda: self.follower.current, max_batch=32, max_wait=0.001)
        self.metrics = ServeMetrics()
        self.app = build_app(self.follower, self.batcher, self.metrics, token=token,
                             limits=limits or Limits(max_body_bytes=2048, max_texts=4),
                             record=lambda source, texts, answer: self.recorded.append((source, texts, answer.version)))


@pytest.fixture
def served():
    world = World()
    with uvicorn_running(world.app) as url:
        status, body, _ = call(url, "/readyz")
        assert status == 503 and body["ready"] is False  # nothing loaded yet
        world.follower.check()
        yield world, url
    world.batcher.close()


def test_predict_answers_the_version_and_every_class_probability(served):
    world, url = served
    status, body, headers = call(url, "/predict", {"texts": ["Profit fell.", "Sales rose."], "source": "wire"})
    assert status == 200 and body["model_version"] == "1" and headers["x-model-version"] == "1"
    assert [p["label"] for p in body["predictions"]] == ["neutral", "neutral"]  # version 1 -> class 1
    assert body["predictions"][0]["scores"] == pytest.approx({"negative": 0.1, "neutral": 0.8, "positive": 0.1})
    assert world.recorded == [("wire", ["Profit fell.", "Sales rose."], "1")]
    assert call(url, "/readyz")[1] == {"ready": True, "model_version": "1", "registry": "ok", "failing_versions": []}
    assert call(url, "/healthz")[:2] == (200, "ok\n")


@pytest.mark.parametrize("body", [
    {"dataframe_split": {"columns": ["text"], "data": [["a"], ["b"]]}},
    {"dataframe_split": {"columns": ["id", "text"], "data": [[1, "a"], [2, "b"]]}},
    {"dataframe_records": [{"text": "a"}, {"text": "b"}]},
    {"instances": ["a", "b"]},
    {"inputs": [{"text": "a"}, {"text": "b"}]},
], ids=["split", "split-two-columns", "records", "instances", "inputs"])
def test_invocations_takes_mlflow_scoring_formats(served, body):
    _, url = served
    status, answer, _ = call(url, "/invocations", body)
    assert status == 200, answer
    assert answer == {"predictions": [{"label": "neutral", "score": pytest.approx(0.8)}] * 2, "model_version": "1"}


def test_invocations_takes_csv(served):
    _, url = served
    status, answer, _ = call(url, "/invocations", raw=b"text\nProfit fell.\n", headers={"Content-Type": "text/csv"})
    assert status == 200 and len(answer["predictions"]) == 1


@pytest.mark.parametrize(("path", "kwargs", "status", "says"), [
    ("/predict", {"raw": b"{not json"}, 400, "not valid JSON"),
    ("/predict", {"body": {"text": "a"}}, 400, '{"texts"'),
    ("/predict", {"body": {"texts": []}}, 400, "non-empty list"),
    ("/predict", {"body": {"texts": ["a", 3]}}, 400, '"texts"[1] is int'),
    ("/predict", {"body": {"texts": ["a"], "source": 5}}, 400, '"source" must be a string'),
    ("/predict", {"body": {"texts": ["a"] * 5}}, 413, "at most 4 (serve.max_texts)"),
    ("/predict", {"raw": b'{"texts": ["' + b"x" * 3000 + b'"]}'}, 413, "over the limit of 2048"),
    ("/invocations", {"body": {"columns": ["text"]}}, 400, "expected one of dataframe_split"),
    ("/invocations", {"raw": b"a", "headers": {"Content-Type": "text/plain"}}, 415, "application/json or text/csv"),
    ("/nowhere", {"body": {}}, 404, "no such route: /nowhere"),
    ("/predict", {"method": "GET"}, 405, "GET is not allowed on /predict"),
])
def test_bad_requests_get_a_4xx_that_says_why(served, path, kwargs, status, says):
    _, url = served
    got, body, _ = call(url, path, **kwargs)
    assert got == status and says in body["error"]
    assert "Traceback" not in str(body)


def test_a_token_guards_everything_but_the_probes():
    world = World(token="s3cret")
    world.follower.check()
    with uvicorn_running(world.app) as url:
        status, body, headers = call(url, "/predict", {"texts": ["a"]})
        assert status == 401 and headers["www-authenticate"] == "Bearer" and "bearer token" in body["error"]
        assert call(url, "/predict", {"texts": ["a"]}, headers={"Authorization": "Bearer wrong"})[0] == 401
        assert call(url, "/metrics")[0] == 401
        assert call(url, "/predict", {"texts": ["a"]}, headers={"Authorization": "Bearer s3cret"})[0] == 200
        assert call(url, "/healthz")[0] == 200 and call(url, "/readyz")[0] == 200
    world.batcher.close()


def test_metrics_count_requests_latency_and_the_served_version(served):
    world, url = served
    for _ in range(3):
        call(url, "/predict", {"texts": ["a"]})
    call(url, "/predict", {"texts": []})
    world.metrics.version.set(1)
    _, text, _ = call(url, "/metrics")
    assert 'cltool_serve_requests_total{code="200",route="predict"} 3.0' in text
    assert 'cltool_serve_requests_total{code="400",route="predict"} 1.0' in text
    assert 'cltool_serve_request_duration_seconds_count{route="predict"} 4.0' in text
    assert "cltool_serve_texts_total 3.0" in text and "cltool_serve_model_version 1.0" in text


def test_a_loop_of_requests_never_fails_while_the_champion_moves(served):
    world, url = served
    world.follower.start()  # polls every 10 ms
    stop, answers, failures = threading.Event(), [], []

    def client():
        while not stop.is_set():
            status, body, _ = call(url, "/predict", {"texts": ["a", "b"]})
            if status != 200:
                failures.append((status, body))
                continue
            winners = {p["label"] for p in body["predictions"]}
            answers.append((body["model_version"], winners))

    with threads(client, 4):
        for version in ("2", "3", "4"):
            time.sleep(0.3)
            world.version = version
        time.sleep(0.3)
        stop.set()
    world.follower.stop()
    assert not failures
    assert {v for v, _ in answers} == {"1", "2", "3", "4"}
    assert all(winners == {LABELS[int(v) % 3]} for v, winners in answers)  # one version per response
