"""Stage 1: real candidates through the daemon's own cycle, scored row by row on the evaluation pool.

Per seed: a champion bootstraps through `run_cycle` on the demo's first batch in a fresh state folder;
then, for each kind of candidate, a copy of that whole state folder ingests the kind's batch and runs
one more `run_cycle` (training from the champion on the batch plus replay, the daemon's own evaluation,
gate, MLflow registration). Champion and candidate are then scored on every pool row. The per-row
predictions go to `<work>/stage1.json` after each candidate, so a stopped run resumes where it was and
stage 2 can rerun alone.

Copying the state folder is enough to branch a daemon: MLflow's SQLite store keeps absolute artifact
URIs, which point at the bootstrap folder's artifacts (read for the champion, written for new runs).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any, Self

import pandas as pd

from bench.gate_config import Config, daemon_settings
from bench.gate_data import Kind, bootstrap_rows, candidate_batches, kinds, write_batch
from daemon.context import Context, open_context
from daemon.cycle.run import run_cycle
from retrain.evaluation import score

CACHE = "stage1.json"
# The bootstrap has no champion to beat, only the first-model floor; the benchmark needs a champion
# whatever its score, so the floor is 0 there (only there: every candidate meets the default gate).
BOOTSTRAP_GATE = {"first_model_min_macro_f1": 0.0}


def pool_digest(pool: pd.DataFrame) -> str:
    """Fingerprint of the pool's rows and halves, so a cache is never read against other rows."""
    text = "\x1e".join(f"{t}\x1f{y}\x1f{p}" for t, y, p in zip(pool["text"], pool["label"], pool["pool"]))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def predict(ctx: Context, version: str, texts: list[str]) -> list[str]:
    model = ctx.predictor(version)
    ids, _ = model.predict(texts)
    return [model.labels[i] for i in ids]


def ingest(ctx: Context, path: Path) -> None:
    result = ctx.inbox.ingest_copy(path)
    if result.status != "accepted":
        raise RuntimeError(f"{path.name}: ingest {result.status}: {result.reason}")


def cycle_record(result, seconds: float) -> dict[str, Any]:
    return {"outcome": result.outcome, "version": result.version, "reasons": result.reasons,
            "metrics": result.metrics, "seconds": seconds}


def timed_cycle(ctx: Context, trigger: str) -> dict[str, Any]:
    started = time.perf_counter()
    result = run_cycle(ctx, trigger)
    return cycle_record(result, time.perf_counter() - started)


def bootstrap(root: Path, cfg: Config, seed: int) -> tuple[Context, dict[str, Any]]:
    """A fresh state folder whose champion v1 learned the bootstrap batch (reused when already there)."""
    settings = daemon_settings(root, cfg, seed, gate=BOOTSTRAP_GATE)
    done = root / "bootstrap.json"
    if done.is_file():
        return open_context(settings, owner="bench"), json.loads(done.read_text())
    shutil.rmtree(root, ignore_errors=True)
    ctx = open_context(settings, owner="bench")
    ingest(ctx, write_batch(bootstrap_rows(cfg.bootstrap_rows), root / "files" / "01-tweets.csv"))
    record = timed_cycle(ctx, "bench: bootstrap")
    if record["outcome"] != "PROMOTE":
        raise RuntimeError(f"seed {seed}: the bootstrap cycle said {record['outcome']}: {record['reasons']}")
    done.write_text(json.dumps(record))
    return ctx, record


def branch(source: Path, target: Path) -> None:
    """A copy of a daemon's whole folder (state and inbox), to run a different future from the same past."""
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("bootstrap.json", "files"))


def candidate(kind: Kind, rows: pd.DataFrame, base: Path, work: Path, cfg: Config, seed: int,
              pool_texts: list[str]) -> dict[str, Any]:
    """One real cycle on the kind's batch in a branch of the bootstrap folder; the candidate's pool predictions."""
    root = work / kind.name
    branch(base, root)
    ctx = open_context(daemon_settings(root, cfg, seed, train=kind.train), owner="bench")
    ingest(ctx, write_batch(rows, root / "files" / f"{kind.name}.csv"))
    try:
        record = timed_cycle(ctx, f"bench: {kind.name}")
    except Exception as exc:  # noqa: BLE001
        # Any training failure (a diverged loss, say) is a result: the daemon registers nothing, promotes nothing.
        return {"failed": f"{type(exc).__name__}: {exc}"}
    if record["version"] is None:  # the cycle WAITed before training (too few fresh rows)
        return {"failed": f"no candidate trained: {record['reasons']}", "cycle": record}
    started = time.perf_counter()
    pred = predict(ctx, record["version"], pool_texts)
    shutil.rmtree(root, ignore_errors=True)  # its model lives on in the bootstrap folder's MLflow artifacts
    return {"pred": pred, "train_loss": record["metrics"].get("train_loss"), "cycle": record,
            "score_seconds": time.perf_counter() - started}


def load_cache(work: Path, cfg: Config, pool: pd.DataFrame, labels: list[str]) -> dict[str, Any]:
    path = work / CACHE
    fresh = {"key": cfg.stage1_key(), "pool_digest": pool_digest(pool), "labels": labels,
             "pool": {"label": pool["label"].tolist(), "half": pool["pool"].tolist()}, "seeds": {}}
    if not path.is_file():
        return fresh
    cache = json.loads(path.read_text())
    if cache.get("key") != fresh["key"] or cache.get("pool_digest") != fresh["pool_digest"]:
        raise SystemExit(f"{path} was made with other stage-1 settings ({cache.get('key')}); "
                         f"use another --work, or delete it to retrain")
    return cache


def save_cache(work: Path, cache: dict[str, Any]) -> None:
    partial = work / (CACHE + ".partial")
    partial.write_text(json.dumps(cache))
    partial.replace(work / CACHE)


def pool_gain(cache: dict[str, Any], pred: list[str], champion: list[str]) -> dict[str, float]:
    """Candidate − champion macro-F1 on the whole pool and on each half (retrain.evaluation.score)."""
    labels, truth, half = cache["labels"], cache["pool"]["label"], cache["pool"]["half"]
    out = {}
    for part in ("all", "fresh", "regression"):
        keep = [i for i, h in enumerate(half) if part == "all" or h == part]
        rows = [[values[i] for i in keep] for values in (truth, pred, champion)]
        new, old = (score(rows[0], p, labels)["macro_f1"] for p in rows[1:])
        out[part] = new - old
        if part == "all":
            out["candidate_macro_f1"], out["champion_macro_f1"] = new, old
    return out


class InlineExecutor:
    """`submit` runs the call at once in this process: jobs 1, and the tests."""

    def submit(self, function, *args) -> Future:
        future: Future = Future()
        future.set_result(function(*args))
        return future

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        return None


def executor(jobs: int):
    """`jobs` spawned worker processes (each imports torch afresh and uses set_threads), or this one."""
    if jobs <= 1:
        return InlineExecutor()
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    return ProcessPoolExecutor(jobs, mp_context=get_context("spawn"))


def set_threads(threads: int) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def log_line(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def _champion_job(work: Path, cfg: Config, seed: int, texts: list[str], threads: int) -> dict[str, Any]:
    set_threads(threads)
    ctx, record = bootstrap(work / f"seed{seed}" / "bootstrap", cfg, seed)
    started = time.perf_counter()
    return {"pred": predict(ctx, record["version"], texts), "cycle": record,
            "score_seconds": time.perf_counter() - started}


def _candidate_job(kind: Kind, rows: pd.DataFrame, work: Path, cfg: Config, seed: int, texts: list[str],
                   threads: int) -> dict[str, Any]:
    set_threads(threads)
    return candidate(kind, rows, work / f"seed{seed}" / "bootstrap", work / f"seed{seed}", cfg, seed, texts)


def run_stage1(work: Path, cfg: Config, pool: pd.DataFrame, unseen: pd.DataFrame, labels: list[str],
               progress: Callable[[str], None], jobs: int = 1, threads: int = 0) -> int:
    """Every seed's champion, then its candidates, into `<work>/stage1.json` (saved after each model, so a
    stopped run resumes); the models train in `jobs` processes, a seed's candidates as soon as its champion
    is there. Returns how many models were trained this time (0: all cached)."""
    work.mkdir(parents=True, exist_ok=True)
    cache = load_cache(work, cfg, pool, labels)
    texts = pool["text"].tolist()
    all_kinds = kinds(cfg.batch_rows, cfg.noise, cfg.worse_lr)
    trained = 0
    with executor(jobs) as ex:
        pending: dict[Future, tuple[int, str | None]] = {}

        def submit_candidates(seed: int) -> None:
            entry = cache["seeds"][str(seed)]
            batches = candidate_batches(unseen, all_kinds, cfg.noise, labels, seed)
            for kind in all_kinds:
                if kind.name not in entry["candidates"]:
                    pending[ex.submit(_candidate_job, kind, batches[kind.name], work, cfg, seed, texts,
                                      threads)] = (seed, kind.name)

        for seed in cfg.seeds:
            entry = cache["seeds"].setdefault(str(seed), {"candidates": {}})
            if "champion" not in entry:
                pending[ex.submit(_champion_job, work, cfg, seed, texts, threads)] = (seed, None)
            elif all(k.name in entry["candidates"] for k in all_kinds):
                progress(f"stage 1 seed {seed}: cached")
            else:
                submit_candidates(seed)
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for future in done:
                seed, kind = pending.pop(future)
                entry, result = cache["seeds"][str(seed)], future.result()
                trained += 1
                if kind is None:
                    entry["champion"] = result
                    save_cache(work, cache)
                    progress(f"stage 1 seed {seed}: champion v{result['cycle']['version']} "
                             f"({result['cycle']['seconds']:.0f} s cycle), pool macro-F1 "
                             f"{score(cache['pool']['label'], result['pred'], labels)['macro_f1']:.3f}")
                    submit_candidates(seed)
                    continue
                if "pred" in result:
                    result["gain"] = pool_gain(cache, result["pred"], entry["champion"]["pred"])
                    progress(f"stage 1 seed {seed} {kind}: cycle {result['cycle']['outcome']} in "
                             f"{result['cycle']['seconds']:.0f} s; pool gain {100 * result['gain']['all']:+.1f} pt")
                else:
                    progress(f"stage 1 seed {seed} {kind}: {result['failed']}")
                entry["candidates"][kind] = result
                save_cache(work, cache)
    return trained
