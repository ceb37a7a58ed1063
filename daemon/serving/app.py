"""The HTTP JSON API of `cltool serve` (Starlette, run by uvicorn).

POST /predict      {"texts": [...], "source": "..."} -> {"model_version", "predictions": [{label, score, scores}]}
POST /invocations  MLflow's scoring-server formats (dataframe_split, dataframe_records, instances, inputs,
                   text/csv) -> {"predictions": [{label, score}], "model_version"}, so MLflow clients work
GET  /healthz      200 while the process answers (liveness)
GET  /readyz       200 once a version is loaded, else 503 (readiness)
GET  /metrics      Prometheus: requests, latency histogram, batch sizes, the served version, swaps, failures

Errors are JSON `{"error": "..."}` with a 4xx that says what was wrong (never a traceback); a body over
`max_body_bytes` or more than `max_texts` texts is refused with 413. With a token set, every route but
the two probes needs `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import io
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from daemon.serving.batcher import Answer, Batcher, NotReadyError
from daemon.serving.follower import Follower

log = logging.getLogger(__name__)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TEXT_COLUMN = "text"


class RequestError(Exception):
    """Answered as `status` with `message`; raised while reading or parsing a request."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class ServeMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.requests = Counter("cltool_serve_requests", "HTTP requests answered, by route and status code.",
                                ["route", "code"], registry=r)
        self.latency = Histogram("cltool_serve_request_duration_seconds", "Time to answer a request, by route.",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=r)
        self.texts = Counter("cltool_serve_texts", "Texts labeled.", registry=r)
        self.batch = Histogram("cltool_serve_batch_texts", "Texts per forward pass (dynamic batching).",
                               buckets=BATCH_BUCKETS, registry=r)
        self.version = Gauge("cltool_serve_model_version", "The registered version being served (0 = none yet).",
                             registry=r)
        self.swaps = Counter("cltool_serve_model_swaps", "Versions swapped in since start (the first load too).",
                             registry=r)
        self.load_failures = Counter("cltool_serve_model_load_failures", "Versions that failed to load.",
                                     registry=r)
        self.load_failing = Gauge("cltool_serve_model_load_failing",
                                  "1 while the champion alias points at a version that failed to load (the "
                                  "previous one is still served).", registry=r)
        self.recorded = Gauge("cltool_serve_recorded_texts", "Served texts written for the live monitors.",
                              registry=r)
        self.record_dropped = Gauge("cltool_serve_record_dropped_texts",
                                    "Sampled texts dropped before they could be recorded (the store was down "
                                    "too long).", registry=r)


@dataclass
class Limits:
    max_body_bytes: int = 1_000_000
    max_texts: int = 256


def build_app(follower: Follower, batcher: Batcher, metrics: ServeMetrics, *, token: str = "",
              limits: Limits | None = None,
              record: Callable[[str, str | None, list[str], Answer], None] = lambda *a: None) -> Starlette:
    """`record(source, texts, answer)`: after each answered prediction (the traffic sample)."""
    limits = limits or Limits()

    def authorised(request: Request) -> bool:
        if not token:
            return True
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())

    def timed(route: str, handler: Callable[[Request], Any], guarded: bool = True):
        async def endpoint(request: Request) -> Response:
            start = time.perf_counter()
            try:
                if guarded and not authorised(request):
                    raise RequestError(401, "missing or wrong bearer token (Authorization: Bearer <token>)")
                response = await handler(request)
            except RequestError as exc:
                response = JSONResponse({"error": exc.message}, status_code=exc.status)
                if exc.status == 401:
                    response.headers["WWW-Authenticate"] = "Bearer"
            except NotReadyError as exc:
                response = JSONResponse({"error": str(exc)}, status_code=503)
            except Exception as exc:  # the model failed: say so, without the traceback (it is in the log)
                log.exception("serve: %s failed", route)
                response = JSONResponse({"error": f"prediction failed: {type(exc).__name__}"}, status_code=500)
            metrics.requests.labels(route=route, code=str(response.status_code)).inc()
            metrics.latency.labels(route=route).observe(time.perf_counter() - start)
            return response
        return endpoint

    async def body_of(request: Request) -> bytes:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limits.max_body_bytes:
            raise RequestError(413, f"request body of {declared} bytes is over the limit of "
                                    f"{limits.max_body_bytes} (serve.max_body_bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_body_bytes:
                raise RequestError(413, f"request body is over the limit of {limits.max_body_bytes} bytes "
                                        "(serve.max_body_bytes)")
            chunks.append(chunk)
        return b"".join(chunks)

    async def json_of(request: Request) -> Any:
        raw = await body_of(request)
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the body is not valid JSON: {exc}") from None

    async def answer(texts: list[str], source: str | None) -> Answer:
        if len(texts) > limits.max_texts:
            raise RequestError(413, f"{len(texts)} texts in one request; at most {limits.max_texts} "
                                    "(serve.max_texts): split the request")
        result = await asyncio.wrap_future(batcher.submit(texts))
        metrics.texts.inc(len(texts))
        record(source, texts, result)
        return result

    async def predict(request: Request) -> Response:
        data = await json_of(request)
        if not isinstance(data, dict) or "texts" not in data:
            raise RequestError(400, 'expected a JSON object {"texts": ["...", ...]} (and optionally "source")')
        texts, source = _texts(data["texts"], "texts"), data.get("source")
        if source is not None and not isinstance(source, str):
            raise RequestError(400, f'"source" must be a string, got {type(source).__name__}')
        result = await answer(texts, source)
        predictions = [{"label": result.labels[int(row.argmax())], "score": round(float(row.max()), 6),
                        "scores": {label: round(float(p), 6) for label, p in zip(result.labels, row)}}
                       for row in result.probs]
        return JSONResponse({"model_version": result.version, "predictions": predictions},
                            headers={"X-Model-Version": result.version})

    async def invocations(request: Request) -> Response:
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        if kind == "text/csv":
            texts = _csv_texts((await body_of(request)).decode("utf-8", errors="replace"))
        elif kind == "application/json":
            texts = _mlflow_texts(await json_of(request))
        else:
            raise RequestError(415, f"content type {kind!r}: send application/json or text/csv")
        result = await answer(texts, request.headers.get("x-source"))
        predictions = [{"label": result.labels[int(row.argmax())], "score": round(float(row.max()), 6)}
                       for row in result.probs]
        return JSONResponse({"predictions": predictions, "model_version": result.version},
                            headers={"X-Model-Version": result.version})

    async def healthz(request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def readyz(request: Request) -> Response:
        served = follower.current
        body = {"ready": served is not None, "model_version": served.version if served else None,
                "registry": follower.registry_error or "ok",
                "failing_versions": sorted(follower.failing, key=int)}
        return JSONResponse(body, status_code=200 if served else 503)

    async def metrics_page(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def not_found(request: Request, exc: Exception) -> Response:
        code = getattr(exc, "status_code", 404)
        text = {404: f"no such route: {request.url.path} (POST /predict, POST /invocations, GET /healthz, "
                     "/readyz, /metrics)", 405: f"{request.method} is not allowed on {request.url.path}"}
        return JSONResponse({"error": text.get(code, "bad request")}, status_code=code)

    routes = [Route("/predict", timed("predict", predict), methods=["POST"]),
              Route("/invocations", timed("invocations", invocations), methods=["POST"]),
              Route("/healthz", timed("healthz", healthz, guarded=False), methods=["GET"]),
              Route("/readyz", timed("readyz", readyz, guarded=False), methods=["GET"]),
              Route("/metrics", timed("metrics", metrics_page), methods=["GET"])]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: not_found})


def _texts(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        raise RequestError(400, f'"{where}" must be a non-empty list of strings')
    bad = next((i for i, text in enumerate(value) if not isinstance(text, str)), None)
    if bad is not None:
        raise RequestError(400, f'"{where}"[{bad}] is {type(value[bad]).__name__}, not a string')
    return value


def _mlflow_texts(data: Any) -> list[str]:
    """The texts of an MLflow scoring-server request (the formats `mlflow models serve` accepts)."""
    if not isinstance(data, dict):
        raise RequestError(400, "expected a JSON object with one of dataframe_split, dataframe_records, "
                                "instances or inputs")
    if "dataframe_split" in data:
        split = data["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("data"), list):
            raise RequestError(400, 'dataframe_split needs "columns" and "data" (a list of rows)')
        columns = split.get("columns") or [TEXT_COLUMN]
        index = _column(columns)
        try:
            return _texts([row[index] if isinstance(row, list) else row for row in split["data"]], "data")
        except IndexError:
            raise RequestError(400, f"a row of dataframe_split.data has no column {index}") from None
    if "dataframe_records" in data:
        records = data["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise RequestError(400, "dataframe_records must be a list of objects")
        return _texts([r.get(TEXT_COLUMN, next(iter(r.values()), None) if len(r) == 1 else None) for r in records],
                      "dataframe_records")
    for key in ("instances", "inputs"):
        if key in data:
            value = data[key]
            if isinstance(value, str):
                value = [value]
            if isinstance(value, dict) and TEXT_COLUMN in value:
                value = value[TEXT_COLUMN]
            if isinstance(value, list):
                value = [v.get(TEXT_COLUMN) if isinstance(v, dict) else v for v in value]
            return _texts(value, key)
    raise RequestError(400, "expected one of dataframe_split, dataframe_records, instances or inputs")


def _column(columns: Any) -> int:
    if not isinstance(columns, list):
        raise RequestError(400, "dataframe_split.columns must be a list")
    if TEXT_COLUMN in columns:
        return columns.index(TEXT_COLUMN)
    if len(columns) == 1:
        return 0
    raise RequestError(400, f'no "{TEXT_COLUMN}" column among {columns}')


def _csv_texts(body: str) -> list[str]:
    rows = list(csv.reader(io.StringIO(body)))
    if len(rows) < 2:
        raise RequestError(400, "a CSV body needs a header row and at least one text")
    index = _column(rows[0])
    try:
        return _texts([row[index] for row in rows[1:] if row], "csv")
    except IndexError:
        raise RequestError(400, f"a CSV row has no column {index}") from None
