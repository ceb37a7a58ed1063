"""`cltool serve` against `mlflow models serve` on the same registered version, side by side in one run.

    HF_HUB_OFFLINE=1 .venv/bin/python -m bench.serve --data ../shared/data --out bench/results/serve

Fine-tunes the packaged MiniLM for one epoch on 2,000 Twitter train rows, registers it as version 1 of
a fresh MLflow store (SQLite) with @champion on it, and starts four servers on loopback, each loading that
version: `mlflow models serve` (the MLflow transformers flavour under its own uvicorn, --env-manager local),
`cltool serve` (fp32, dynamic batching up to 32 texts), `cltool serve` with `serve.max_batch = 1` (no
dynamic batching) and `cltool serve` with `serve.precision = "int8"`. Every server gets the same requests
on the same endpoint (`POST /invocations`, MLflow's `dataframe_split` body, PhraseBank sentences):
- batch 1: one client, one text per request (latency);
- batch 32: one client, 32 texts per request (throughput of a batch caller);
- 16 clients: sixteen concurrent clients, one text per request each (what dynamic batching is for).
Rounds alternate the servers so that machine noise hits all alike; the report gives the medians of
p50/p99 latency and rows/s over the rounds, and the ratios to `mlflow models serve`. It also scores all
PhraseBank sentences in-process with the fp32 and the int8 model: the int8 speed-up and its flip rate
(share of sentences whose predicted label changes).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench import common
from bench.cl_data import read_phrasebank, read_twitter
from retrain.config import TrainConfig
from retrain.evaluation import Predictor
from retrain.modeling import PACKAGED_BASE, resolve_base
from retrain.train import fine_tune

LABELS = ["negative", "neutral", "positive"]
MODEL = "cltool-sentiment"
BIN = Path(sys.executable).parent
SCENARIOS = {"batch 1": (1, 1, 150), "batch 32": (32, 1, 20), "16 clients": (1, 16, 25)}  # texts, clients, requests each


def trained_model(data: Path, out: Path, rows: int = 2000, seed: int = 0) -> tuple[Path, pd.DataFrame]:
    """MiniLM fine-tuned one epoch on `rows` Twitter train rows; returns (model folder, those rows)."""
    train = read_twitter(data, "sent_train.csv").sample(n=rows, random_state=seed)
    config = TrainConfig(epochs=1, early_stopping_patience=0, device="cpu", seed=seed)
    result = fine_tune(resolve_base(PACKAGED_BASE), train, None, LABELS, out, config, max_length=64)
    return result.model_dir, train


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def post(conn: http.client.HTTPConnection, body: bytes) -> float:
    start = time.perf_counter()
    conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
    return time.perf_counter() - start


def load(port: int, texts: list[str], per_request: int, clients: int, requests: int) -> dict[str, float]:
    """`clients` threads each send `requests` requests of `per_request` texts; latency and rows/s."""
    latencies: list[float] = []
    lock, errors = threading.Lock(), []

    def client(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        try:
            for k in range(requests):
                start = (index * requests + k) * per_request % max(len(texts) - per_request, 1)
                chunk = texts[start:start + per_request]
                body = json.dumps({"dataframe_split": {"columns": ["text"], "data": [[t] for t in chunk]}}).encode()
                mine.append(post(conn, body))
        except Exception as exc:  # noqa: BLE001 - reported in the result
            errors.append(str(exc))
        finally:
            conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    ms = np.array(latencies) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "rows_per_s": clients * requests * per_request / wall}


def wait_ready(port: int, path: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server on {port} exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"server on {port} not ready after {timeout} s")


def start_servers(state: Path, env: dict[str, str], logs: Path) -> dict[str, tuple[int, subprocess.Popen]]:
    servers = {}
    specs = {
        "mlflow models serve": ([str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
                                 "--env-manager", "local", "--workers", "1", "--host", "127.0.0.1"], {}, "/ping"),
        "cltool serve": ([str(BIN / "cltool"), "serve"], {}, "/readyz"),
        "cltool serve, max_batch 1": ([str(BIN / "cltool"), "serve"], {"CLTOOL_SERVE__MAX_BATCH": "1"}, "/readyz"),
        "cltool serve, int8": ([str(BIN / "cltool"), "serve"], {"CLTOOL_SERVE__PRECISION": "int8"}, "/readyz"),
    }
    for name, (command, extra, probe) in specs.items():
        port = free_port()
        args = [*command, "--port", str(port)]
        log = (logs / f"{name.replace(' ', '_').replace(',', '')}.log").open("w")
        proc = subprocess.Popen(args, env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT, cwd=state.parent)
        servers[name] = (port, proc, probe)
    for name, (port, proc, probe) in servers.items():
        wait_ready(port, probe, proc)
        print(f"ready: {name} on {port}", flush=True)
    return {name: (port, proc) for name, (port, proc, _) in servers.items()}


def int8_figures(model_dir: Path, texts: list[str]) -> dict[str, float]:
    timings: dict[str, list[float]] = {"fp32": [], "int8": []}
    preds = {}
    for _ in range(3):
        for precision in ("fp32", "int8"):
            predictor = Predictor(model_dir, device="cpu", int8=precision == "int8", max_length=128)
            started = time.perf_counter()
            preds[precision], _ = predictor.predict(texts)
            timings[precision].append(len(texts) / (time.perf_counter() - started))
    fp32, int8 = statistics.median(timings["fp32"]), statistics.median(timings["int8"])
    return {"rows": len(texts), "fp32_rows_per_s": fp32, "int8_rows_per_s": int8, "speedup": int8 / fp32,
            "flip_rate": float(np.mean(preds["fp32"] != preds["int8"]))}


def main() -> None:
    parser = common.parser(__doc__, out=common.REPO / "bench" / "results" / "serve")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    texts = read_phrasebank(args.data)["text"].tolist()
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        root = Path(tmp)
        model_dir, _ = trained_model(args.data, root / "train")
        from registry.models import ModelRegistry

        state = root / "state"
        uri = f"sqlite:///{state / 'mlflow.db'}"
        registry = ModelRegistry(uri, MODEL, experiment="cltool", artifact_location=(state / "mlartifacts").as_uri())
        version = registry.log_candidate(model_dir=model_dir, run_name="bench-serve", params={}, metrics={}, tags={},
                                         json_artifacts={}).version
        registry.set_alias("champion", version)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLTOOL_")}
        env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", MLFLOW_TRACKING_URI=uri, CLTOOL_STATE_DIR=str(state), CLTOOL_SERVE__SAMPLE_RATE="0",
                   CLTOOL_MODEL__MAX_LENGTH="128", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   MLFLOW_DISABLE_TELEMETRY="true", TOKENIZERS_PARALLELISM="false")
        servers = start_servers(state, env, root)  # the servers' logs stay in the temporary folder
        try:
            for port, _ in servers.values():  # one warm-up pass each: first requests pay lazy set-up
                load(port, texts, 32, 1, 2)
            for round_ in range(args.rounds):
                order = list(servers) if round_ % 2 == 0 else list(reversed(servers))
                for scenario, (per_request, clients, requests) in SCENARIOS.items():
                    for name in order:
                        figures = load(servers[name][0], texts, per_request, clients, requests)
                        results.setdefault(scenario, {}).setdefault(name, []).append(figures)
                        print(f"round {round_ + 1} {scenario:<10} {name:<26} p50 {figures['p50_ms']:7.1f} ms  "
                              f"p99 {figures['p99_ms']:7.1f} ms  {figures['rows_per_s']:7.1f} rows/s", flush=True)
        finally:
            for _, proc in servers.values():
                proc.terminate()
            for _, proc in servers.values():
                proc.wait(timeout=60)
        int8 = int8_figures(model_dir, texts)
    report(args, results, int8)


def report(args: argparse.Namespace, results: dict, int8: dict[str, float]) -> None:
    commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    medians = {scenario: {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                          for name, runs in by_server.items()} for scenario, by_server in results.items()}
    lines = ["# cltool serve against mlflow models serve", "",
             f"Command: `HF_HUB_OFFLINE=1 .venv/bin/python -m bench.serve --data {args.data} --out {args.out}` "
             f"(commit {commit}, {args.rounds} rounds, medians; {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}, "
             "the load generator on the same cores).", "",
             "| scenario | server | p50 ms | p99 ms | rows/s | rows/s vs mlflow |", "|---|---|---|---|---|---|"]
    for scenario, by_server in medians.items():
        base = by_server["mlflow models serve"]["rows_per_s"]
        for name, m in by_server.items():
            lines.append(f"| {scenario} | {name} | {m['p50_ms']:.1f} | {m['p99_ms']:.1f} | {m['rows_per_s']:.1f} | "
                         f"{m['rows_per_s'] / base:.2f}× |")
    lines += ["", f"int8 in-process on {int8['rows']} PhraseBank sentences: {int8['fp32_rows_per_s']:.0f} → "
                  f"{int8['int8_rows_per_s']:.0f} rows/s ({int8['speedup']:.2f}×), flip rate "
                  f"{int8['flip_rate']:.2%} of predicted labels against fp32."]
    (args.out / "serve.md").write_text("\n".join(lines) + "\n")
    (args.out / "serve.json").write_text(json.dumps({"commit": commit, "medians": medians, "runs": results,
                                                     "int8": int8}, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
